//! One node's decisions behind one step function. `NodeCore` owns the Pinger, the Voter, the
//! replicated run registers, the failover runs (scheduling, arming, maintenance, hold-down, the
//! takeover delay, takeover eligibility, epochs for operator runs, the epoch fence and the
//! anycast rule), the self-fence and operator commands. The tokio driver and the simulator
//! both feed it `Input`s with the time (`Now`: monotonic for deadlines, wall for the journal)
//! and carry out its `Action`s in order; neither decides anything. It never reads a clock,
//! sends, writes or spawns.
//!
//! Ordering contract (as raft-rs's `ready`/`advance`): a `Persist*`, `SaveRun`,
//! `AppendJournal` or `SaveMaintenance` action is durable before any action after it is
//! carried out; if it fails, the driver reports `Input::PersistFailed` before polling further,
//! and the core drops what it had queued behind it.

pub mod alarm;
mod drill;
pub mod operator;
pub mod runs;

mod isolation;
mod notify;
pub mod peers;
mod replication;
mod status;
mod tilt;

pub use alarm::AlarmCall;
pub use isolation::IsolationState;
pub use notify::NotifyCall;
pub use operator::{Command, CommandOk, CommandReply, OperatorError};
pub use runs::{Runs, StartStep, StepDone, StepPurpose};
pub use status::{ProbeHeard, INDICATOR_STATUS_EVERY, NEWS_SENDS, QUIET_STATUS_EVERY};
pub use tilt::Tilt;

use super::notify::Notifications;
use super::oplock::{LockConfig, LockState, OpLock};
use super::pinger::{Pinger, PingerAction, PingerConfig};
use super::pipeline::JournalEntry;
use super::quorum::Electorate;
use super::replica::{ReplicaConfig, Replicas, RunRecord};
use super::trust::{Refusal, Refusals};
use super::types::{Durable, NodeId, Now, Opinion, Outcome, SiteId, Time, Verdict, WallTime};
use super::voter::{fleet_electorates, Voter, VoterAction, VoterConfig};
use crate::config::{Fleet, Node};
use crate::wire::{MaintenanceWindow, Message, PeerStatus};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// What a node read from its store at start: its promises, the newest verdict per site, the
/// run registers it holds, the newest maintenance call per site and its operator lock state.
#[derive(Clone, Debug, Default)]
pub struct Boot {
    pub durable: BTreeMap<SiteId, Durable>,
    pub verdicts: Vec<Verdict>,
    pub runs: Vec<RunRecord>,
    pub maintenance: Vec<MaintenanceWindow>,
    pub locks: BTreeMap<SiteId, LockState>,
    pub alarms: Vec<crate::wire::Alarm>,
}

/// Everything that happens to a node, as its driver reports it.
// An input is moved into `handle` once and never queued: boxing its messages buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// A deadline from `poll_timeout` may have passed.
    Tick,
    /// An Indicator answered a probe (`at`: when the answer arrived, monotonic).
    ProbeAnswer {
        indicator: NodeId,
        nonce: u64,
        at: Time,
        /// What the answer says of the Indicator's service.
        health: crate::core::health::ServiceHealth,
    },
    /// A probe could not be sent (no connection yet).
    ProbeNotSent { indicator: NodeId, nonce: u64 },
    /// A mesh message from an authenticated peer.
    Message { from: NodeId, msg: Message },
    /// One attempt of a step ended.
    StepDone(StepDone),
    /// An operator command; its answer comes back as `Action::Reply` with the same id.
    Command { id: u64, command: Command },
    /// A changed, valid fleet file.
    Reload(Arc<Fleet>),
    /// A mesh connection with this peer came up: it gets this node's status at once, rather
    /// than at the next status interval.
    PeerConnected(NodeId),
    /// Probes this node answered since the last report, the newest of each Pinger (`at`:
    /// when it arrived, monotonic): what each Pinger said of this node's site.
    ProbesHeard(Vec<ProbeHeard>),
    /// A write the core asked for failed.
    PersistFailed(PersistFailed),
    /// A call of a notifier ended (`Action::Notify`).
    NotifyDone {
        key: String,
        notifier: String,
        ok: bool,
    },
}

