//! The mesh's UDP socket as quinn sees it, with probe packets taken out: every received
//! datagram whose first byte has the QUIC fixed bit (0x40) clear is a probe packet, handled
//! right here in the receive path (a probe answered through the same socket, an answer handed
//! to the inbox), and never reaches quinn. Everything else passes through untouched. So
//! probes cost one MAC and at most one system call per packet instead of a QUIC packet each
//! way (a Pinger's round is sent in batches, `probe_batch`), and operators open no second
//! port.
//!
//! It owns the probe sessions (two per live connection, one per direction of probing, keyed
//! by the discriminator the two ends derived from the connection's TLS session) and their
//! counters; it decides nothing about what an answer means.

use super::inbox::{Answer, InboxShared};
use super::prefetch;
use super::probe::{self, Kind, ProbePacket, ReplayWindow, SessionKeys, PROBE_LEN};
use super::probe_batch::{BatchSender, Datagram};
use crate::core::health::ServiceHealth;
use crate::core::types::{NodeId, Opinion};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Connection, UdpPoller};
use rustc_hash::FxHashMap;
use slab::Slab;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::Notify;

/// Receive batches made only of probe packets handled in one `poll_recv` before quinn gets
/// its turn back (it then simply calls again): bounds the time spent here per call.
const PROBE_ONLY_BATCHES: usize = 32;

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

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
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
struct Table {
    /// The sessions, in one allocation: a session is a few hundred bytes (two HMAC keys),
    /// two per connection at a thousand connections. The maps below give a session's index,
    /// from which its address follows without a pointer to load first (`prefetch`).
    sessions: Slab<Session>,
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
}

impl Table {
    fn session(&self, discriminator: u64) -> Option<&Session> {
        let i = *self.by_discriminator.get(&discriminator)?;
        self.sessions.get(i)
    }

    /// Asks for the memory of the session in which this node probes `to` (`prefetch`).
    fn prefetch_pinging(&self, to: &NodeId) {
        if let Some(s) = self.pinging.get(to).and_then(|&i| self.sessions.get(i)) {
            prefetch::prefetch(s);
        }
    }

