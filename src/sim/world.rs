//! One simulated fleet: every Pinger/Voter node runs the real `core::node::NodeCore`, built
//! from the fleet file of the layout and from its `MemoryStore`, and its actions are carried
//! out exactly as the tokio driver (`node::driver`) carries them out: probes and messages
//! through the simulated network (real codec), every write into the store before the next
//! action, a failed probe send reported back, steps through the stand-in actuator. Each node
//! has its own wall clock (true time plus an offset that may step); monotonic time is the
//! world's. Indicator-only nodes answer probes without a core. Crashes keep only the store
//! (a new core boots from it, as the driver does at start); freezes keep everything and
//! deliver a backlog. The world decides nothing: it only feeds cores and records what happens.

use super::actuator::Actuator;
use super::failover::{FailoverChecker, Overlap};
use super::faults::FaultModel;
use super::invariants::{Check, Checker, ViolationKind};
use super::net::{EventKind, Net, Queue};
use crate::config::{Fleet, Timing};
use crate::core::node::{
    Action, Boot, BrokenRules, Input, NodeCore, Observation, ProbeHeard, StepDone,
};
use crate::core::pinger::PingerAction;
use crate::core::quorum::Electorate;
use crate::core::types::{NodeId, Now, SiteId, Time, WallTime};
use crate::core::voter::{RoundOutcome, VoterAction};
use crate::store::{MemoryStore, Storage};
use crate::wire::{self, Datagram, MaintenanceWindow, Message};
use rand::rngs::StdRng;
use rand::RngCore;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

#[path = "world_faults.rs"]
mod world_faults;

/// The true wall clock at virtual time zero (2024-01-01); each node adds its own offset.
pub const WALL_BASE_US: u64 = 1_704_067_200_000_000;

/// How long a peer must be unreachable before the mesh has dropped its connection, so that a
/// probe to it cannot be sent at all (the driver's `ProbeNotSent`).
const CONNECTION_LOST_AFTER: Duration = Duration::from_secs(3);

/// What waits for a frozen node.
pub enum Pending {
    Bytes {
        from: usize,
        datagram: bool,
        bytes: Vec<u8>,
    },
    Step(StepDone),
}

pub struct Node {
    pub id: NodeId,
    pub site: SiteId,
    pub indicator: bool,
    /// Pinger and voter: runs a core.
    pub voter: bool,
    /// The broken-quorum test's electorates (None: the fleet's).
    pub electorates: Option<Vec<(SiteId, Electorate)>>,
    pub core: Option<NodeCore>,
    pub store: MemoryStore,
    /// Up, frozen (core kept, backlog grows) or crashed (core gone).
    pub up: bool,
    pub frozen: bool,
    pub backlog: Vec<Pending>,
    pub incarnation: u64,
    pub timer_at: Option<Time>,
    /// This node's wall clock minus the true one, µs.
    pub wall_offset: i64,
    /// Since when the node is down and not frozen (its peers' connections to it are gone).
    pub down_since: Option<Time>,
    /// The last input was a tick (a deadline still due after it is overdue).
    pub ticked: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub undecided_rounds: u64,
    pub contradicted_rounds: u64,
    /// Slots decided before any classic round of theirs started (the fast round), and after.
    pub fast_decided: u64,
    pub classic_decided: u64,
    pub conflicts: u64,
    pub restarts: u64,
    pub decode_errors: u64,
    pub steps_started: u64,
    pub effects: u64,
    pub runs_finished: u64,
    pub orphaned: u64,
    pub forgeries: u64,
    /// Known core defects seen (see `SimConfig::strict`).
    pub known: super::failover::KnownDefects,
    pub alarms: super::alarms::AlarmFigures,
}