/// A write that failed, and what it was for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistFailed {
    /// A promise or acceptance: this node must stop voting.
    Durable { site: SiteId, error: String },
    /// A run register or journal entry: this node sends and starts nothing more for the run.
    Run {
        site: SiteId,
        run: u64,
        error: String,
    },
    /// Operator lock state: this node takes no part in any site's lock any more.
    Lock { site: SiteId, error: String },
}

/// What the core asks its driver to do, in order.
#[derive(Clone, Debug)]
pub enum Action {
    SendProbe {
        indicator: NodeId,
        nonce: u64,
        /// This node's opinion of the Indicator's site, which the probe carries.
        opinion: Opinion,
    },
    Send {
        to: NodeId,
        msg: Message,
    },
    /// To every node this one holds a mesh connection with (`Node::talks_with`): every other
    /// node, unless both are Indicator-only nodes; but not to those in `except` (sorted).
    Broadcast {
        msg: Message,
        except: Vec<NodeId>,
    },
    PersistDurable {
        site: SiteId,
        durable: Durable,
    },
    RecordVerdict {
        verdict: Verdict,
        at: WallTime,
    },
    SaveRun(RunRecord),
    AppendJournal(JournalEntry),
    SaveMaintenance(MaintenanceWindow),
    /// The newest alarm call of its (site, source) (`Storage::save_alarm`).
    SaveAlarm(crate::wire::Alarm),
    /// This member's operator lock state of `site` (`Storage::save_lock`).
    PersistLock {
        site: SiteId,
        state: LockState,
    },
    /// Run one attempt of a step through its actuator; report it with `Input::StepDone`.
    StartStep(StartStep),
    Reply {
        id: u64,
        reply: CommandReply,
    },
    /// Something worth counting, showing or putting on a timeline; no decision hangs on it.
    Observe(Observation),
    /// Call one notifier once with one event; report it with `Input::NotifyDone`.
    Notify(NotifyCall),
}

/// What the driver may count and show.
// As large as the `Action`s it travels among (which carry whole messages).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Observation {
    /// Every pinger action but `SendProbe`.
    Pinger(PingerAction),
    /// `RoundStarted`, `RoundEnded` and `Committed`.
    Voter(VoterAction),
}

/// Failover rules the simulator may switch off one by one, to show that its checker catches
/// the unsafe run each rule prevents. All false outside those tests; nothing else sets them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokenRules {
    /// A step of an older run starts although a newer run of its site has begun.
    pub epoch_fence: bool,
    /// An automatic run starts within hold-down of the previous one.
    pub hold_down: bool,
    /// An automatic run starts while its site is in maintenance.
    pub maintenance: bool,
    /// An automatic run starts for a `single_vantage = "manual"` watch.
    pub single_vantage: bool,
    /// A bgp step that would leave a declared prefix announced by no live site starts.
    pub anycast: bool,
    /// A step starts before a majority of the electorate holds its start.
    pub start_unreplicated: bool,
    /// The takeover steps start as soon as the verdict is committed.
    pub takeover_delay: bool,
    /// No member takes over a run whose leader went silent.
    pub takeover: bool,
    /// No member expects the run of a DOWN verdict led elsewhere: a leader that dies before
    /// its register leaves orphans the verdict.
    pub expect_runs: bool,
}

