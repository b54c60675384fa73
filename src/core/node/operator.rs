//! Operator commands, decided inside the core: a manual failover, a drill (dry run of the whole
//! plan, run by `drill`), maintenance windows and a failback. The REST API sends a `Command`
//! through the driver and renders the `CommandReply`; it never touches the state machines, and
//! the core knows no HTTP (the API maps `OperatorError` to status codes).
//!
//! Epochs and the operator lock: a manual failover or a failback is not started by the node
//! that is called alone. It proposes a run led by itself, with a fresh epoch (one above every
//! epoch it knows for the site: the newest verdict, its durable promise and acceptance, every
//! run register it holds and every run its operator lock saw), for the next generation of the
//! site's operator lock (`core::oplock`, Paxos among the site's electorate). The call is
//! answered once that generation is decided: the node the decided value names leads the run
//! (the call that proposed it answers with the run), and every other call for the generation
//! answers `LockTaken`, naming that run. So two operators calling two nodes at once get one
//! run, and no two nodes ever lead a run under the same epoch.

use super::drill::Drill;
use super::runs::failback_spec;
use super::{Action, NodeCore};
use crate::config::FailoverPlan;
use crate::core::maintenance::{Learned, Maintenance, MaintenanceError};
use crate::core::oplock::{
    Decided, LockAction, LockError, LockMsg, LockValue, ProposalEnd, SiteView,
};
use crate::core::pipeline::{Pipeline, RunReport};
use crate::core::replica::RunTrigger;
use crate::core::types::{EpochKind, NodeId, Now, Opinion, Outcome, SiteId, Time, WallTime};
use crate::wire::{MaintenanceWindow, Message};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// What an operator asks of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the site's plan now, as a run led by this node.
    Failover {
        site: SiteId,
        reason: String,
        /// The anycast rule does not hold back this run's bgp steps.
        force: bool,
    },
    /// Run the site's plan with `dry_run = true`; the reply is the report.
    Drill {
        site: SiteId,
    },
    /// No automatic failover of the site starts in the fleet before `until_unix_ms`.
    SetMaintenance {
        site: SiteId,
        until_unix_ms: i64,
    },
    EndMaintenance {
        site: SiteId,
    },
    /// Run the compensations of the plan's steps, newest step first.
    Failback {
        site: SiteId,
    },
    /// Raise or clear an alarm of a site (`core::alarm`).
    Alarm(super::alarm::AlarmCall),
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandOk {
    /// A run led by this node started.
    RunStarted {
        site: SiteId,
        epoch: u64,
        trigger: RunTrigger,
        leader: NodeId,
        /// For a manual failover: the operator's reason and whether it was forced.
        reason: Option<String>,
        force: Option<bool>,
    },
    /// A drill ended.
    Drill(RunReport),
    /// The site's maintenance now ends at this time (None: no maintenance).
    Maintenance {
        site: SiteId,
        until_unix_ms: Option<i64>,
    },
    /// The alarm call as it now stands, fleet-wide.
    Alarm(crate::wire::Alarm),
}

