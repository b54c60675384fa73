//! One simulated fleet: every node runs the real `Pinger` and `Voter`, fed exactly as the
//! tokio driver feeds them (Pinger `OpinionChanged` -> `Voter::on_opinion_changed`, `Persist`
//! before anything later leaves the node, `Commit` and status verdicts -> `Voter::learn`).
//! Crashes keep only the node's `MemoryStore`; freezes keep everything and deliver a backlog.

use super::faults::FaultModel;
use super::invariants::{Check, Checker, ViolationKind};
use super::net::{EventKind, Net, Queue};
use crate::config::Timing;
use crate::core::pinger::{Pinger, PingerAction, PingerConfig};
use crate::core::quorum::Electorate;
use crate::core::types::{NodeId, SiteId, Time};
use crate::core::voter::{RoundOutcome, Voter, VoterAction, VoterConfig};
use crate::store::{MemoryStore, Storage};
use crate::wire::{self, Datagram, Message, PeerStatus, VoteMsg};
use rand::rngs::StdRng;
use rand::RngCore;
use std::collections::{HashMap, VecDeque};

pub struct Core {
    pub pinger: Pinger,
    pub voter: Voter,
}

pub struct Node {
    pub id: NodeId,
    pub site: SiteId,
    pub indicator: bool,
    /// Sites this node's Pinger watches, with their Indicators; empty for indicator-only nodes.
    pub watches: Vec<(SiteId, Vec<NodeId>)>,
    pub judges: Vec<(SiteId, Electorate)>,
    pub core: Option<Core>,
    pub store: MemoryStore,
    /// Up, frozen (core kept, backlog grows) or crashed (core gone).
    pub up: bool,
    pub frozen: bool,
    pub backlog: Vec<(usize, bool, Vec<u8>)>,
    pub incarnation: u64,
    pub timer_at: Option<Time>,
    pub status_at: Time,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub undecided_rounds: u64,
    pub contradicted_rounds: u64,
    pub conflicts: u64,
    pub restarts: u64,
    pub decode_errors: u64,
}

pub struct World {
    pub now: Time,
    pub timing: Timing,
    pub nodes: Vec<Node>,
    pub q: Queue,
    pub net: Net,
    pub faults: FaultModel,
    pub rng: StdRng,
    pub checker: Checker,
    pub counters: Counters,
    pub trace: VecDeque<String>,
    pub trace_len: usize,
    /// Node id -> index in `nodes`: a probe's recipient is found in O(1), not by a scan, so
    /// fleets of thousands of Indicators simulate in time linear in their traffic.
    pub by_id: HashMap<NodeId, usize>,
}

impl World {
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

