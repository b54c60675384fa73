//! The probe sessions of this node: two per live connection, one per direction of probing,
//! keyed by the discriminator the two ends derived from the connection's TLS session. It
//! seals this node's probes and checks every probe packet received (its MAC, its direction,
//! replays, answers owed), and counts what it saw; `probe_socket` moves the packets, and
//! what an answer means is the Pinger's to decide.

use super::inbox::{Answer, InboxShared};
use super::prefetch;
use super::probe::{self, Kind, ProbePacket, ReplayWindow, SessionKeys, PROBE_LEN};
use super::probe_socket::stride;
use super::shared::bump;
use crate::core::health::ServiceHealth;
use crate::core::types::{NodeId, Opinion};
use quinn::udp::RecvMeta;
use quinn::Connection;
use rustc_hash::FxHashMap;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

/// Probes of a Pinger session counted as owed an answer. An Indicator answers each probe
/// once, so an answer beyond those owed is dropped (`unsolicited`): a member whose keys are
/// valid but who floods answers adds nothing to the node's queue. The oldest of 256
/// unanswered probes was sent 256 intervals ago (25.6 s at the default 100 ms), past any
/// timeout a fleet sets in earnest; the cap keeps a silent Indicator's count from growing.
pub(super) const ANSWERS_OWED_MAX: u16 = 256;

/// Probe traffic counters of this node.
#[derive(Default, Debug)]
pub(super) struct ProbeCounters {
    pub probes_sent: AtomicU64,
    pub probes_answered_by_me: AtomicU64,
    pub answers_received: AtomicU64,
    /// Probe packets dropped: malformed, unknown session, wrong direction or failed MAC.
    pub unauthenticated: AtomicU64,
    /// Authenticated probe packets dropped as replays (or older than the window).
    pub replayed: AtomicU64,
    /// Authenticated answers dropped because no probe of their session was owed one
    /// (`ANSWERS_OWED_MAX`).
    pub unsolicited: AtomicU64,
    /// Authenticated probes not answered because this node is not an Indicator.
    pub ignored: AtomicU64,
    pub send_failures: AtomicU64,
    /// Probe packets (and bytes) sent and received, whatever became of them.
    pub udp: [AtomicU64; 4],
}

impl ProbeCounters {
    /// [tx datagrams, tx bytes, rx datagrams, rx bytes] of probe packets.
    pub fn udp_totals(&self) -> [u64; 4] {
        self.udp.each_ref().map(|c| c.load(Ordering::Relaxed))
    }
}

/// What this node is in one probe session: the Pinger probes, the Indicator answers. Every
/// connection carries two sessions, one with each node as the Pinger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Pinger,
    Indicator,
}

struct Session {
    peer: NodeId,
    role: Role,
    keys: SessionKeys,
    remote: SocketAddr,
    /// Sequence number of the next packet this node sends in its direction.
    next_seq: u64,
    /// Pinger: probes sent in this session whose answers have not come (at most
    /// `ANSWERS_OWED_MAX`).
    owed: u16,
    window: ReplayWindow,
    /// The session of the other direction on the same connection.
    sibling: u64,
    /// Pinger: notified when the Indicator says its end is open.
    ready: Arc<Notify>,
    /// Pinger: a Ready arrived already (only the first is echoed).
    heard_ready: bool,
}

/// The two sessions of a connection just opened.
pub(super) struct Opened {
    /// Both sessions, for `close` when the connection ends.
    pub discriminators: [u64; 2],
    /// Resolves once the peer's end of our Pinger session is open (its Ready packet arrived).
    pub ready: Arc<Notify>,
    /// The Ready packet of our Indicator session, to send to the peer (by the accepting end;
    /// the dialing end sends its own in answer to the peer's).
    pub greeting: (SocketAddr, [u8; PROBE_LEN]),
}