/// Why a command was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("no watched site {0:?} in this fleet")]
    UnknownSite(SiteId),
    #[error("site {0} has no failover plan: add [[watch.pipeline.step]] entries to its watch")]
    NoPlan(SiteId),
    #[error("no step of site {0}'s plan has a compensation: there is nothing to run to fail back")]
    NothingToFailBack(SiteId),
    #[error("run {site}-{run} of site {site} is in progress on this node; wait for it to end")]
    RunInProgress { site: SiteId, run: u64 },
    #[error("a drill of site {0} is running on this node; wait for it to end")]
    DrillInProgress(SiteId),
    #[error("the newest verdict of site {site} is {outcome} (epoch {epoch}); fail back once it is up again")]
    NotUpYet {
        site: SiteId,
        outcome: &'static str,
        epoch: u64,
    },
    #[error("no verdict of site {0} is known yet and this node's Pinger does not see it up; fail back once it does")]
    NoVerdictYet(SiteId),
    #[error("node {node} is not a voter of site {site}'s electorate; call one of its members: {members}")]
    NotEntitled {
        node: NodeId,
        site: SiteId,
        members: String,
    },
    #[error(transparent)]
    Maintenance(#[from] MaintenanceError),
    #[error(transparent)]
    Alarm(#[from] crate::core::alarm::AlarmError),
    #[error("alarm source {name:?} may not raise or clear alarms of site {site} (its token speaks only for the sites of its [[alarm_source]], under its own name)")]
    SourceNotEntitled { name: String, site: SiteId },
    #[error("no alarm of site {site} from source {name:?} is known; nothing to clear")]
    NoSuchAlarm { site: SiteId, name: String },
    #[error("no epoch is left for site {0}: every epoch up to the highest allowed is used")]
    EpochsExhausted(SiteId),
    #[error(
        "this node distrusts its own clocks right now ({0}); ask another voter, or again shortly"
    )]
    Tilted(String),
    #[error("the drill of site {site} did not finish within {bound_ms} ms (the sum of its steps' timeouts)")]
    DrillTimedOut { site: SiteId, bound_ms: u64 },
    /// Another call won the site's operator lock; its run goes ahead, this call started none.
    #[error("another operator call took the lock of site {site} first: run {site}-{run} ({trigger}, led by {leader}) goes ahead; this call started nothing")]
    LockTaken {
        site: SiteId,
        run: u64,
        leader: NodeId,
        trigger: &'static str,
    },
    #[error("a call for site {0} is waiting for the site's operator lock on this node; wait for its answer")]
    LockBusy(SiteId),
    /// The electorate did not decide within the bound; the proposal may still win later.
    #[error("the operator lock of site {site} was not decided within {bound_ms} ms (voters unreachable, or calls at other voters competing); this call may still take effect: check GET /v1/failovers before calling again")]
    LockUndecided { site: SiteId, bound_ms: u64 },
    #[error("this node cannot keep its operator lock state durable ({0}); call another voter")]
    LockUnavailable(String),
    #[error("site {site} was judged DOWN (epoch {epoch}) after the lock's last run; its failover, not the alarm's run, is due")]
    VerdictNewer { site: SiteId, epoch: u64 },
    #[error("the electorate knows newer alarm calls of site {0} than this node, and they do not ask for this run")]
    AlarmsNewer(SiteId),
}

/// The reply to a command.
pub type CommandReply = Result<CommandOk, OperatorError>;

/// A manual failover or failback waiting for its site's operator lock.
struct LockCall {
    id: u64,
    trigger: RunTrigger,
    reason: Option<String>,
    force: Option<bool>,
}

/// Operator state: maintenance calls, drills and calls waiting for the operator lock.
pub struct OperatorState {
    /// The newest maintenance call per site (stored, and passed on in status messages).
    pub maintenance: Maintenance,
    pub(super) drills: BTreeMap<u64, Drill>,
    locking: BTreeMap<SiteId, LockCall>,
}

impl OperatorState {
    pub fn new(me: &NodeId, windows: Vec<MaintenanceWindow>, now: Now) -> OperatorState {
        let mut maintenance = Maintenance::new(me.clone());
        for w in maintenance.load(now.wall.as_millis(), windows) {
            warn!(site = %w.site, until_unix_ms = w.until_unix_ms, set_at_unix_ms = w.set_at_unix_ms,
                  "a stored maintenance window outside the allowed skew and horizon is forgotten");
        }
        OperatorState {
            maintenance,
            drills: BTreeMap::new(),
            locking: BTreeMap::new(),
        }
    }

    /// When the maintenance of `site` ends (Unix ms), while it lasts.
    pub fn maintenance_until(&self, site: &SiteId, wall: WallTime) -> Option<i64> {
        self.maintenance.active(site, wall.as_millis())
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.drills
            .values()
            .flat_map(|d| [Some(d.deadline), d.pipeline.poll_timeout()])
            .flatten()
            .min()
    }
}

impl NodeCore {
    pub(super) fn on_command(&mut self, now: Now, id: u64, command: Command) {
        let reply = match command {
            Command::Drill { site } => match self.start_drill(now, id, site) {
                // Answered when the drill ends.
                Ok(()) => return,
                Err(e) => Err(e),
            },
            // Both are answered once the site's operator lock is decided.
            Command::Failover {
                site,
                reason,
                force,
            } => match self.manual_failover(now, id, &site, reason, force) {
                Ok(()) => return,
                Err(e) => Err(e),
            },
            Command::Failback { site } => match self.failback(now, id, &site) {
                Ok(()) => return,
                Err(e) => Err(e),
            },
            Command::SetMaintenance {
                site,
                until_unix_ms,
            } => self.set_maintenance(now, &site, until_unix_ms),
            Command::EndMaintenance { site } => self.end_maintenance(now, &site),
            Command::Alarm(call) => self.alarm_call(now, call),
        };
        self.actions.push_back(Action::Reply { id, reply });
    }

