//! The node's side of the mesh: one bounded queue per peer for its messages, drained
//! round-robin, so that a peer that floods (a lying or broken member: mutual TLS says who it
//! is, not that it behaves) fills only its own queue and cannot starve another peer's votes.
//! A full queue drops that peer's excess, counted per peer; the transport never waits for the
//! node. Connection events (`PeerConnected`/`PeerLost`) have a queue of their own, served
//! first. Probe answers share one queue, in the order they came, taking turns with the
//! peers' messages: the probe sessions already bound each peer's answers to the probes it
//! was sent (`probe_sessions::ANSWERS_OWED_MAX`), so one peer's cannot crowd out another's,
//! and a Pinger's thousand answers a round cost no lookup of a peer's queue each.

use super::mesh::MeshEvent;
use crate::core::types::NodeId;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Events one peer may have waiting: far above what a behaving peer has queued at once (a
/// status per interval, a few vote and run messages per round).
pub const PEER_QUEUE_EVENTS: usize = 256;
/// Bytes of messages one peer may have waiting: a few dozen full replica Append batches.
pub const PEER_QUEUE_BYTES: usize = 4 << 20;
/// Probe answers waiting, all peers together: the sessions let through at most 256 per
/// peer; this only caps what a node that stopped reading could hold (3 MiB).
const ANSWER_QUEUE_EVENTS: usize = 1 << 16;
/// Connection events waiting; they come at most twice per dial of each peer.
const CONTROL_QUEUE_EVENTS: usize = 4096;

/// One queued message, boxed: a queue keeps its room once it had events, and a
/// `MeshEvent` is a few hundred bytes.
type Queued = (Box<MeshEvent>, usize);

#[derive(Default)]
struct PeerQueue {
    events: VecDeque<Queued>,
    bytes: usize,
}

/// An authenticated probe answer as the receive path hands it over: the event without its
/// sender, small enough to queue inline.
#[derive(Clone, Copy, Debug)]
pub(super) struct Answer {
    pub nonce: u64,
    pub sent_us: u64,
    pub health: crate::core::health::ServiceHealth,
    pub at: std::time::Instant,
}

impl Answer {
    fn into_event(self, from: NodeId) -> MeshEvent {
        MeshEvent::ProbeAnswer {
            from,
            nonce: self.nonce,
            sent_us: self.sent_us,
            health: self.health,
            at: self.at,
        }
    }
}

#[derive(Default)]
struct State {
    control: VecDeque<MeshEvent>,
    /// Fx: keys are the fleet's node ids.
    queues: FxHashMap<NodeId, PeerQueue>,
    /// Peers with a message queued, in the order they are served next.
    ready: VecDeque<NodeId>,
    /// Probe answers of every peer, in the order they came.
    answers: VecDeque<(NodeId, Answer)>,
    /// The next event is an answer, if one waits (answers and messages take turns).
    answer_turn: bool,
    /// Events dropped because the peer's queue was full; every peer of the list has an entry.
    drops: BTreeMap<NodeId, u64>,
    closed: bool,
}

impl State {
    fn next_answer(&mut self) -> Option<MeshEvent> {
        let (peer, answer) = self.answers.pop_front()?;
        Some(answer.into_event(peer))
    }
}

/// What the mesh's tasks push into.
pub(super) struct InboxShared {
    state: Mutex<State>,
    notify: Notify,
    receiver_alive: AtomicBool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl InboxShared {
    pub fn new() -> Arc<InboxShared> {
        Arc::new(InboxShared {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            receiver_alive: AtomicBool::new(true),
        })
    }

    /// Queues an event of `peer` weighing `bytes`; false when the peer's queue is full and
    /// the event was dropped (counted). Never waits.
    pub fn push(&self, peer: &NodeId, event: MeshEvent, bytes: usize) -> bool {
        if !self.receiver_alive.load(Ordering::Relaxed) {
            return true;
        }
        let mut s = lock(&self.state);
        if s.closed {
            return true;
        }
        let q = s.queues.entry(peer.clone()).or_default();
        if q.events.len() >= PEER_QUEUE_EVENTS || q.bytes + bytes > PEER_QUEUE_BYTES {
            *s.drops.entry(peer.clone()).or_default() += 1;
            return false;
        }
        let was_empty = q.events.is_empty();
        q.events.push_back((Box::new(event), bytes));
        q.bytes += bytes;
        if was_empty {
            s.ready.push_back(peer.clone());
        }
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Queues probe answers (from each peer) under one lock and with one wake-up: a receive
    /// batch's. Returns how many were dropped (counted per peer) because the answer queue
    /// was full; `answers` is left empty.
    pub fn push_answers(&self, answers: &mut Vec<(NodeId, Answer)>) -> usize {
        if !self.receiver_alive.load(Ordering::Relaxed) {
            answers.clear();
            return 0;
        }
        let mut s = lock(&self.state);
        if s.closed {
            answers.clear();
            return 0;
        }
        let mut dropped = 0;
        for (peer, answer) in answers.drain(..) {
            if s.answers.len() >= ANSWER_QUEUE_EVENTS {
                *s.drops.entry(peer).or_default() += 1;
                dropped += 1;
                continue;
            }
            s.answers.push_back((peer, answer));
        }
        drop(s);
        self.notify.notify_one();
        dropped
    }

    /// Queues a connection event; false when even that queue is full (the node is stuck).
    pub fn push_control(&self, event: MeshEvent) -> bool {
        let mut s = lock(&self.state);
        if s.closed || s.control.len() >= CONTROL_QUEUE_EVENTS {
            return s.closed;
        }
        s.control.push_back(event);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// The peers whose drops are reported (zero included); others' queues are forgotten.
    ///
    /// Every peer's queue is keyed by the id given here, the one the mesh's links hold: a
    /// lookup with the same id then compares no bytes (`NodeId`'s equality), where an id
    /// parsed elsewhere would cost a read of both strings per message.
    pub fn set_peers<'a>(&self, peers: impl Iterator<Item = &'a NodeId>) {
        let mut s = lock(&self.state);
        let keep: BTreeMap<NodeId, u64> = peers
            .map(|p| (p.clone(), s.drops.get(p).copied().unwrap_or(0)))
            .collect();
        let mut old = std::mem::take(&mut s.queues);
        s.queues = keep
            .keys()
            .map(|p| (p.clone(), old.remove(p).unwrap_or_default()))
            .collect();
        s.ready.retain(|p| keep.contains_key(p));
        s.drops = keep;
    }

    pub fn drops(&self) -> BTreeMap<NodeId, u64> {
        lock(&self.state).drops.clone()
    }

    /// No event after this; the receiver gets what is queued, then the end.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.notify.notify_one();
    }

    fn pop(&self) -> Result<MeshEvent, bool> {
        let mut s = lock(&self.state);
        if let Some(e) = s.control.pop_front() {
            return Ok(e);
        }
        if s.answer_turn || s.ready.is_empty() {
            if let Some(e) = s.next_answer() {
                s.answer_turn = false;
                return Ok(e);
            }
        }
        s.answer_turn = true;
        while let Some(peer) = s.ready.pop_front() {
            let Some(q) = s.queues.get_mut(&peer) else {
                continue;
            };
            let Some((event, bytes)) = q.events.pop_front() else {
                continue;
            };
            q.bytes -= bytes;
            if !q.events.is_empty() {
                s.ready.push_back(peer);
            }
            return Ok(*event);
        }
        s.next_answer().ok_or(s.closed)
    }
}

/// The receiving end: events of every peer, one peer's turn after another.
pub struct MeshInbox {
    shared: Arc<InboxShared>,
}

impl MeshInbox {
    pub(super) fn new(shared: Arc<InboxShared>) -> MeshInbox {
        MeshInbox { shared }
    }

    /// The next event, waiting for one; None once the mesh has shut down and all is read.
    pub async fn recv(&mut self) -> Option<MeshEvent> {
        loop {
            match self.shared.pop() {
                Ok(e) => return Some(e),
                Err(true) => return None,
                // One consumer: a notification sent while nobody waited is kept for us.
                Err(false) => self.shared.notify.notified().await,
            }
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<MeshEvent> {
        self.shared.pop().ok()
    }
}

impl Drop for MeshInbox {
    fn drop(&mut self) {
        self.shared.receiver_alive.store(false, Ordering::Relaxed);
        let mut s = lock(&self.shared.state);
        s.queues.clear();
        s.ready.clear();
        s.answers.clear();
        s.control.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Message, PeerStatus};

    fn msg(from: &str, tag: usize) -> MeshEvent {
        MeshEvent::Message {
            from: NodeId::from(from),
            msg: Message::Status(PeerStatus {
                node: NodeId::from(from),
                fleet_hash: tag.to_string(),
                opinions: vec![],
                verdicts: vec![],
                maintenance: vec![],
            }),
        }
    }

    fn sender(e: &MeshEvent) -> String {
        match e {
            MeshEvent::Message { from, .. } => from.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_flooding_peer_is_served_in_turn_with_the_others_and_drops_its_excess() {
        let shared = InboxShared::new();
        let mut inbox = MeshInbox::new(shared.clone());
        let (noisy, quiet) = (NodeId::from("noisy"), NodeId::from("quiet"));
        shared.set_peers([&noisy, &quiet].into_iter());
        for i in 0..PEER_QUEUE_EVENTS + 10 {
            shared.push(&noisy, msg("noisy", i), 10);
        }
        assert!(shared.push(&quiet, msg("quiet", 0), 10));
        assert!(shared.push(&quiet, msg("quiet", 1), 10));
        assert_eq!(shared.drops()[&noisy], 10);
        assert_eq!(shared.drops()[&quiet], 0);
        let first: Vec<String> = (0..4).map(|_| sender(&inbox.try_recv().unwrap())).collect();
        assert_eq!(first, ["noisy", "quiet", "noisy", "quiet"]);
        let mut rest = 0;
        while inbox.try_recv().is_some() {
            rest += 1;
        }
        assert_eq!(rest, PEER_QUEUE_EVENTS - 2);
    }

    fn answer(nonce: u64) -> Answer {
        Answer {
            nonce,
            sent_us: nonce * 10,
            health: crate::core::health::ServiceHealth::Passing,
            at: std::time::Instant::now(),
        }
    }

    fn answer_of(e: MeshEvent) -> (String, Option<u64>) {
        match e {
            MeshEvent::ProbeAnswer {
                from,
                nonce,
                sent_us,
                health,
                ..
            } => {
                assert_eq!(sent_us, nonce * 10);
                assert_eq!(health, crate::core::health::ServiceHealth::Passing);
                (from.to_string(), Some(nonce))
            }
            other => (sender(&other), None),
        }
    }

    #[test]
    fn probe_answers_come_out_in_order_taking_turns_with_messages_and_a_full_queue_drops_them() {
        let shared = InboxShared::new();
        let mut inbox = MeshInbox::new(shared.clone());
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        shared.set_peers([&a, &b].into_iter());
        let mut batch: Vec<(NodeId, Answer)> = (0..ANSWER_QUEUE_EVENTS as u64 - 1)
            .map(|k| (a.clone(), answer(k)))
            .collect();
        batch.push((b.clone(), answer(1_000_000)));
        batch.extend((0..3).map(|k| (a.clone(), answer(2_000_000 + k))));
        assert_eq!(shared.push_answers(&mut batch), 3);
        assert!(batch.is_empty());
        assert_eq!(shared.drops()[&a], 3);
        assert_eq!(shared.drops()[&b], 0);
        shared.push(&b, msg("b", 7), 10);
        shared.push(&b, msg("b", 8), 10);
        let got: Vec<(String, Option<u64>)> = (0..5)
            .map(|_| answer_of(inbox.try_recv().unwrap()))
            .collect();
        let expected = [
            ("b", None),
            ("a", Some(0)),
            ("b", None),
            ("a", Some(1)),
            ("a", Some(2)),
        ];
        let expected: Vec<(String, Option<u64>)> =
            expected.iter().map(|(p, n)| (p.to_string(), *n)).collect();
        assert_eq!(got, expected);
        let mut rest = Vec::new();
        while let Some(e) = inbox.try_recv() {
            rest.push(answer_of(e));
        }
        assert_eq!(rest.len(), ANSWER_QUEUE_EVENTS - 3);
        assert_eq!(rest.last(), Some(&("b".to_string(), Some(1_000_000))));
    }

    #[test]
    fn a_peer_queue_is_bounded_in_bytes_too() {
        let shared = InboxShared::new();
        let _inbox = MeshInbox::new(shared.clone());
        let p = NodeId::from("p");
        assert!(shared.push(&p, msg("p", 0), PEER_QUEUE_BYTES - 1));
        assert!(!shared.push(&p, msg("p", 1), 2));
        assert!(shared.push(&p, msg("p", 2), 1));
    }

    #[test]
    fn connection_events_come_first_and_the_end_after_everything_queued() {
        let shared = InboxShared::new();
        let mut inbox = MeshInbox::new(shared.clone());
        let p = NodeId::from("p");
        shared.push(&p, msg("p", 0), 1);
        shared.push_control(MeshEvent::PeerLost(p.clone()));
        shared.close();
        assert!(matches!(inbox.try_recv(), Some(MeshEvent::PeerLost(_))));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(matches!(
                inbox.recv().await,
                Some(MeshEvent::Message { .. })
            ));
            assert!(inbox.recv().await.is_none());
        });
    }

    #[test]
    fn a_waiting_receiver_wakes_for_a_new_event() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let shared = InboxShared::new();
            let mut inbox = MeshInbox::new(shared.clone());
            let pusher = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                pusher.push(&NodeId::from("p"), msg("p", 0), 1);
            });
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), inbox.recv())
                .await
                .expect("woken");
            assert!(got.is_some());
        });
    }
}