/// One node's decisions (see the module doc).
pub struct NodeCore {
    fleet: Arc<Fleet>,
    me: Node,
    pinger: Pinger,
    voter: Voter,
    replicas: Replicas,
    runs: Runs,
    isolation: Option<IsolationState>,
    operator: operator::OperatorState,
    alarm: alarm::AlarmState,
    oplock: OpLock,
    peers: peers::Peers,
    tilt: Tilt,
    refusals: Refusals,
    notify: Notifications,
    /// Set when a promise could not be made durable: this node no longer votes.
    voting_disabled: Option<String>,
    /// Set when the running fleet file no longer lists this node: it votes and acts no more.
    retired: Option<String>,
    next_status: Time,
    /// Status intervals passed since start (an Indicator-only node sends only every few).
    status_ticks: u64,
    /// The verdicts, maintenance calls and fleet version of the last status sent to everyone
    /// it goes to (see `status.rs`: the Indicator-only nodes this node probes get the others
    /// only so often, and an Indicator-only node sends its own only so often).
    relayed: (Vec<Verdict>, Vec<MaintenanceWindow>, String),
    /// Status intervals left in which the last news goes to everyone (`NEWS_SENDS`).
    news_left: u64,
    /// The peers this node speaks with only through probes (`Fleet::quiet_peers`), sorted:
    /// they get its news, never its routine messages, so their connection can stay closed.
    quiet: Vec<NodeId>,
    actions: VecDeque<Action>,
    broken: BrokenRules,
}