    /// The plan of a watched site.
    pub(super) fn plan_of(&self, site: &SiteId) -> Result<FailoverPlan, OperatorError> {
        let w = self
            .fleet
            .watch(site)
            .ok_or_else(|| OperatorError::UnknownSite(site.clone()))?;
        w.plan
            .clone()
            .ok_or_else(|| OperatorError::NoPlan(site.clone()))
    }

    /// Operator calls about a site are accepted only by a voter of its electorate: only its
    /// members take part in the site's runs and may originate its maintenance windows
    /// (docs/trust.md), so the call could take effect nowhere else.
    pub(super) fn entitled(&self, site: &SiteId) -> Result<(), OperatorError> {
        let members = self.fleet.electorate(site);
        if members.contains(&self.me.id) {
            return Ok(());
        }
        let names: Vec<&str> = members.iter().map(|m| m.as_str()).collect();
        Err(OperatorError::NotEntitled {
            node: self.me.id.clone(),
            site: site.clone(),
            members: names.join(", "),
        })
    }

    /// Refused while a run or drill of `site` is waiting or running on this node.
    pub(super) fn check_idle(&self, site: &SiteId) -> Result<(), OperatorError> {
        if let Some(run) = self.runs.busy(site) {
            return Err(OperatorError::RunInProgress {
                site: site.clone(),
                run,
            });
        }
        if self.operator.drills.values().any(|d| &d.site == site) {
            return Err(OperatorError::DrillInProgress(site.clone()));
        }
        if self.operator.locking.contains_key(site) {
            return Err(OperatorError::LockBusy(site.clone()));
        }
        Ok(())
    }

    /// One above every epoch this node knows for `site`.
    pub(super) fn fresh_epoch(&self, site: &SiteId) -> Result<u64, OperatorError> {
        EpochKind::LockRun
            .above(self.known_epoch(site))
            .ok_or_else(|| OperatorError::EpochsExhausted(site.clone()))
    }

    /// Tells the operator lock what this node now knows of `site`, before the lock answers or
    /// proposes anything about it.
    fn tell_lock_view(&mut self, now: Now, site: &SiteId) {
        let view = self.site_view(now, site);
        self.oplock.set_view(site, view);
    }

    /// What this node tells the operator lock of `site` beyond the lock (see `SiteView`).
    fn site_view(&self, now: Now, site: &SiteId) -> SiteView {
        // The newest DOWN verdict: the committed one, or an older one whose failover's
        // register this node holds (an UP verdict since does not undo that failover).
        let committed = self
            .voter
            .verdict(site)
            .filter(|v| v.outcome() == Outcome::Down)
            .map(|v| v.epoch());
        let run = self
            .replicas
            .records()
            .filter(|r| &r.site == site && r.trigger == RunTrigger::Verdict && !r.is_dropped())
            .map(|r| r.run)
            .max();
        // A DOWN value this node accepted for the slot still open, while its own Pinger does
        // not see the site up: that verdict may be committing now, and a run decided above
        // its epoch would fence its failover out. (Once this node sees the site up again, the
        // round is over and no longer holds alarm reactions back.)
        let pending = self
            .voter
            .durable(site)
            .and_then(|d| d.accepted.as_ref())
            .filter(|a| a.value.outcome == Outcome::Down)
            .filter(|a| self.voter.verdict(site).is_none_or(|v| a.slot > v.slot))
            .filter(|_| self.pinger.report(site, now.mono).opinion != Opinion::Up)
            .map(|a| a.value.epoch);
        let down = committed.max(run).max(pending);
        SiteView {
            epoch: self.known_epoch(site),
            down,
            alarms: self.alarm.alarms.stamps(site),
        }
    }

