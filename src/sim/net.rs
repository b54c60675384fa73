//! The simulated network: one event queue ordered by (virtual time, sequence number), and the
//! links between nodes. Every probe, answer and vote message is encoded with the real codec
//! when sent and decoded when delivered, so the bytes counted are the bytes a node would send.
//! It never decides anything about the protocol: it only loses, delays, duplicates and cuts.

use super::faults::FaultModel;
use crate::core::types::{NodeId, SiteId, Time};
use crate::wire::{self, Datagram, Message, VoteMsg};
use rand::rngs::StdRng;
use rand::Rng;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

/// What happens at a point of virtual time.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// A node's timers may be due; stale unless it matches the node's armed timer.
    Timer { node: usize, incarnation: u64 },
    /// Bytes arrive at `to`.
    Deliver {
        to: usize,
        from: usize,
        datagram: bool,
        bytes: Vec<u8>,
    },
    /// Recompute which nodes are up (a blackout, crash or freeze starts or ends).
    Faults,
    /// Check that a blackout of a site was decided in time.
    Liveness { blackout: usize },
    /// A stand-in actuator attempt's process may end.
    StepEnd { attempt: usize },
    /// A node's wall clock steps (monotonic time goes on).
    WallStep { node: usize, by_us: i64 },
    /// Crash whichever node leads a run of the judged site now (fault `k`).
    LeaderCrash { k: usize },
    /// An operator call (`k` in the fault model).
    Operator { k: usize },
    /// The lying member sends a forgery.
    Liar,
    /// An alarm call (`k` in the fault model's alarm calls).
    AlarmCall { k: usize },
    /// Faults stopped a bound ago: every run that began must have completed.
    RunsSettled,
}

pub struct Event {
    pub at: Time,
    pub seq: u64,
    pub kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    // Reversed: BinaryHeap is a max-heap and we want the earliest event first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
pub struct Queue {
    heap: BinaryHeap<Event>,
    seq: u64,
}

impl Queue {
    pub fn push(&mut self, at: Time, kind: EventKind) {
        self.seq += 1;
        self.heap.push(Event {
            at,
            seq: self.seq,
            kind,
        });
    }
    pub fn pop(&mut self) -> Option<Event> {
        self.heap.pop()
    }
}

/// Messages and bytes one node sent and received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent_msgs: u64,
    pub sent_bytes: u64,
    pub recv_msgs: u64,
    pub recv_bytes: u64,
    pub dropped: u64,
}

pub struct Net {
    pub traffic: Vec<Traffic>,
    pub sites: Vec<SiteId>,
}

impl Net {
    pub fn new(sites: Vec<SiteId>) -> Net {
        Net {
            traffic: vec![Traffic::default(); sites.len()],
            sites,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn send_datagram(
        &mut self,
        q: &mut Queue,
        f: &FaultModel,
        rng: &mut StdRng,
        now: Time,
        from: usize,
        to: usize,
        d: &Datagram,
    ) {
        let bytes = wire::encode_datagram(d);
        self.carry(q, f, rng, now, from, to, true, bytes);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn send_message(
        &mut self,
        q: &mut Queue,
        f: &FaultModel,
        rng: &mut StdRng,
        now: Time,
        from: usize,
        to: usize,
        m: &Message,
    ) {
        // A message a real peer would drop for its size never leaves, as on the mesh.
        let Ok(bytes) = wire::encode_message(m) else {
            self.traffic[from].dropped += 1;
            return;
        };
        self.carry(q, f, rng, now, from, to, false, bytes);
    }

    /// A message of node `from` too large for any peer: counted, never sent.
    pub fn unsendable(&mut self, from: usize) {
        self.traffic[from].dropped += 1;
    }

    /// Sends bytes already encoded (a broadcast encodes its message once).
    #[allow(clippy::too_many_arguments)]
    pub fn send_encoded(
        &mut self,
        q: &mut Queue,
        f: &FaultModel,
        rng: &mut StdRng,
        now: Time,
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    ) {
        self.carry(q, f, rng, now, from, to, false, bytes);
    }

    #[allow(clippy::too_many_arguments)]
    fn carry(
        &mut self,
        q: &mut Queue,
        f: &FaultModel,
        rng: &mut StdRng,
        now: Time,
        from: usize,
        to: usize,
        datagram: bool,
        bytes: Vec<u8>,
    ) {
        let t = &mut self.traffic[from];
        t.sent_msgs += 1;
        t.sent_bytes += bytes.len() as u64;
        if f.cut(&self.sites[from], &self.sites[to], now) {
            t.dropped += 1;
            return;
        }
        let mut delay = f.draw_delay(rng);
        if f.loss > 0.0 {
            if datagram {
                if rng.random_bool(f.loss) {
                    t.dropped += 1;
                    return;
                }
            } else {
                // A stream is reliable: a lost packet costs a retransmission after the probe
                // timeout of the connection (about two round trips), not the message.
                let pto = (f.delay_min + f.delay_mean) * 4 + Duration::from_millis(1);
                let mut tries = 0;
                while tries < 8 && rng.random_bool(f.loss) {
                    delay += pto;
                    tries += 1;
                }
            }
        }
        if f.duplicate > 0.0 && rng.random_bool(f.duplicate) {
            let again = now + f.draw_delay(rng);
            q.push(
                again,
                EventKind::Deliver {
                    to,
                    from,
                    datagram,
                    bytes: bytes.clone(),
                },
            );
        }
        q.push(
            now + delay,
            EventKind::Deliver {
                to,
                from,
                datagram,
                bytes,
            },
        );
    }

    pub fn received(&mut self, to: usize, len: usize) {
        let t = &mut self.traffic[to];
        t.recv_msgs += 1;
        t.recv_bytes += len as u64;
    }

    /// Traffic by node id, for the report.
    pub fn by_node(&self, ids: &[NodeId]) -> BTreeMap<NodeId, Traffic> {
        ids.iter()
            .cloned()
            .zip(self.traffic.iter().copied())
            .collect()
    }
}

/// One vote message in a trace line.
pub fn describe(m: &VoteMsg) -> String {
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
        VoteMsg::FastAccept {
            site,
            slot,
            value,
            opinion,
            evidence_age_ms,
        } => format!(
            "FastAccept {site} slot {slot} epoch {} leader {} opinion={opinion:?} age={evidence_age_ms}ms",
            value.epoch, value.leader
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