impl NodeCore {
    /// The core of node `me` of `fleet`, from what its store holds. `seed` feeds every random
    /// choice (probe nonces, backoffs); `now` is the start.
    pub fn new(
        fleet: Arc<Fleet>,
        me: &NodeId,
        boot: Boot,
        now: Now,
        seed: u64,
    ) -> Option<NodeCore> {
        let node = fleet.node(me)?.clone();
        let mut pinger = Pinger::new(
            PingerConfig::from_timing(&fleet.timing),
            watches_of(&fleet, &node),
            now.mono + first_round_delay(&fleet, me, now.wall),
            seed,
        );
        pinger.set_judges(judges_of(&fleet));
        let mut voter = Voter::new(
            VoterConfig::from_timing(&fleet.timing),
            me.clone(),
            electorates_of(&fleet, &node),
            boot.durable,
            boot.verdicts,
            seed ^ 0x5eed,
        );
        // Verdicts of every watched site are learned only from its electorate.
        voter.set_electorates(fleet_electorates(&fleet));
        // The operator lock's runs this member accepted or learned are fencing tokens of
        // their site: its vote ballots go above them, also after a restart.
        for (site, state) in &boot.locks {
            state.runs().for_each(|run| voter.observe_epoch(site, run));
        }
        let replicas = Replicas::new(
            me.clone(),
            ReplicaConfig::from_status_interval(fleet.timing.status_interval),
        );
        let isolation = IsolationState::for_node(&fleet, &node, now.mono);
        let mut core = NodeCore {
            tilt: Tilt::new(now, fleet.timing.probe_budget()),
            peers: peers::Peers::default(),
            operator: operator::OperatorState::new(me, boot.maintenance, now),
            alarm: alarm::AlarmState::new(me, boot.alarms, now),
            oplock: OpLock::new(
                me.clone(),
                LockConfig::from_timing(&fleet.timing),
                boot.locks,
                seed ^ 0x10c4,
            ),
            refusals: Refusals::default(),
            notify: Notifications::new(me.clone(), notify::notify_config(&fleet)),
            voting_disabled: None,
            retired: None,
            next_status: now.mono,
            status_ticks: 0,
            relayed: Default::default(),
            news_left: 0,
            quiet: fleet.quiet_peers(&node.id),
            actions: VecDeque::new(),
            runs: Runs::default(),
            broken: BrokenRules::default(),
            fleet,
            me: node,
            pinger,
            voter,
            replicas,
            isolation,
        };
        core.boot_runs(now, boot.runs);
        core.drain(now);
        Some(core)
    }

    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }
    pub fn me(&self) -> &Node {
        &self.me
    }
    pub fn pinger(&self) -> &Pinger {
        &self.pinger
    }
    pub fn voter(&self) -> &Voter {
        &self.voter
    }
    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }
    pub fn runs(&self) -> &Runs {
        &self.runs
    }
    pub fn isolation(&self) -> Option<&IsolationState> {
        self.isolation.as_ref()
    }
    pub fn peers(&self) -> &peers::Peers {
        &self.peers
    }
    pub fn tilt(&self) -> &Tilt {
        &self.tilt
    }
    pub fn oplock(&self) -> &OpLock {
        &self.oplock
    }
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }
    pub fn notifications(&self) -> &Notifications {
        &self.notify
    }
    /// Why this node does not vote, if it does not: a failed durable write, or retirement.
    pub fn voting_disabled(&self) -> Option<&str> {
        self.voting_disabled.as_deref().or(self.retired.as_deref())
    }
    /// The newest maintenance call per site this node knows.
    pub fn maintenance_windows(&self) -> impl Iterator<Item = &MaintenanceWindow> {
        self.operator.maintenance.windows()
    }

    /// When the maintenance of `site` ends (Unix ms), while it lasts at `wall`.
    pub fn maintenance_until(&self, site: &SiteId, wall: WallTime) -> Option<i64> {
        self.operator.maintenance_until(site, wall)
    }

    /// Switches rules off (simulator tests only; see `BrokenRules`).
    #[doc(hidden)]
    pub fn break_rules(&mut self, broken: BrokenRules) {
        self.broken = broken;
    }

    /// Replaces the electorates this node votes in (the simulator's wrong-electorate test).
    #[doc(hidden)]
    pub fn override_electorates(&mut self, electorates: Vec<(SiteId, Electorate)>) {
        self.voter.set_sites(electorates);
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest monotonic instant at which `Input::Tick` has work to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut wake = self.pinger.poll_timeout().min(self.next_status);
        let mut at = |t: Option<Time>| {
            if let Some(t) = t {
                wake = wake.min(t);
            }
        };
        // While abstaining the voter's deadlines are not served: waking for them would spin.
        if !self.abstains() {
            at(self.voter.poll_timeout());
        }
        at(self.replicas.poll_timeout());
        at(self.runs.poll_timeout());
        at(self.isolation.as_ref().and_then(|i| i.poll_timeout()));
        at(self.operator.poll_timeout());
        at(self.oplock.poll_timeout());
        at(self.tilt.poll_timeout());
        at(self.notify.poll_timeout());
        at(self.alarm.poll_timeout());
        Some(wake)
    }

    /// The one step function.
    pub fn handle(&mut self, now: Now, input: Input) {
        self.observe_clocks(now);
        match input {
            Input::Tick => self.on_tick(now),
            Input::ProbeAnswer {
                indicator,
                nonce,
                at,
                health,
            } => self
                .pinger
                .handle_answer_with(at, &indicator, nonce, health),
            Input::ProbeNotSent { indicator, nonce } => {
                self.pinger.probe_not_sent(now.mono, &indicator, nonce)
            }
            Input::Message { from, msg } => self.on_message(now, from, msg),
            Input::StepDone(done) => self.on_step_done(now, done),
            Input::Command { id, command } => self.on_command(now, id, command),
            Input::Reload(fleet) => self.reload(now, fleet),
            Input::PeerConnected(peer) => self.on_peer_connected(now, &peer),
            Input::ProbesHeard(heard) => self.on_probes_heard(now, heard),
            Input::PersistFailed(f) => self.on_persist_failed(f),
            Input::NotifyDone { key, notifier, ok } => {
                self.notify.call_done(now.mono, &key, &notifier, ok)
            }
        }
        self.drain(now);
    }

    /// Wall-clock jumps and stalls of the event loop: a node that cannot trust its own clocks
    /// abstains for a cool-off (see `tilt`).
    fn observe_clocks(&mut self, now: Now) {
        let due = self.poll_timeout();
        if let Some(why) = self.tilt.observe(now, due) {
            warn!(node = %self.me.id, reason = %why, cool_off_ms = self.tilt.cool_off().as_millis() as u64,
                  "this node distrusts its own clocks: it abstains from voting and from starting steps");
        }
    }

    /// True while this node must not vote: a failed durable write, retirement, or its clocks
    /// distrusted.
    fn abstains(&self) -> bool {
        self.voting_disabled.is_some() || self.retired.is_some() || self.tilt.active()
    }

    /// True while this node must not start steps of replicated runs.
    fn holds_steps(&self) -> bool {
        self.retired.is_some() || self.tilt.active()
    }

    fn on_tick(&mut self, now: Now) {
        let t = now.mono;
        if self.tilt.end_if_over(t) {
            info!(node = %self.me.id, "clocks trusted again: voting and steps resume");
            // Opinions may have changed while abstaining: let the voter look again.
            let sites: Vec<SiteId> = self.pinger.watched_sites().cloned().collect();
            for s in sites {
                self.voter.on_opinion_changed(t, &s, &self.pinger);
            }
        }
        if self.pinger.poll_timeout() <= t {
            self.pinger.handle_timeout(t);
        }
        if self.voter.poll_timeout().is_some_and(|v| v <= t) && !self.abstains() {
            self.voter.handle_timeout(t, &self.pinger);
        }
        if t >= self.next_status {
            self.send_status(now);
            self.send_alarms();
            self.next_status = t + self.fleet.timing.status_interval;
        }
        self.react_to_alarms(now);
        self.on_replica_timers(now);
        self.on_run_timers(now);
        self.on_isolation_timers(now);
        self.on_operator_timers(now);
        self.notify.handle_timeout(t);
    }

    fn on_message(&mut self, now: Now, from: NodeId, msg: Message) {
        match msg {
            Message::Status(status) => self.on_status(now, from, status),
            Message::Vote(m) => {
                if !self.abstains() {
                    self.voter.handle_message(now.mono, &from, m, &self.pinger);
                }
            }
            Message::Run(m) => self.on_run_msg(now, &from, m),
            Message::Lock(m) => self.on_lock_msg(now, &from, m),
            Message::Notified(m) => self.on_notified(now, &from, m),
            Message::Alarms(m) => self.learn_alarms(now, &from, m),
        }
    }

    /// Carries every sub-machine's actions over into the node's queue, in order, until all
    /// are quiet.
    fn drain(&mut self, now: Now) {
        loop {
            let mut any = false;
            while let Some(a) = self.pinger.poll_action() {
                any = true;
                self.on_pinger_action(now, a);
            }
            while let Some(a) = self.voter.poll_action() {
                any = true;
                self.on_voter_action(now, a);
            }
            any |= self.drain_replicas(now);
            any |= self.drain_runs(now);
            any |= self.drain_isolation(now);
            any |= self.drain_oplock(now);
            any |= self.release_replicated_steps(now);
            any |= self.drain_notify(now);
            if !any {
                break;
            }
        }
    }

    fn on_pinger_action(&mut self, now: Now, a: PingerAction) {
        match a {
            PingerAction::SendProbe {
                indicator,
                nonce,
                opinion,
            } => {
                self.actions.push_back(Action::SendProbe {
                    indicator,
                    nonce,
                    opinion,
                });
            }
            PingerAction::OpinionChanged { ref site, to, .. } => {
                if to == Opinion::Up {
                    self.runs.seen_up.insert(site.clone());
                }
                let site = site.clone();
                self.observe(Observation::Pinger(a));
                if !self.abstains() {
                    self.voter.on_opinion_changed(now.mono, &site, &self.pinger);
                }
            }
            other => self.observe(Observation::Pinger(other)),
        }
    }

    fn on_voter_action(&mut self, now: Now, a: VoterAction) {
        if self.voting_disabled.is_some()
            && !matches!(a, VoterAction::Committed { .. } | VoterAction::Lead { .. })
        {
            return;
        }
        match a {
            VoterAction::Persist { site, durable } => {
                self.actions
                    .push_back(Action::PersistDurable { site, durable });
            }
            VoterAction::Send { to, msg } => self.actions.push_back(Action::Send {
                to,
                msg: Message::Vote(msg),
            }),
            // Not to the Indicator-only nodes this node probes: they learn verdicts from the
            // status that carries them as news.
            VoterAction::Broadcast { msg } => self.actions.push_back(Action::Broadcast {
                msg: Message::Vote(msg),
                except: self.quiet.clone(),
            }),
            VoterAction::Committed { ref verdict, by_me } => {
                self.actions.push_back(Action::RecordVerdict {
                    verdict: verdict.clone(),
                    at: now.wall,
                });
                let (site, epoch) = (verdict.site.clone(), verdict.epoch());
                // Only the round that committed it here makes this node the run's leader: a
                // verdict naming this node that it merely learned (a lying member may forge
                // one for the next slot) starts nothing.
                let led_here = by_me
                    && verdict.outcome() == Outcome::Down
                    && verdict.value.leader == self.me.id;
                let leader = verdict.value.leader.clone();
                let down = verdict.outcome() == Outcome::Down;
                self.notify_verdict(now, verdict);
                self.observe(Observation::Voter(a));
                if led_here {
                    self.on_down_verdict_led_here(now, &site, epoch);
                } else if down && leader != self.me.id {
                    // Led elsewhere: its leader may die before its register reaches anyone.
                    self.expect_run(now, &site, epoch, &leader);
                }
            }
            VoterAction::Lead { ref verdict } => {
                let (site, epoch) = (verdict.site.clone(), verdict.epoch());
                info!(%site, epoch, "this node leads the verdict it learned: its own opinion is DOWN too");
                self.observe(Observation::Voter(a));
                self.on_down_verdict_led_here(now, &site, epoch);
            }
            VoterAction::Refused { from, site, reason } => self.refused(now, &from, &site, reason),
            other => self.observe(Observation::Voter(other)),
        }
    }

    /// Counts a message refused because its sender may not originate it; logs it when this
    /// peer was quiet for a minute.
    pub(super) fn refused(&mut self, now: Now, from: &NodeId, site: &SiteId, reason: Refusal) {
        if self.refusals.record(now.mono, from, reason) {
            warn!(peer = %from, %site, reason = reason.as_str(),
                  "message refused: the sender may not originate it (logged once a minute per peer)");
        }
    }

    fn observe(&mut self, o: Observation) {
        self.actions.push_back(Action::Observe(o));
    }

    fn on_persist_failed(&mut self, f: PersistFailed) {
        match f {
            PersistFailed::Durable { site, error } => {
                // A vote that is not durable must not leave the node: stop voting, and drop
                // every vote message queued behind the failed write.
                error!(%site, %error, "cannot make the vote durable; this node stops voting");
                self.voting_disabled = Some(error);
                self.actions.retain(|a| {
                    !matches!(
                        a,
                        Action::Send {
                            msg: Message::Vote(_),
                            ..
                        } | Action::Broadcast {
                            msg: Message::Vote(_),
                            ..
                        } | Action::PersistDurable { .. }
                    )
                });
            }
            PersistFailed::Lock { site, error } => {
                // A promise that is not durable must not leave: no lock message goes out.
                error!(%site, %error, "cannot make the operator lock durable; this node takes no part in it any more");
                self.oplock.break_down(error);
                self.actions.retain(|a| {
                    !matches!(
                        a,
                        Action::Send {
                            msg: Message::Lock(_),
                            ..
                        } | Action::PersistLock { .. }
                    )
                });
            }
            PersistFailed::Run { site, run, error } => {
                error!(%site, run_id = run, %error, "cannot make the run durable; this node sends and starts nothing more for it");
                self.runs.broken(&site, run);
                let key = (site, run);
                self.actions.retain(|a| match a {
                    Action::Send {
                        msg: Message::Run(m),
                        ..
                    } => m.key() != key,
                    Action::StartStep(s) => (s.site.clone(), s.run) != key,
                    Action::AppendJournal(e) => (e.site.clone(), e.epoch) != key,
                    Action::SaveRun(r) => (r.site.clone(), r.run) != key,
                    _ => true,
                });
            }
        }
    }

    /// Applies a changed fleet file: everything derived from it is rebuilt (watches,
    /// electorates, timing, the lease, the self-fence electorate).
    fn reload(&mut self, now: Now, fleet: Arc<Fleet>) {
        let Some(me) = fleet.node(&self.me.id).cloned() else {
            // Retired by the operator: a node the fleet no longer lists must not go on deciding
            // with the old electorate, whose other retired members may still form a majority
            // of it.
            warn!(node = %self.me.id, "this node is not in the changed fleet file: it stops voting and starting steps");
            self.retired = Some(format!(
                "node {} is not in the fleet file any more (version {}): it no longer votes or runs steps",
                self.me.id,
                &fleet.hash[..fleet.hash.len().min(12)]
            ));
            return;
        };
        self.retired = None;
        let t = now.mono;
        self.pinger
            .set_config(PingerConfig::from_timing(&fleet.timing));
        self.pinger.set_watches(t, watches_of(&fleet, &me));
        self.pinger.set_judges(judges_of(&fleet));
        self.voter
            .set_config(VoterConfig::from_timing(&fleet.timing));
        self.voter.set_sites(electorates_of(&fleet, &me));
        self.voter.set_electorates(fleet_electorates(&fleet));
        self.replicas
            .set_config(ReplicaConfig::from_status_interval(
                fleet.timing.status_interval,
            ));
        self.tilt.set_budget(fleet.timing.probe_budget());
        self.notify.set_config(notify::notify_config(&fleet));
        self.oplock
            .set_config(LockConfig::from_timing(&fleet.timing));
        self.isolation = IsolationState::reloaded(self.isolation.take(), &fleet, &me, t);
        self.quiet = fleet.quiet_peers(&me.id);
        self.me = me;
        self.fleet = fleet;
    }

    /// The electorate of `site` in the running fleet.
    fn electorate(&self, site: &SiteId) -> Electorate {
        Electorate::new(self.fleet.electorate(site))
    }
}