    /// The highest epoch this node knows for `site`: verdicts, votes, runs, the lock.
    fn known_epoch(&self, site: &SiteId) -> u64 {
        let mut e = self.voter.verdict(site).map_or(0, |v| v.epoch());
        if let Some(d) = self.voter.durable(site) {
            e = e.max(d.promised.epoch);
            if let Some(a) = &d.accepted {
                e = e.max(a.ballot.epoch).max(a.value.epoch);
            }
        }
        e = self
            .replicas
            .records()
            .filter(|r| &r.site == site)
            .map(|r| r.run.max(r.term()))
            .fold(e, u64::max);
        let here = self.runs.busy(site).into_iter();
        let finished = self
            .runs
            .finished()
            .filter(|r| &r.site == site)
            .map(|r| r.epoch);
        e = here.chain(finished).fold(e, u64::max);
        e.max(self.oplock.known_epoch(site))
    }

    /// Proposes a run of `trigger` led by this node for the next generation of the site's
    /// operator lock; command `id` is answered when the generation is decided.
    pub(super) fn propose_run(
        &mut self,
        now: Now,
        id: u64,
        site: &SiteId,
        trigger: RunTrigger,
        forced: bool,
        reason: Option<String>,
    ) -> Result<(), OperatorError> {
        self.entitled(site)?;
        self.check_idle(site)?;
        if let Some(why) = self.tilt.reason() {
            return Err(OperatorError::Tilted(why.to_string()));
        }
        let epoch = self.fresh_epoch(site)?;
        let own = LockValue {
            run: epoch,
            leader: self.me.id.clone(),
            trigger,
            forced,
            alarms: self.alarm_basis(site),
        };
        let electorate = self.electorate(site);
        self.tell_lock_view(now, site);
        match self
            .oplock
            .propose(now.mono, site.clone(), electorate, own, id)
        {
            Ok(gen) => {
                info!(%site, gen, epoch, trigger = trigger.as_str(), "asking the electorate for the operator lock");
            }
            Err(LockError::NotInElectorate(_)) => {
                return Err(self
                    .entitled(site)
                    .err()
                    .unwrap_or(OperatorError::LockUnavailable(
                        "not a member of the electorate".into(),
                    )))
            }
            Err(LockError::Busy(s)) => return Err(OperatorError::LockBusy(s)),
            Err(LockError::Exhausted(s)) => return Err(OperatorError::EpochsExhausted(s)),
            Err(LockError::Broken(why)) => return Err(OperatorError::LockUnavailable(why)),
        }
        let force = (trigger == RunTrigger::Manual).then_some(forced);
        self.operator.locking.insert(
            site.clone(),
            LockCall {
                id,
                trigger,
                reason,
                force,
            },
        );
        Ok(())
    }

    fn manual_failover(
        &mut self,
        now: Now,
        id: u64,
        site: &SiteId,
        reason: String,
        force: bool,
    ) -> Result<(), OperatorError> {
        self.plan_of(site)?;
        self.propose_run(now, id, site, RunTrigger::Manual, force, Some(reason))
    }

    /// Back to the primary: the compensation of every step that has one, newest step first.
    fn failback(&mut self, now: Now, id: u64, site: &SiteId) -> Result<(), OperatorError> {
        let plan = self.plan_of(site)?;
        match self.voter.verdict(site).map(|v| (v.outcome(), v.epoch())) {
            Some((Outcome::Up, _)) => {}
            Some((o, epoch)) => {
                return Err(OperatorError::NotUpYet {
                    site: site.clone(),
                    outcome: o.as_api_str(),
                    epoch,
                })
            }
            // Never judged DOWN: a planned move (`quorate failover` while both sites were up)
            // leaves no verdict to wait for. What this node sees itself decides then; the
            // vote would not start on a site its Pingers see up either.
            None if self.pinger.report(site, now.mono).opinion == Opinion::Up => {}
            None => return Err(OperatorError::NoVerdictYet(site.clone())),
        }
        if failback_spec(&plan.pipeline).steps.is_empty() {
            return Err(OperatorError::NothingToFailBack(site.clone()));
        }
        self.propose_run(now, id, site, RunTrigger::Failback, false, None)
    }

    /// A lock message from a peer; the lock checks who may say what.
    pub(super) fn on_lock_msg(&mut self, now: Now, from: &NodeId, msg: LockMsg) {
        let site = msg.site().clone();
        let electorate = self.fleet.watch(&site).map(|_| self.electorate(&site));
        if electorate.is_some() {
            self.tell_lock_view(now, &site);
        }
        self.oplock.handle(now.mono, from, msg, electorate.as_ref());
    }