pub struct World {
    pub now: Time,
    pub timing: Timing,
    pub fleet: Arc<Fleet>,
    pub broken: BrokenRules,
    pub nodes: Vec<Node>,
    pub q: Queue,
    pub net: Net,
    pub faults: FaultModel,
    pub rng: StdRng,
    pub checker: Checker,
    pub failover: FailoverChecker,
    pub actuator: Actuator,
    pub counters: Counters,
    pub trace: VecDeque<String>,
    pub trace_len: usize,
    /// Node id -> index in `nodes`: a probe's recipient is found in O(1), not by a scan, so
    /// fleets of thousands of Indicators simulate in time linear in their traffic.
    pub by_id: HashMap<NodeId, usize>,
    /// Maintenance calls an operator made (site, set_at, until): any other is a forgery.
    pub operator_windows: Vec<MaintenanceWindow>,
    /// The lying member, when the scenario has one.
    pub liar: Option<usize>,
    pub(super) next_command: u64,
    pub(super) orphan: super::orphan::Orphan,
    pub alarms: super::alarms::AlarmLedger,
    /// (site, slot) for which some node started a classic round.
    classic_slots: BTreeSet<(SiteId, u64)>,
}

impl World {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        timing: Timing,
        fleet: Arc<Fleet>,
        broken: BrokenRules,
        nodes: Vec<Node>,
        q: Queue,
        faults: FaultModel,
        rng: StdRng,
        checker: Checker,
        failover: FailoverChecker,
        trace_len: usize,
    ) -> World {
        let by_id = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        World {
            now: Time::ZERO,
            timing,
            fleet,
            broken,
            net: Net::new(nodes.iter().map(|n| n.site.clone()).collect()),
            nodes,
            q,
            actuator: Actuator::new(faults.steps),
            faults,
            rng,
            checker,
            failover,
            counters: Counters::default(),
            trace: VecDeque::new(),
            trace_len,
            by_id,
            operator_windows: Vec::new(),
            liar: None,
            next_command: 0,
            orphan: Default::default(),
            alarms: Default::default(),
            classic_slots: BTreeSet::new(),
        }
    }

    pub fn log(&mut self, line: impl FnOnce() -> String) {
        if self.trace_len == 0 {
            return;
        }
        if self.trace.len() == self.trace_len {
            self.trace.pop_front();
        }
        let t = self.now.0;
        self.trace
            .push_back(format!("{:>5}.{:03} ms {}", t / 1000, t % 1000, line()));
    }

    pub(super) fn index(&self, id: &NodeId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Node `i`'s clocks now.
    pub fn now_of(&self, i: usize) -> Now {
        let wall = (WALL_BASE_US + self.now.0) as i64 + self.nodes[i].wall_offset;
        Now::new(self.now, WallTime::from_micros(wall.max(0) as u64))
    }

    /// Builds a node's core from its store, exactly as the driver does at start.
    pub fn boot(&mut self, i: usize) -> Check {
        let seed = self.rng.next_u64();
        let now = self.now_of(i);
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        n.ticked = false;
        n.backlog.clear();
        n.down_since = None;
        if !n.voter {
            n.core = None;
            return Ok(());
        }
        let store = |e: crate::store::StoreError| (ViolationKind::Store, format!("{}: {e}", n.id));
        let boot = Boot {
            durable: n.store.load_durable().map_err(store)?,
            verdicts: n
                .store
                .latest_verdicts()
                .map_err(store)?
                .into_iter()
                .map(|s| s.verdict)
                .collect(),
            runs: n.store.run_records().map_err(store)?,
            maintenance: n.store.maintenance().map_err(store)?,
            locks: n.store.load_locks().map_err(store)?,
            alarms: n.store.alarms().map_err(store)?,
        };
        let mut core = NodeCore::new(self.fleet.clone(), &n.id, boot, now, seed)
            .expect("every simulated node is in the fleet");
        core.break_rules(self.broken);
        if let Some(e) = &n.electorates {
            core.override_electorates(e.clone());
        }
        n.core = Some(core);
        n.timer_at = None;
        self.carry_out(i)
    }

    /// Schedules the node's next timer if it is earlier than the one armed.
    fn arm(&mut self, i: usize) -> Check {
        let now = self.now;
        let n = &mut self.nodes[i];
        let Some(c) = &n.core else { return Ok(()) };
        if !n.up {
            return Ok(());
        }
        let Some(next) = c.poll_timeout() else {
            return Ok(());
        };
        let next = if next > now {
            next
        } else if n.ticked {
            // The tick did not clear the deadline: a driver would wake at once, again and
            // again.
            let late = now.0.saturating_sub(next.0);
            return Err((
                ViolationKind::BusyWake,
                format!("{} still due {late} µs ago right after a tick", n.id),
            ));
        } else {
            // Due, and no tick since the input: the driver ticks after every input.
            now
        };
        n.ticked = false;
        if n.timer_at.is_some_and(|t| t >= now && t <= next) {
            return Ok(());
        }
        n.timer_at = Some(next);
        let incarnation = n.incarnation;
        self.q.push(
            next,
            EventKind::Timer {
                node: i,
                incarnation,
            },
        );
        Ok(())
    }

    /// Hands one input to node `i`'s core and carries out what it asks.
    fn feed(&mut self, i: usize, input: Input) -> Check {
        let now = self.now_of(i);
        let Some(c) = self.nodes[i].core.as_mut() else {
            return Ok(());
        };
        c.handle(now, input);
        self.carry_out(i)
    }

    pub fn on_timer(&mut self, i: usize, incarnation: u64) -> Check {
        let now = self.now;
        let n = &mut self.nodes[i];
        if !n.up || n.incarnation != incarnation || n.timer_at != Some(now) {
            return Ok(());
        }
        n.timer_at = None;
        n.ticked = true;
        self.feed(i, Input::Tick)
    }

    pub fn on_deliver(&mut self, to: usize, from: usize, datagram: bool, bytes: Vec<u8>) -> Check {
        let n = &mut self.nodes[to];
        if !n.up {
            if n.frozen {
                // Frozen: the socket buffer keeps it until the process runs again.
                n.backlog.push(Pending::Bytes {
                    from,
                    datagram,
                    bytes,
                });
            }
            return Ok(());
        }
        self.net.received(to, bytes.len());
        let now = self.now;
        if datagram {
            match wire::decode_datagram(&bytes) {
                Ok(Datagram::Probe {
                    nonce,
                    sent_us,
                    opinion,
                }) => {
                    if !self.nodes[to].indicator {
                        return Ok(());
                    }
                    let d = Datagram::Answer { nonce, sent_us };
                    let (q, f, r) = (&mut self.q, &self.faults, &mut self.rng);
                    self.net.send_datagram(q, f, r, now, to, from, &d);
                    if self.nodes[to].core.is_none() {
                        return Ok(());
                    }
                    // As the driver reports the probes its mesh answered (one at a time here).
                    let pinger = self.nodes[from].id.clone();
                    let at = self.now_of(to).mono;
                    let heard = ProbeHeard {
                        pinger,
                        at,
                        opinion,
                    };
                    self.feed(to, Input::ProbesHeard(vec![heard]))
                }
                Ok(Datagram::Answer { nonce, .. }) => {
                    let indicator = self.nodes[from].id.clone();
                    self.feed(
                        to,
                        Input::ProbeAnswer {
                            indicator,
                            nonce,
                            at: now,
                            health: Default::default(),
                        },
                    )
                }
                Err(_) => {
                    self.counters.decode_errors += 1;
                    Ok(())
                }
            }
        } else {
            let from_id = self.nodes[from].id.clone();
            match wire::decode_message(&bytes) {
                Ok(msg) => {
                    if let Message::Vote(m) = &msg {
                        if self.trace_len > 0 {
                            let line = super::net::describe(m);
                            let to_id = self.nodes[to].id.clone();
                            self.log(|| format!("{from_id} -> {to_id} {line}"));
                        }
                    }
                    self.feed(to, Input::Message { from: from_id, msg })
                }
                Err(_) => {
                    self.counters.decode_errors += 1;
                    Ok(())
                }
            }
        }
    }

    /// Can node `from` send a probe to `to` at all? Not once the mesh has dropped the
    /// connection: the peer down (not frozen) or cut off for longer than the idle timeout.
    fn connected(&self, from: usize, to: usize) -> bool {
        let lost = Time(
            self.now
                .0
                .saturating_sub(CONNECTION_LOST_AFTER.as_micros() as u64),
        );
        if self.nodes[to].down_since.is_some_and(|t| t <= lost) {
            return false;
        }
        let (a, b) = (&self.net.sites[from], &self.net.sites[to]);
        !self.faults.partitions.iter().any(|p| {
            ((&p.from == a && &p.to == b) || (&p.from == b && &p.to == a))
                && p.start <= lost
                && self.now < p.end
        })
    }

    /// Carries out every action node `i`'s core queued, in order, as the driver does.
    pub(super) fn carry_out(&mut self, i: usize) -> Check {
        let now = self.now;
        while let Some(a) = self.nodes[i].core.as_mut().and_then(|c| c.poll_action()) {
            if self.crashes_before(i, &a) {
                break;
            }
            match a {
                Action::Notify(_) => {}
                Action::SendProbe {
                    indicator,
                    nonce,
                    opinion,
                } => {
                    if self.ghost_answer(i, &indicator, nonce) {
                        continue;
                    }
                    let to = self.index(&indicator);
                    match to.filter(|to| self.connected(i, *to)) {
                        Some(to) => {
                            let d = Datagram::Probe {
                                nonce,
                                sent_us: now.0,
                                opinion,
                            };
                            self.net.send_datagram(
                                &mut self.q,
                                &self.faults,
                                &mut self.rng,
                                now,
                                i,
                                to,
                                &d,
                            );
                        }
                        None => {
                            let t = self.now_of(i);
                            let c = self.nodes[i].core.as_mut().expect("core present");
                            c.handle(t, Input::ProbeNotSent { indicator, nonce });
                        }
                    }
                }
                Action::Send { to, msg } => {
                    if let Some(t) = self.index(&to) {
                        self.net.send_message(
                            &mut self.q,
                            &self.faults,
                            &mut self.rng,
                            now,
                            i,
                            t,
                            &msg,
                        );
                    }
                }
                Action::Broadcast { msg, except } => {
                    // What a real peer would drop for its size never leaves, as on the mesh.
                    let Ok(bytes) = wire::encode_message(&msg) else {
                        self.net.unsendable(i);
                        continue;
                    };
                    for t in 0..self.nodes.len() {
                        if t != i && except.binary_search(&self.nodes[t].id).is_err() {
                            self.net.send_encoded(
                                &mut self.q,
                                &self.faults,
                                &mut self.rng,
                                now,
                                i,
                                t,
                                bytes.clone(),
                            );
                        }
                    }
                }
                Action::PersistDurable { site, durable } => {
                    let me = self.nodes[i].id.clone();
                    self.checker.on_persist(&me, &site, &durable.promised)?;
                    self.nodes[i]
                        .store
                        .save_durable(&site, &durable)
                        .map_err(|e| (ViolationKind::Store, format!("{me}: {e}")))?;
                }
                Action::RecordVerdict { verdict, at } => {
                    let me = self.nodes[i].id.clone();
                    if verdict.epoch() >= super::liar::FORGED_FROM {
                        return Err((
                            ViolationKind::ForgeryAccepted,
                            format!("{me} recorded a forged verdict {verdict:?}"),
                        ));
                    }
                    self.nodes[i]
                        .store
                        .record_verdict(&verdict, at.as_millis())
                        .map_err(|e| (ViolationKind::Agreement, format!("{me}: {e}")))?;
                }
                Action::SaveRun(r) => {
                    let me = self.nodes[i].id.clone();
                    self.failover.on_save_run(now, &me, &r)?;
                    self.nodes[i]
                        .store
                        .save_run(&r)
                        .map_err(|e| (ViolationKind::Store, format!("{me}: {e}")))?;
                }
                Action::AppendJournal(e) => {
                    let me = self.nodes[i].id.clone();
                    if let crate::core::pipeline::JournalKind::RunFinished { outcome } = &e.kind {
                        self.counters.runs_finished += 1;
                        let how = outcome.summary();
                        self.log(|| {
                            format!("{me} journals the end of run {}-{}: {how}", e.site, e.epoch)
                        });
                    }
                    self.failover.on_journal(now, &e);
                    self.nodes[i]
                        .store
                        .append_journal(&e)
                        .map_err(|err| (ViolationKind::Store, format!("{me}: {err}")))?;
                }
                Action::SaveMaintenance(w) => {
                    let me = self.nodes[i].id.clone();
                    if !self.operator_windows.contains(&w) {
                        return Err((
                            ViolationKind::ForgeryAccepted,
                            format!("{me} stored a maintenance call no operator made: {w:?}"),
                        ));
                    }
                    self.nodes[i]
                        .store
                        .save_maintenance(&w)
                        .map_err(|e| (ViolationKind::Store, format!("{me}: {e}")))?;
                }
                Action::SaveAlarm(a) => {
                    if self.save_alarm(i, a)? {
                        break;
                    }
                }
                Action::PersistLock { site, state } => {
                    if self.persist_lock(i, &site, &state)? {
                        break;
                    }
                }
                Action::StartStep(s) => self.start_step(i, s)?,
                Action::Reply { id, reply } => {
                    let me = self.nodes[i].id.clone();
                    self.log(|| format!("{me} answers operator call {id}: {reply:?}"));
                }
                Action::Observe(o) => self.observe(i, o)?,
            }
        }
        self.arm(i)
    }

    fn observe(&mut self, i: usize, o: Observation) -> Check {
        let now = self.now;
        match o {
            Observation::Pinger(PingerAction::OpinionChanged { site, from, to }) => {
                let me = self.nodes[i].id.clone();
                self.log(|| format!("{me} opinion of {site}: {from:?} -> {to:?}"));
            }
            Observation::Pinger(_) => {}
            Observation::Voter(VoterAction::RoundStarted {
                site,
                slot,
                target,
                epoch,
                attempt,
            }) => {
                let me = self.nodes[i].id.clone();
                self.log(|| {
                    format!("{me} round started: {site} slot {slot} {target:?} epoch {epoch} attempt {attempt}")
                });
                if attempt > 0 {
                    self.classic_slots.insert((site, slot));
                }
            }
            Observation::Voter(VoterAction::RoundEnded(r)) => {
                match r.outcome {
                    RoundOutcome::Undecided => self.counters.undecided_rounds += 1,
                    RoundOutcome::Contradicted => self.counters.contradicted_rounds += 1,
                    RoundOutcome::Conflict => self.counters.conflicts += 1,
                    _ => {}
                }
                let me = self.nodes[i].id.clone();
                self.log(|| {
                    format!(
                        "{me} round ended: {} slot {} epoch {} {:?}",
                        r.site, r.slot, r.epoch, r.outcome
                    )
                });
            }
            Observation::Voter(VoterAction::Committed { verdict, by_me }) => {
                let me = self.nodes[i].id.clone();
                self.log(|| {
                    format!(
                        "{me} COMMITTED {} slot {} {:?} epoch {} leader {} by_me={by_me}",
                        verdict.site,
                        verdict.slot,
                        verdict.outcome(),
                        verdict.epoch(),
                        verdict.value.leader
                    )
                });
                let key = (verdict.site.clone(), verdict.slot);
                if !self.checker.commits.contains_key(&key) {
                    match self.classic_slots.contains(&key) {
                        true => self.counters.classic_decided += 1,
                        false => self.counters.fast_decided += 1,
                    }
                }
                self.on_commit_for_orphan(i, &verdict);
                self.checker.on_commit(now, &me, &verdict, &self.faults)?;
            }
            Observation::Voter(_) => {}
        }
        Ok(())
    }

    /// `Action::StartStep`: the stand-in actuator runs the attempt; the checks of a run step.
    fn start_step(&mut self, i: usize, s: crate::core::node::StartStep) -> Check {
        let now = self.now;
        let me = self.nodes[i].id.clone();
        self.counters.steps_started += 1;
        self.log(|| {
            format!(
                "{me} starts {} attempt {} term {} ({:?})",
                s.idempotency_key, s.attempt, s.term, s.purpose
            )
        });
        let incarnation = self.nodes[i].incarnation;
        let (id, overlapping) = self
            .actuator
            .start(now, i, incarnation, s.clone(), &mut self.rng);
        let end = self.actuator.attempts[id].end;
        self.q.push(end, EventKind::StepEnd { attempt: id });
        if s.purpose == crate::core::node::StepPurpose::Isolation {
            self.failover.on_isolation_start(&me, &s);
        }
        if s.purpose != crate::core::node::StepPurpose::Run {
            return Ok(());
        }
        let overlapping_views: Vec<Overlap> = overlapping
            .iter()
            .map(|x| {
                let a = &self.actuator.attempts[*x];
                Overlap {
                    node: self.nodes[a.node].id.clone(),
                    attempt: a.step.attempt,
                    start: a.start,
                    same_leader: a.node == i
                        && a.incarnation == incarnation
                        && a.step.term == s.term,
                    same_node: a.node == i,
                    orphaned: a.orphaned,
                }
            })
            .collect();
        let core = self.nodes[i].core.as_ref().expect("a core started it");
        let known_newer = core
            .voter()
            .verdict(&s.site)
            .map(|v| v.epoch())
            .filter(|e| *e > s.run);
        let verdict_at = self
            .checker
            .commits
            .iter()
            .find(|((site, _), (v, _))| *site == s.site && v.epoch == s.run)
            .map(|(_, (_, at))| *at);
        let tolerated_before = self.failover.known;
        let r = self.failover.on_start(
            now,
            &me,
            &s,
            &overlapping_views,
            known_newer,
            verdict_at,
            &self.faults,
        );
        let k = self.failover.known;
        if (k.retry_overlaps, k.resume_overlaps)
            != (
                tolerated_before.retry_overlaps,
                tolerated_before.resume_overlaps,
            )
        {
            let mut ids = overlapping;
            ids.push(id);
            self.actuator.tolerate(&ids);
        }
        r
    }

    /// A stand-in attempt's process ends: its effect, and its result to its node.
    pub fn on_step_end(&mut self, id: usize) -> Check {
        let now = self.now;
        let Some((effect, done)) = self.actuator.end(id, now) else {
            return Ok(());
        };
        let a = &self.actuator.attempts[id];
        if effect.is_none() && a.step.purpose == crate::core::node::StepPurpose::Isolation {
            let who = self.nodes[a.node].id.clone();
            self.failover.on_isolation_failed(&who, &a.step);
        }
        if let Some(e) = effect {
            self.counters.effects += 1;
            let who = self.nodes[e.node].id.clone();
            self.log(|| {
                format!(
                    "effect of {} (attempt {}, {who})",
                    e.idempotency_key, e.attempt_no
                )
            });
            if self.actuator.effects_of(&e.idempotency_key) > 1 {
                return Err((
                    ViolationKind::DuplicateEffect,
                    format!(
                        "{} took effect twice (attempt {} by {who})",
                        e.idempotency_key, e.attempt_no
                    ),
                ));
            }
            self.failover.on_effect(now, &e, &self.faults)?;
            self.on_alarm_effect(&e)?;
        }
        let Some(done) = done else { return Ok(()) };
        let a = &self.actuator.attempts[id];
        let (i, incarnation) = (a.node, a.incarnation);
        let n = &mut self.nodes[i];
        if n.incarnation != incarnation {
            return Ok(());
        }
        if !n.up {
            if n.frozen {
                n.backlog.push(Pending::Step(done));
            }
            return Ok(());
        }
        self.feed(i, Input::StepDone(done))
    }
}