fn watches_of(fleet: &Fleet, me: &Node) -> Vec<(SiteId, Vec<NodeId>)> {
    if !me.roles.pinger {
        return Vec::new();
    }
    fleet
        .watched_by_site(&me.site)
        .into_iter()
        .map(|s| (s.clone(), fleet.indicators(&s)))
        .collect()
}

fn judges_of(fleet: &Fleet) -> std::collections::HashMap<SiteId, crate::core::health::Judge> {
    fleet.service.judges.clone().into_iter().collect()
}

fn electorates_of(fleet: &Fleet, me: &Node) -> Vec<(SiteId, Electorate)> {
    if !me.roles.voter {
        return Vec::new();
    }
    fleet
        .watches
        .iter()
        .map(|w| (w.site.clone(), fleet.electorate(&w.site)))
        .filter(|(_, e)| e.contains(&me.id))
        .map(|(s, e)| (s, Electorate::new(e)))
        .collect()
}

/// Spreads the fleet's Pingers evenly over the probe period, on the wall clock: with random
/// phases the majority-th Pinger to see a blackout may be almost a whole period behind the
/// first; evenly spread, it is at most (majority / pingers) of a period behind. With clocks out
/// of sync the phases are merely random again, which is still correct.
fn first_round_delay(fleet: &Fleet, me: &NodeId, wall: WallTime) -> Duration {
    // Interleave the sites (first Pinger of every site, then the second, ...) so that the
    // Pingers judging any one site are spread too, not only the fleet's as a whole.
    let mut pingers: Vec<(usize, usize, &NodeId)> = Vec::new();
    for (si, site) in fleet.sites.iter().enumerate() {
        let of_site = fleet
            .nodes
            .iter()
            .filter(|n| n.roles.pinger && n.site == site.id);
        pingers.extend(of_site.enumerate().map(|(i, n)| (i, si, &n.id)));
    }
    pingers.sort();
    let pingers: Vec<&NodeId> = pingers.into_iter().map(|(_, _, id)| id).collect();
    let Some(rank) = pingers.iter().position(|p| *p == me) else {
        return Duration::ZERO;
    };
    let period = fleet.timing.probe_interval.as_micros().max(1) as u64;
    let offset = period * rank as u64 / pingers.len() as u64;
    let now = wall.as_micros();
    Duration::from_micros((offset + period - now % period) % period)
}

#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod tests;