#[derive(Default)]
pub(super) struct Table {
    /// The sessions, in one allocation and without holes: a session is a few hundred bytes
    /// (two HMAC keys), two per connection at a thousand connections. The maps below give a
    /// session's index, from which its address follows without reading anything of it, so
    /// it can be asked for ahead (`prefetch`); a slab would read the slot's tag first, which
    /// is the very miss the prefetch is there to hide. Closing a session moves the last one
    /// into its place (`Table::remove`).
    sessions: Vec<Session>,
    /// Each session's index by its discriminator.
    ///
    /// Fx (for this map and the next, looked up once per probe packet): the discriminators
    /// are pseudo-random values derived from TLS secrets, and node ids come from the fleet
    /// file, so no sender can choose keys that collide; an unknown discriminator in a forged
    /// packet is one missed lookup.
    by_discriminator: FxHashMap<u64, usize>,
    /// Each peer's session in which this node is the Pinger: where probes to it go.
    pinging: FxHashMap<NodeId, usize>,
    /// The newest probe this node answered of each Pinger since the node last took them
    /// (`ProbeSessions::take_heard`): at most one entry per peer.
    heard: FxHashMap<NodeId, (Instant, Opinion)>,
    /// A round's sessions, by the probe's place in it (`ProbeSessions::seal_probes`), kept
    /// between rounds.
    round: Vec<Option<usize>>,
}

impl Table {
    fn session(&self, discriminator: u64) -> Option<&Session> {
        let i = *self.by_discriminator.get(&discriminator)?;
        self.sessions.get(i)
    }

    fn session_mut(&mut self, discriminator: u64) -> Option<&mut Session> {
        let i = *self.by_discriminator.get(&discriminator)?;
        self.sessions.get_mut(i)
    }

    /// Adds a session; returns its index.
    fn insert(&mut self, session: Session) -> usize {
        self.sessions.push(session);
        self.sessions.len() - 1
    }

    /// Removes the session of `discriminator`, if any: the last session takes its index, and
    /// the maps follow it.
    fn remove(&mut self, discriminator: u64) {
        let Some(i) = self.by_discriminator.remove(&discriminator) else {
            return;
        };
        let last = self.sessions.len() - 1;
        let s = self.sessions.swap_remove(i);
        if self.pinging.get(&s.peer) == Some(&i) {
            self.pinging.remove(&s.peer);
        }
        if let Some(moved) = self.sessions.get(i) {
            self.by_discriminator.insert(moved.keys.discriminator, i);
            if self.pinging.get(&moved.peer) == Some(&last) {
                self.pinging.insert(moved.peer.clone(), i);
            }
        }
    }

    /// Asks for the memory of the sessions of every probe packet among `n` received
    /// datagrams: a receive batch is a few dozen, all needed at once.
    pub(super) fn prefetch_received(&self, bufs: &[IoSliceMut<'_>], metas: &[RecvMeta], n: usize) {
        for (buf, meta) in bufs.iter().zip(metas).take(n) {
            for segment in buf[..meta.len].chunks(stride(meta).max(1)) {
                if let Some(d) = probe::peek_discriminator(segment) {
                    if let Some(s) = self.session(d) {
                        prefetch::prefetch(s);
                    }
                }
            }
        }
    }
}

/// One probe of a batch (`Mesh::send_probes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingProbe {
    pub to: NodeId,
    pub nonce: u64,
    /// The Pinger's clock when it sent the probe, echoed in the answer.
    pub sent_us: u64,
    /// The Pinger's opinion of the Indicator's site, which the probe tells the Indicator.
    pub opinion: Opinion,
}

/// Why a connection has no probe session.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("probe keys not exported from the TLS session: {0}")]
    Export(String),
    #[error("probe session discriminator already in use")]
    Collision,
}

/// The probe sessions of this node, shared by the socket and the mesh.
pub(super) struct ProbeSessions {
    table: Mutex<Table>,
    me: NodeId,
    answer_probes: bool,
    /// What this node's answers say of its service (`ServiceHealth` as its packet byte),
    /// set by the node's check runner.
    health: AtomicU8,
    pub(super) inbox: Arc<InboxShared>,
    pub counters: ProbeCounters,
}

impl std::fmt::Debug for ProbeSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSessions")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn ready_packet(discriminator: u64, s: &mut Session) -> [u8; PROBE_LEN] {
    let ready = ProbePacket {
        kind: Kind::Ready,
        discriminator,
        seq: s.next_seq,
        nonce: 0,
        sent_us: 0,
        health: ServiceHealth::Unchecked,
        opinion: Opinion::Unknown,
    };
    s.next_seq += 1;
    probe::seal(&ready, &s.keys.answer)
}

impl ProbeSessions {
    pub fn new(me: NodeId, answer_probes: bool, inbox: Arc<InboxShared>) -> Arc<ProbeSessions> {
        Arc::new(ProbeSessions {
            table: Mutex::new(Table::default()),
            me,
            answer_probes,
            health: AtomicU8::new(health_byte(ServiceHealth::Unchecked)),
            inbox,
            counters: ProbeCounters::default(),
        })
    }