    /// Carries the lock's actions over, in order.
    pub(super) fn drain_oplock(&mut self, now: Now) -> bool {
        let mut any = false;
        while let Some(a) = self.oplock.poll_action() {
            any = true;
            match a {
                LockAction::Persist { site, state } => {
                    // A run this member accepted or learned is a fencing token of the site:
                    // its next vote ballots go above it (and it takes no part in a fast round
                    // below it).
                    state
                        .runs()
                        .for_each(|run| self.voter.observe_epoch(&site, run));
                    self.actions.push_back(Action::PersistLock { site, state })
                }
                LockAction::Send { to, msg } => self.actions.push_back(Action::Send {
                    to,
                    msg: Message::Lock(msg),
                }),
                LockAction::Learned {
                    site,
                    decided,
                    lead,
                } => self.on_lock_decided(now, &site, decided, lead),
                LockAction::Ended { site, id, end } => self.on_lock_ended(&site, id, end),
                LockAction::Refused { from, why } => {
                    if self.refusals.record(now.mono, &from, why) {
                        warn!(peer = %from, reason = why.as_str(), "operator lock message refused");
                    }
                }
            }
        }
        any
    }

    /// A generation of the site's lock is decided: the node it names starts the run, whether
    /// or not a call still waits for it here (another member may have completed this node's
    /// proposal, and the calls it refused name this run), unless the lock only taught it in
    /// passing or a newer run of the site is known: then it comes too late to start.
    fn on_lock_decided(&mut self, now: Now, site: &SiteId, d: Decided, lead: bool) {
        let v = d.value;
        info!(%site, gen = d.gen, run_id = v.run, leader = %v.leader, trigger = v.trigger.as_str(), "operator lock decided");
        if v.leader != self.me.id {
            if lead {
                self.expect_lock_run(now, site, &v);
            }
            return;
        }
        if self.replicas.record(site, v.run).is_some() || self.runs.busy(site) == Some(v.run) {
            return;
        }
        let newer = self
            .replicas
            .records()
            .any(|r| &r.site == site && r.run > v.run);
        // A call waiting here is answered with this run: it starts, and the epoch fence orders
        // it against the newer one as it did before the lock.
        let waiting = self.operator.locking.contains_key(site);
        if !lead || (newer && !waiting) {
            warn!(%site, gen = d.gen, run_id = v.run, "the operator lock gave this node a run it learned of too late; not starting it");
            return;
        }
        let Some(spec) = self.run_spec(site, v.trigger) else {
            warn!(%site, run_id = v.run, "the operator lock gave this node a run, but this fleet has no plan for the site; not running it");
            return;
        };
        warn!(%site, run_id = v.run, trigger = v.trigger.as_str(), forced = v.forced, "operator run started");
        self.lead_run(now, site, v.run, v.trigger, v.forced, now.wall, Vec::new());
        if v.trigger.holds_down() {
            let until = now.mono + self.fleet.timing.hold_down;
            self.runs.hold_until.insert((site.clone(), v.run), until);
        }
        let p = Pipeline::new_forced(spec, site.clone(), v.run, false, v.forced, now);
        self.runs.insert_running((site.clone(), v.run), p);
    }

    /// Answers the call whose proposal ended.
    fn on_lock_ended(&mut self, site: &SiteId, id: u64, end: ProposalEnd) {
        let Some(call) = self.operator.locking.remove(site).filter(|c| c.id == id) else {
            return;
        };
        let reply = match end {
            ProposalEnd::Won(d) => {
                match (call.trigger, &call.reason, call.force) {
                    (RunTrigger::Manual, Some(reason), force) => {
                        warn!(%site, run_id = d.value.run, reason, force, "manually initiated failover started")
                    }
                    (t, _, _) => {
                        warn!(%site, run_id = d.value.run, trigger = t.as_str(), "operator-lock run started")
                    }
                }
                Ok(CommandOk::RunStarted {
                    site: site.clone(),
                    epoch: d.value.run,
                    trigger: call.trigger,
                    leader: d.value.leader,
                    reason: call.reason,
                    force: call.force,
                })
            }
            ProposalEnd::Lost(d) => {
                info!(%site, run_id = d.value.run, leader = %d.value.leader, "another call took the operator lock");
                Err(OperatorError::LockTaken {
                    site: site.clone(),
                    run: d.value.run,
                    leader: d.value.leader,
                    trigger: d.value.trigger.as_str(),
                })
            }
            ProposalEnd::Undecided { bound } => Err(OperatorError::LockUndecided {
                site: site.clone(),
                bound_ms: bound.as_millis() as u64,
            }),
            ProposalEnd::Broken(why) => Err(OperatorError::LockUnavailable(why)),
            ProposalEnd::Outrun { verdict } => {
                info!(%site, verdict, "the electorate knows a newer DOWN verdict; the alarm's run is not asked for");
                Err(OperatorError::VerdictNewer {
                    site: site.clone(),
                    epoch: verdict,
                })
            }
            ProposalEnd::Outdated => {
                info!(%site, "the electorate knows newer alarm calls that do not ask for this run; not asked for");
                Err(OperatorError::AlarmsNewer(site.clone()))
            }
        };
        self.actions.push_back(Action::Reply { id: call.id, reply });
    }