    fn index(&self, id: &NodeId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Builds a node's cores from its store, exactly as the driver does at start.
    pub fn boot(&mut self, i: usize) {
        let seed = self.rng.next_u64();
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        n.backlog.clear();
        if n.watches.is_empty() {
            n.core = None;
            return;
        }
        let durable = n.store.load_durable().expect("memory store reads");
        let known = n
            .store
            .latest_verdicts()
            .expect("memory store reads")
            .into_iter()
            .map(|s| s.verdict)
            .collect();
        let pinger = Pinger::new(
            PingerConfig::from_timing(&self.timing),
            n.watches.clone(),
            self.now,
            seed,
        );
        let voter = Voter::new(
            VoterConfig::from_timing(&self.timing),
            n.id.clone(),
            n.judges.clone(),
            durable,
            known,
            seed ^ 0x5eed,
        );
        n.core = Some(Core { pinger, voter });
        n.status_at = self.now + self.timing.status_interval;
        n.timer_at = None;
        self.arm(i);
    }

    /// Schedules the node's next timer if it is earlier than the one armed.
    fn arm(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        let Some(c) = &n.core else { return };
        if !n.up {
            return;
        }
        let mut next = c.pinger.poll_timeout().min(n.status_at);
        if let Some(v) = c.voter.poll_timeout() {
            next = next.min(v);
        }
        // Never schedule into the past: a timeout the core does not clear must not spin.
        let next = next.max(Time(now.0 + 1));
        if n.timer_at.is_some_and(|t| t > now && t <= next) {
            return;
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
    }

    pub fn on_timer(&mut self, i: usize, incarnation: u64) -> Check {
        let now = self.now;
        let n = &mut self.nodes[i];
        if !n.up || n.incarnation != incarnation || n.timer_at != Some(now) {
            return Ok(());
        }
        n.timer_at = None;
        let Some(c) = &mut n.core else { return Ok(()) };
        if c.pinger.poll_timeout() <= now {
            c.pinger.handle_timeout(now);
        }
        if c.voter.poll_timeout().is_some_and(|t| t <= now) {
            c.voter.handle_timeout(now, &c.pinger);
        }
        let status = if n.status_at <= now {
            n.status_at = now + self.timing.status_interval;
            Some(PeerStatus {
                node: n.id.clone(),
                fleet_hash: String::new(),
                opinions: c
                    .pinger
                    .watched_sites()
                    .map(|s| (s.clone(), c.pinger.report(s, now)))
                    .collect(),
                verdicts: c.voter.verdicts().cloned().collect(),
                maintenance: Vec::new(),
            })
        } else {
            None
        };
        if let Some(s) = status {
            let m = Message::Status(s);
            for to in 0..self.nodes.len() {
                if to != i {
                    self.net
                        .send_message(&mut self.q, &self.faults, &mut self.rng, now, i, to, &m);
                }
            }
        }
        self.drain(i)
    }

    pub fn on_deliver(&mut self, to: usize, from: usize, datagram: bool, bytes: Vec<u8>) -> Check {
        let n = &mut self.nodes[to];
        if !n.up {
            if n.frozen {
                // Frozen: the socket buffer keeps it until the process runs again.
                n.backlog.push((from, datagram, bytes));
            }
            return Ok(());
        }
        self.net.received(to, bytes.len());
        let now = self.now;
        if datagram {
            match wire::decode_datagram(&bytes) {
                Ok(Datagram::Probe { nonce, sent_us }) => {
                    if self.nodes[to].indicator {
                        let d = Datagram::Answer { nonce, sent_us };
                        self.net.send_datagram(
                            &mut self.q,
                            &self.faults,
                            &mut self.rng,
                            now,
                            to,
                            from,
                            &d,
                        );
                    }
                }
                Ok(Datagram::Answer { nonce, .. }) => {
                    let ind = self.nodes[from].id.clone();
                    if let Some(c) = &mut self.nodes[to].core {
                        c.pinger.handle_answer(now, &ind, nonce);
                    }
                }
                Err(_) => self.counters.decode_errors += 1,
            }
        } else {
            let from_id = self.nodes[from].id.clone();
            match wire::decode_message(&bytes) {
                Ok(Message::Vote(m)) => {
                    let line = describe(&m);
                    let to_id = self.nodes[to].id.clone();
                    self.log(|| format!("{from_id} -> {to_id} {line}"));
                    if let Some(c) = &mut self.nodes[to].core {
                        c.voter.handle_message(now, &from_id, m, &c.pinger);
                    }
                }
                Ok(Message::Status(s)) => {
                    if s.node == from_id {
                        if let Some(c) = &mut self.nodes[to].core {
                            for v in s.verdicts {
                                c.voter.learn(now, v, false);
                            }
                        }
                    }
                }
                // The simulator models verdicts, not failover runs.
                Ok(Message::Run(_) | Message::Lock(_)) => {}
                Err(_) => self.counters.decode_errors += 1,
            }
        }
        self.drain(to)
    }

    /// Carries out every action the node's cores emitted, in order, until both are quiet.
    fn drain(&mut self, i: usize) -> Check {
        let now = self.now;
        loop {
            let mut any = false;
            while let Some(a) = self.nodes[i]
                .core
                .as_mut()
                .and_then(|c| c.pinger.poll_action())
            {
                any = true;
                match a {
                    PingerAction::SendProbe { indicator, nonce } => {
                        let Some(to) = self.index(&indicator) else {
                            continue;
                        };
                        let d = Datagram::Probe {
                            nonce,
                            sent_us: now.0,
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
                    PingerAction::OpinionChanged { site, from, to } => {
                        let me = self.nodes[i].id.clone();
                        self.log(|| format!("{me} opinion of {site}: {from:?} -> {to:?}"));
                        let c = self.nodes[i].core.as_mut().expect("core present");
                        c.voter.on_opinion_changed(now, &site, &c.pinger);
                    }
                    _ => {}
                }
            }
            while let Some(a) = self.nodes[i]
                .core
                .as_mut()
                .and_then(|c| c.voter.poll_action())
            {
                any = true;
                self.on_voter_action(i, a)?;
            }
            if !any {
                break;
            }
        }
        self.arm(i);
        Ok(())
    }

    fn on_voter_action(&mut self, i: usize, a: VoterAction) -> Check {
        let now = self.now;
        let me = self.nodes[i].id.clone();
        match a {
            VoterAction::Persist { site, durable } => {
                self.checker.on_persist(&me, &site, &durable.promised)?;
                self.nodes[i]
                    .store
                    .save_durable(&site, &durable)
                    .map_err(|e| (ViolationKind::Store, format!("{me}: {e}")))?;
            }
            VoterAction::Send { to, msg } => {
                if let Some(t) = self.index(&to) {
                    let m = Message::Vote(msg);
                    self.net
                        .send_message(&mut self.q, &self.faults, &mut self.rng, now, i, t, &m);
                }
            }
            VoterAction::Broadcast { msg } => {
                let m = Message::Vote(msg);
                for t in 0..self.nodes.len() {
                    if t != i {
                        self.net.send_message(
                            &mut self.q,
                            &self.faults,
                            &mut self.rng,
                            now,
                            i,
                            t,
                            &m,
                        );
                    }
                }
            }
            VoterAction::RoundStarted {
                site,
                slot,
                target,
                epoch,
                attempt,
            } => {
                self.log(|| {
                    format!("{me} round started: {site} slot {slot} {target:?} epoch {epoch} attempt {attempt}")
                });
            }
            VoterAction::RoundEnded(r) => {
                match r.outcome {
                    RoundOutcome::Undecided => self.counters.undecided_rounds += 1,
                    RoundOutcome::Contradicted => self.counters.contradicted_rounds += 1,
                    RoundOutcome::Conflict => self.counters.conflicts += 1,
                    _ => {}
                }
                self.log(|| {
                    format!(
                        "{me} round ended: {} slot {} epoch {} {:?}",
                        r.site, r.slot, r.epoch, r.outcome
                    )
                });
            }
            VoterAction::Refused { .. } => {}
            VoterAction::Committed { verdict, by_me } => {
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
                self.nodes[i]
                    .store
                    .record_verdict(&verdict, (now.0 / 1000) as i64)
                    .map_err(|e| (ViolationKind::Agreement, format!("{me}: {e}")))?;
                self.checker.on_commit(now, &me, &verdict, &self.faults)?;
            }
        }
        Ok(())
    }

    /// Brings every node to the state the fault model gives it now.
    pub fn apply_faults(&mut self) -> Check {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let (id, site) = (self.nodes[i].id.clone(), self.nodes[i].site.clone());
            let blackout = self
                .faults
                .blackouts
                .iter()
                .any(|b| b.site == site && b.start <= now && b.end.is_none_or(|e| now < e));
            let outage = self
                .faults
                .outages
                .iter()
                .find(|o| o.node == id && o.start <= now && now < o.end);
            let crash = blackout || outage.is_some_and(|o| o.crash);
            let want_up = !blackout && outage.is_none();
            let n = &mut self.nodes[i];
            if n.up && !want_up {
                n.up = false;
                n.timer_at = None;
                n.frozen = !crash;
                if crash {
                    n.core = None;
                }
                n.backlog.clear();
                let how = if crash { "crashes" } else { "freezes" };
                self.log(|| format!("{id} {how}"));
            } else if !n.up && crash && n.frozen {
                // A frozen node that crashes loses its memory and its backlog.
                n.frozen = false;
                n.core = None;
                n.backlog.clear();
            } else if !n.up && want_up {
                n.up = true;
                if !n.frozen {
                    self.counters.restarts += 1;
                    self.log(|| format!("{id} restarts from its store"));
                    self.boot(i);
                } else {
                    self.nodes[i].frozen = false;
                    self.log(|| format!("{id} resumes with a backlog"));
                    let backlog = std::mem::take(&mut self.nodes[i].backlog);
                    self.nodes[i].timer_at = None;
                    // Overdue timers first, as a process resuming would find them expired.
                    let inc = self.nodes[i].incarnation;
                    self.nodes[i].timer_at = Some(now);
                    self.on_timer(i, inc)?;
                    for (from, datagram, bytes) in backlog {
                        self.on_deliver(i, from, datagram, bytes)?;
                    }
                    self.arm(i);
                }
            }
        }
        Ok(())
    }
}

fn describe(m: &VoteMsg) -> String {
    match m {
        VoteMsg::Prepare {
            site, slot, ballot, ..
        } => format!("Prepare {site} slot {slot} epoch {}", ballot.epoch),
        VoteMsg::Promise {
            site,
            slot,
            ballot,
            ok,
            opinion,
            ..
        } => format!(
            "Promise {site} slot {slot} epoch {} ok={ok} opinion={:?} age={}ms",
            ballot.epoch, opinion.opinion, opinion.evidence_age_ms
        ),
        VoteMsg::Accept {
            site, slot, ballot, ..
        } => format!("Accept {site} slot {slot} epoch {}", ballot.epoch),
        VoteMsg::AcceptReply {
            site,
            slot,
            ballot,
            ok,
            ..
        } => format!(
            "AcceptReply {site} slot {slot} epoch {} ok={ok}",
            ballot.epoch
        ),
        VoteMsg::Commit { verdict } => format!(
            "Commit {} slot {} {:?} epoch {}",
            verdict.site,
            verdict.slot,
            verdict.outcome(),
            verdict.epoch()
        ),
    }
}