    /// What this node's probe answers say of its service from now on.
    pub fn set_health(&self, health: ServiceHealth) {
        self.health.store(health_byte(health), Ordering::Relaxed);
    }

    pub fn health(&self) -> ServiceHealth {
        match self.health.load(Ordering::Relaxed) {
            1 => ServiceHealth::Passing,
            2 => ServiceHealth::Failing,
            3 => ServiceHealth::Pending,
            _ => ServiceHealth::Unchecked,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the two probe sessions of a connection with `peer` that just came up (one in
    /// which this node probes the peer, one in which the peer probes this node); their
    /// discriminators are for `close` when the connection ends.
    pub fn open(&self, conn: &Connection, peer: &NodeId) -> Result<Opened, SessionError> {
        let export = |pinger: &NodeId, indicator: &NodeId| {
            SessionKeys::derive(conn, pinger, indicator)
                .map_err(|e| SessionError::Export(format!("{e:?}")))
        };
        let pinging = export(&self.me, peer)?;
        let answering = export(peer, &self.me)?;
        let (p, a) = (pinging.discriminator, answering.discriminator);
        let remote = conn.remote_address();
        let mut t = self.lock();
        if p == a || t.by_discriminator.contains_key(&p) || t.by_discriminator.contains_key(&a) {
            return Err(SessionError::Collision);
        }
        let ready = Arc::new(Notify::new());
        let session = |role, keys, sibling| Session {
            peer: peer.clone(),
            role,
            keys,
            remote,
            next_seq: 1,
            owed: 0,
            window: ReplayWindow::default(),
            sibling,
            ready: ready.clone(),
            heard_ready: false,
        };
        let mut indicator = session(Role::Indicator, answering, p);
        let greeting = (remote, ready_packet(a, &mut indicator));
        let pinger = t.insert(session(Role::Pinger, pinging, a));
        let answerer = t.insert(indicator);
        t.by_discriminator.insert(p, pinger);
        t.by_discriminator.insert(a, answerer);
        t.pinging.insert(peer.clone(), pinger);
        Ok(Opened {
            discriminators: [p, a],
            ready,
            greeting,
        })
    }

    /// Ends the sessions of a connection: their keys are gone, their packets are refused from
    /// now on.
    pub fn close(&self, discriminators: [u64; 2]) {
        let mut t = self.lock();
        for discriminator in discriminators {
            t.remove(discriminator);
        }
    }

    /// The newest probe answered of each Pinger since the last call, with when it arrived and
    /// the opinion it carried; empties the list.
    pub fn take_heard(&self) -> Vec<(NodeId, Instant, Opinion)> {
        let mut t = self.lock();
        if t.heard.is_empty() {
            return Vec::new();
        }
        t.heard
            .drain()
            .map(|(peer, (at, o))| (peer, at, o))
            .collect()
    }

    /// A sealed probe to `to` and where to send it; None without a live session.
    pub fn seal_probe(
        &self,
        to: &NodeId,
        nonce: u64,
        sent_us: u64,
    ) -> Option<(SocketAddr, [u8; PROBE_LEN])> {
        let mut t = self.lock();
        let index = *t.pinging.get(to)?;
        Self::seal_at(&mut t, index, nonce, sent_us, Opinion::Unknown)
    }

    /// Seals a batch of probes under one lock: the sealed ones, each with its index in
    /// `probes`, go to `sealed`; the indexes of those to peers without a live session go to
    /// `no_session`.
    pub fn seal_probes(
        &self,
        probes: &[OutgoingProbe],
        sealed: &mut Vec<(usize, SocketAddr, [u8; PROBE_LEN])>,
        no_session: &mut Vec<usize>,
    ) {
        // The peers' ids first, all at once (they are hashed), then every probe's session
        // index: short lookups, independent of one another, so their misses overlap. Then
        // each session is asked for a few probes ahead of its sealing, which is long enough
        // to hide the wait.
        for p in probes {
            prefetch::prefetch_bytes(p.to.as_str().as_bytes());
        }
        let mut guard = self.lock();
        let t = &mut *guard;
        let mut round = std::mem::take(&mut t.round);
        round.clear();
        round.extend(probes.iter().map(|p| t.pinging.get(&p.to).copied()));
        let ask = |t: &Table, at: usize| {
            if let Some(s) = round
                .get(at)
                .copied()
                .flatten()
                .and_then(|i| t.sessions.get(i))
            {
                prefetch::prefetch(s);
            }
        };
        for at in 0..prefetch::AHEAD {
            ask(t, at);
        }
        for (i, (p, session)) in probes.iter().zip(&round).enumerate() {
            ask(t, i + prefetch::AHEAD);
            let sealed_probe =
                session.and_then(|s| Self::seal_at(t, s, p.nonce, p.sent_us, p.opinion));
            match sealed_probe {
                Some((destination, bytes)) => sealed.push((i, destination, bytes)),
                None => no_session.push(i),
            }
        }
        t.round = round;
    }

    /// Seals a probe in the session at `index` (a Pinger session).
    fn seal_at(
        t: &mut Table,
        index: usize,
        nonce: u64,
        sent_us: u64,
        opinion: Opinion,
    ) -> Option<(SocketAddr, [u8; PROBE_LEN])> {
        let s = t.sessions.get_mut(index)?;
        let discriminator = s.keys.discriminator;
        let packet = ProbePacket {
            kind: Kind::Probe,
            discriminator,
            seq: s.next_seq,
            nonce,
            sent_us,
            health: ServiceHealth::Unchecked,
            opinion,
        };
        s.next_seq += 1;
        s.owed = (s.owed + 1).min(ANSWERS_OWED_MAX);
        Some((s.remote, probe::seal(&packet, &s.keys.probe)))
    }

    /// Handles one probe packet with the table locked (once per receive batch); returns what
    /// to send back, if anything.
    pub(super) fn receive(&self, t: &mut Table, bytes: &[u8], at: Instant) -> Option<Reply> {
        let c = &self.counters;
        let Ok(unverified) = probe::parse(bytes) else {
            bump(&c.unauthenticated);
            return None;
        };
        let Some(s) = t.session_mut(unverified.discriminator()) else {
            bump(&c.unauthenticated);
            return None;
        };
        // A probe is only valid towards the Indicator, an answer (or ready) only towards the
        // Pinger; each direction has its own key.
        let key = match (unverified.kind(), s.role) {
            (Kind::Probe, Role::Indicator) => &s.keys.probe,
            (Kind::Answer | Kind::Ready, Role::Pinger) => &s.keys.answer,
            _ => {
                bump(&c.unauthenticated);
                return None;
            }
        };
        let Ok(packet) = unverified.verify(key) else {
            bump(&c.unauthenticated);
            return None;
        };
        if !s.window.accept(packet.seq) {
            bump(&c.replayed);
            return None;
        }
        match packet.kind {
            Kind::Probe if !self.answer_probes => {
                bump(&c.ignored);
                None
            }
            Kind::Probe => {
                let answer = ProbePacket {
                    kind: Kind::Answer,
                    seq: s.next_seq,
                    health: self.health(),
                    opinion: Opinion::Unknown,
                    ..packet
                };
                s.next_seq += 1;
                let sealed = probe::seal(&answer, &s.keys.answer);
                let pinger = s.peer.clone();
                t.heard.insert(pinger, (at, packet.opinion));
                Some(Reply::Answer(sealed))
            }
            Kind::Ready => {
                s.ready.notify_one();
                // The accepting end greets first (see `Shared::install`); the first Ready
                // heard is answered with ours, so both ends learn the other is open.
                if std::mem::replace(&mut s.heard_ready, true) {
                    return None;
                }
                let sibling = s.sibling;
                let ours = t.session_mut(sibling)?;
                Some(Reply::Ready(ready_packet(sibling, ours)))
            }
            Kind::Answer => {
                if s.owed == 0 {
                    bump(&c.unsolicited);
                    return None;
                }
                s.owed -= 1;
                bump(&c.answers_received);
                let answer = Answer {
                    nonce: packet.nonce,
                    sent_us: packet.sent_us,
                    health: packet.health,
                    at,
                };
                Some(Reply::Deliver(s.peer.clone(), answer))
            }
        }
    }
}

/// What a received probe packet makes this node do: send something back to its source, or
/// hand an answer to the node.
pub(super) enum Reply {
    Answer([u8; PROBE_LEN]),
    Ready([u8; PROBE_LEN]),
    Deliver(NodeId, Answer),
}

fn health_byte(h: ServiceHealth) -> u8 {
    match h {
        ServiceHealth::Unchecked => 0,
        ServiceHealth::Passing => 1,
        ServiceHealth::Failing => 2,
        ServiceHealth::Pending => 3,
    }
}

#[cfg(test)]
#[path = "probe_sessions_tests.rs"]
mod tests;