    fn set_maintenance(&mut self, now: Now, site: &SiteId, until_unix_ms: i64) -> CommandReply {
        if self.fleet.watch(site).is_none() {
            return Err(OperatorError::UnknownSite(site.clone()));
        }
        self.entitled(site)?;
        let e = self.electorate(site);
        let w = self.operator.maintenance.set_by_operator(
            now.wall.as_millis(),
            site,
            until_unix_ms,
            &e,
        )?;
        self.store_maintenance(w.clone());
        self.notify_maintenance(now, &w, false);
        warn!(%site, until_unix_ms, "maintenance: no automatic failover of this site starts in the fleet");
        Ok(CommandOk::Maintenance {
            site: site.clone(),
            until_unix_ms: Some(until_unix_ms),
        })
    }

    fn end_maintenance(&mut self, now: Now, site: &SiteId) -> CommandReply {
        if self.fleet.watch(site).is_none() {
            return Err(OperatorError::UnknownSite(site.clone()));
        }
        self.entitled(site)?;
        if self.operator.maintenance_until(site, now.wall).is_some() {
            info!(%site, "maintenance ended");
        }
        let e = self.electorate(site);
        let w = self
            .operator
            .maintenance
            .end_by_operator(now.wall.as_millis(), site, &e)?;
        self.store_maintenance(w.clone());
        self.notify_maintenance(now, &w, true);
        Ok(CommandOk::Maintenance {
            site: site.clone(),
            until_unix_ms: None,
        })
    }

    /// A maintenance call goes to the disk before anything after it (the command's answer,
    /// the next status message), then takes effect.
    fn store_maintenance(&mut self, w: MaintenanceWindow) {
        self.actions.push_back(Action::SaveMaintenance(w.clone()));
        self.operator.maintenance.stored(w);
    }

    /// A peer's maintenance calls: a newer one than this node knows replaces it, when the
    /// peer may originate it (a voter of the site's electorate, within skew and horizon).
    pub(super) fn learn_maintenance(
        &mut self,
        now: Now,
        from: &NodeId,
        windows: Vec<MaintenanceWindow>,
    ) {
        for w in windows {
            if self.fleet.watch(&w.site).is_none() {
                continue;
            }
            let e = self.electorate(&w.site);
            let site = w.site.clone();
            match self
                .operator
                .maintenance
                .learn(now.wall.as_millis(), from, w.clone(), &e)
            {
                Ok(Learned::Stale) => continue,
                Ok(Learned::Set { until_unix_ms }) => {
                    warn!(%site, until_unix_ms, peer = %from,
                          "maintenance set elsewhere in the fleet: no automatic failover of this site starts");
                }
                Ok(Learned::Ended) => {
                    info!(%site, peer = %from, "maintenance ended elsewhere in the fleet");
                }
                Err(reason) => {
                    self.refused(now, from, &site, reason);
                    continue;
                }
            }
            self.store_maintenance(w);
        }
    }

    /// The operator lock's timers, then the drills'.
    pub(super) fn on_operator_timers(&mut self, now: Now) {
        if self.oplock.poll_timeout().is_some_and(|t| t <= now.mono) {
            let sites: Vec<SiteId> = self.operator.locking.keys().cloned().collect();
            for site in sites {
                self.tell_lock_view(now, &site);
            }
            self.oplock.tick(now.mono);
        }
        self.on_drill_timers(now);
    }
}