    /// Asks for the memory of the sessions of every probe packet among `n` received
    /// datagrams: a receive batch is a few dozen, all needed at once.
    fn prefetch_received(&self, bufs: &[IoSliceMut<'_>], metas: &[RecvMeta], n: usize) {
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
    inbox: Arc<InboxShared>,
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

    fn lock(&self) -> MutexGuard<'_, Table> {
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
        let pinger = t.sessions.insert(session(Role::Pinger, pinging, a));
        let answerer = t.sessions.insert(indicator);
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
            if let Some(i) = t.by_discriminator.remove(&discriminator) {
                let s = t.sessions.remove(i);
                if t.pinging.get(&s.peer) == Some(&i) {
                    t.pinging.remove(&s.peer);
                }
            }
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
        Self::seal_in(&mut self.lock(), to, nonce, sent_us, Opinion::Unknown)
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
        // The peers' ids first, all at once (they are hashed to find the sessions), then
        // each session a few probes ahead of its use.
        for p in probes {
            prefetch::prefetch_bytes(p.to.as_str().as_bytes());
        }
        let mut t = self.lock();
        for p in probes.iter().take(prefetch::AHEAD) {
            t.prefetch_pinging(&p.to);
        }
        for (i, p) in probes.iter().enumerate() {
            if let Some(ahead) = probes.get(i + prefetch::AHEAD) {
                t.prefetch_pinging(&ahead.to);
            }
            match Self::seal_in(&mut t, &p.to, p.nonce, p.sent_us, p.opinion) {
                Some((destination, bytes)) => sealed.push((i, destination, bytes)),
                None => no_session.push(i),
            }
        }
    }

    fn seal_in(
        t: &mut Table,
        to: &NodeId,
        nonce: u64,
        sent_us: u64,
        opinion: Opinion,
    ) -> Option<(SocketAddr, [u8; PROBE_LEN])> {
        let s = t.sessions.get_mut(*t.pinging.get(to)?)?;
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
    fn receive(&self, t: &mut Table, bytes: &[u8], at: Instant) -> Option<Reply> {
        let c = &self.counters;
        let Ok(unverified) = probe::parse(bytes) else {
            bump(&c.unauthenticated);
            return None;
        };
        let index = t.by_discriminator.get(&unverified.discriminator()).copied();
        let Some(s) = index.and_then(|i| t.sessions.get_mut(i)) else {
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
                let ours = t.sessions.get_mut(*t.by_discriminator.get(&sibling)?)?;
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
enum Reply {
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

/// The size of each datagram a `RecvMeta` holds: several of `stride` bytes (GRO, the last
/// one shorter), or one of `len`.
fn stride(meta: &RecvMeta) -> usize {
    if meta.stride == 0 {
        meta.len
    } else {
        meta.stride
    }
}

/// A packet the receive path sends back once the sessions are unlocked.
#[derive(Debug)]
struct SendBack {
    to: SocketAddr,
    src_ip: Option<IpAddr>,
    packet: [u8; PROBE_LEN],
    /// A Ready packet (sent from the socket's default address), else a probe answer (from
    /// the address the probe came to).
    ready: bool,
}

/// What one receive batch leaves for after the sessions' lock, kept between batches so that
/// a batch allocates nothing. Only quinn's endpoint driver receives, so its lock is never
/// contended.
#[derive(Default, Debug)]
struct ReceiveScratch {
    replies: Vec<SendBack>,
    answers: Vec<(NodeId, Answer)>,
}

/// What a Pinger's round of probes is sealed into, kept between rounds: each probe with its
/// index in the round.
type SealScratch = Vec<(usize, SocketAddr, [u8; PROBE_LEN])>;

impl Datagram for (usize, SocketAddr, [u8; PROBE_LEN]) {
    fn destination(&self) -> SocketAddr {
        self.1
    }

    fn payload(&self) -> &[u8] {
        &self.2
    }
}

/// quinn's socket with the probe packets taken out of what it receives.
#[derive(Debug)]
pub(super) struct ProbeSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    /// The same socket, for a Pinger's rounds of probes in batches.
    batch: BatchSender,
    sessions: Arc<ProbeSessions>,
    scratch: Mutex<ReceiveScratch>,
    sealed: Mutex<SealScratch>,
}

impl ProbeSocket {
    /// `socket` is the mesh socket: quinn gets it (through `runtime`), with the probe
    /// packets taken out of what it receives.
    pub fn new(
        socket: std::net::UdpSocket,
        runtime: &dyn quinn::Runtime,
        sessions: Arc<ProbeSessions>,
    ) -> io::Result<ProbeSocket> {
        let batch = BatchSender::new(&socket)?;
        let inner = runtime.wrap_udp_socket(socket)?;
        Ok(ProbeSocket {
            inner,
            batch,
            sessions,
            scratch: Mutex::default(),
            sealed: Mutex::default(),
        })
    }

    /// Sends a batch of probes, in as few system calls as the platform allows
    /// (`probe_batch`); returns the indexes of those not sent (counted), for lack of a
    /// session or because the socket refused them, in order.
    pub fn send_probes(&self, probes: &[OutgoingProbe]) -> Vec<usize> {
        let c = &self.sessions.counters;
        let mut not_sent = Vec::new();
        let mut sealed = self.sealed.lock().unwrap_or_else(|e| e.into_inner());
        sealed.clear();
        self.sessions
            .seal_probes(probes, &mut sealed, &mut not_sent);
        let sent = self.batch.send(sealed.as_slice(), |i, e| {
            let index = sealed[i].0;
            tracing::debug!(peer = %probes[index].to, error = %e, "probe not sent");
            not_sent.push(index);
        });
        sealed.clear();
        drop(sealed);
        let udp = &c.udp;
        udp[0].fetch_add(sent as u64, Ordering::Relaxed);
        udp[1].fetch_add((sent * PROBE_LEN) as u64, Ordering::Relaxed);
        c.probes_sent.fetch_add(sent as u64, Ordering::Relaxed);
        c.send_failures
            .fetch_add(not_sent.len() as u64, Ordering::Relaxed);
        not_sent.sort_unstable();
        not_sent
    }

    /// Sends a probe to `to` now; false (counted) when there is no session or the socket
    /// refused it.
    pub fn send_probe(&self, to: &NodeId, nonce: u64, sent_us: u64) -> bool {
        let c = &self.sessions.counters;
        let Some((destination, bytes)) = self.sessions.seal_probe(to, nonce, sent_us) else {
            bump(&c.send_failures);
            return false;
        };
        match self.send(destination, None, &bytes) {
            Ok(()) => {
                bump(&c.probes_sent);
                true
            }
            Err(e) => {
                bump(&c.send_failures);
                tracing::debug!(peer = %to, error = %e, "probe not sent");
                false
            }
        }
    }

    /// Sends the Ready packet of a session just opened (best effort: the peer waits a bounded
    /// time).
    pub fn greet(&self, to: SocketAddr, ready: &[u8]) {
        if let Err(e) = self.send(to, None, ready) {
            bump(&self.sessions.counters.send_failures);
            tracing::debug!(%to, error = %e, "probe session ready not sent");
        }
    }

    fn send(
        &self,
        destination: SocketAddr,
        src_ip: Option<IpAddr>,
        bytes: &[u8],
    ) -> io::Result<()> {
        self.inner.try_send(&Transmit {
            destination,
            ecn: None,
            contents: bytes,
            segment_size: None,
            src_ip,
        })?;
        let udp = &self.sessions.counters.udp;
        bump(&udp[0]);
        udp[1].fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Handles the probe packets among the `n` received datagrams and compacts the rest to
    /// the front of `bufs`/`metas`; returns how many remain for quinn. A `RecvMeta` may hold
    /// several `stride`-sized datagrams (GRO): probe segments are cut out of it.
    ///
    /// The batch's probe packets are checked under one lock of the sessions; what they make
    /// this node send, and the answers for the node (one lock of the inbox, one wake-up), wait
    /// until it is released.
    fn take_probes(&self, bufs: &mut [IoSliceMut<'_>], metas: &mut [RecvMeta], n: usize) -> usize {
        let at = Instant::now();
        let mut kept = 0;
        let (mut datagrams, mut bytes) = (0, 0);
        let mut table = None;
        if metas[..n]
            .iter()
            .zip(bufs.iter())
            .any(|(m, b)| m.len > 0 && probe::is_probe_datagram(b[0]))
        {
            let t = table.insert(self.sessions.lock());
            t.prefetch_received(bufs, metas, n);
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let ReceiveScratch { replies, answers } = &mut *scratch;
        for i in 0..n {
            let meta = metas[i];
            let stride = stride(&meta);
            let buf = &mut bufs[i][..meta.len];
            let (mut read, mut write) = (0, 0);
            while read < meta.len {
                let end = (read + stride).min(meta.len);
                if probe::is_probe_datagram(buf[read]) {
                    datagrams += 1;
                    bytes += end - read;
                    let t = table.get_or_insert_with(|| self.sessions.lock());
                    match self.sessions.receive(t, &buf[read..end], at) {
                        Some(Reply::Answer(packet)) => replies.push(SendBack {
                            to: meta.addr,
                            src_ip: meta.dst_ip,
                            packet,
                            ready: false,
                        }),
                        Some(Reply::Ready(packet)) => replies.push(SendBack {
                            to: meta.addr,
                            src_ip: None,
                            packet,
                            ready: true,
                        }),
                        Some(Reply::Deliver(peer, answer)) => answers.push((peer, answer)),
                        None => {}
                    }
                } else {
                    buf.copy_within(read..end, write);
                    write += end - read;
                }
                read = end;
            }
            if write == 0 {
                continue;
            }
            // The buffers are equal chunks of quinn's receive buffer: swapping the slices
            // moves the datagrams without copying them.
            bufs.swap(kept, i);
            metas[kept] = RecvMeta { len: write, ..meta };
            kept += 1;
        }
        drop(table);
        if datagrams > 0 {
            let udp = &self.sessions.counters.udp;
            udp[2].fetch_add(datagrams, Ordering::Relaxed);
            udp[3].fetch_add(bytes as u64, Ordering::Relaxed);
        }
        for r in replies.drain(..) {
            if r.ready {
                self.greet(r.to, &r.packet);
            } else {
                self.answer(r.to, r.src_ip, &r.packet);
            }
        }
        if !answers.is_empty() {
            let dropped = self.sessions.inbox.push_answers(answers);
            if dropped > 0 {
                tracing::debug!(
                    dropped,
                    "probe answers dropped: their peers' queues are full"
                );
            }
        }
        kept
    }

    fn answer(&self, to: SocketAddr, src_ip: Option<IpAddr>, answer: &[u8]) {
        let c = &self.sessions.counters;
        match self.send(to, src_ip, answer) {
            Ok(()) => bump(&c.probes_answered_by_me),
            Err(e) => {
                bump(&c.send_failures);
                tracing::debug!(%to, error = %e, "probe answer not sent");
            }
        }
    }
}

/// The inner socket's poller, holding this socket too: a connection's poller lives until the
/// connection has taken a new socket (`Endpoint::rebind`), so the shutdown's wait for the
/// last `ProbeSocket` (`Shared::shutdown`) also waits for every poller, and with them for the
/// socket's descriptor.
#[derive(Debug)]
struct Poller {
    inner: Pin<Box<dyn UdpPoller>>,
    _socket: Arc<ProbeSocket>,
}

impl UdpPoller for Poller {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_writable(cx)
    }
}

impl AsyncUdpSocket for ProbeSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Poller {
            inner: self.inner.clone().create_io_poller(),
            _socket: self,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        for _ in 0..PROBE_ONLY_BATCHES {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let kept = self.take_probes(bufs, meta, n);
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
        Poll::Ready(Ok(0))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// One datagram per send: quinn keeps a send buffer per connection sized for this many
    /// segments (up to 10 × MTU, ~14 KiB, held for the connection's life). The mesh's messages
    /// are small, so GSO would save little, while at a thousand connections per node those
    /// buffers are most of its memory.
    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
#[path = "probe_socket_tests.rs"]
mod tests;
