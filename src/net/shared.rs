//! State shared by the mesh's tasks: the peer table with each pair's one connection, the
//! inbox, the handshake meter, the counters, the traffic totals and the task accounting that
//! makes shutdown complete. Locks here are plain mutexes over plain data and are never held
//! across an await.

use super::admission::{Admission, Throttled};
use super::inbox::InboxShared;
use super::link::{self, Stop};
use super::mesh::{close_code, MeshConfig, MeshEvent};
use super::probe_sessions::{Opened, ProbeSessions};
use super::probe_socket::ProbeSocket;
use super::turns::HandshakeTurns;
use crate::core::types::NodeId;
use bytes::Bytes;
use quinn::{Connection, Endpoint};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

#[derive(Default)]
pub(super) struct Counters {
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    pub malformed_datagrams: AtomicU64,
    pub malformed_messages: AtomicU64,
    pub oversized_messages: AtomicU64,
    pub unsendable_messages: AtomicU64,
    pub rejected_handshakes: AtomicU64,
    pub send_failures: AtomicU64,
    pub dial_failures: AtomicU64,
    /// Connection attempts answered with a QUIC Retry (address not yet validated).
    pub address_validations: AtomicU64,
    /// Connection attempts refused by the handshake meter, before any cryptography.
    pub throttled_handshakes: AtomicU64,
    /// Connections closed because their pair replaced them with another.
    pub replaced_connections: AtomicU64,
    /// Connections of quiet pairs closed once idle, their probe sessions kept (parked).
    pub parked_connections: AtomicU64,
    /// Connections closed, for whatever reason (`trim`).
    pub closed_connections: AtomicU64,
    /// Messages queued for a quiet peer with no connection, dropped unsent: too old, or
    /// pushed out by newer ones.
    pub pending_dropped: AtomicU64,
}

/// How long a connection its pair stopped using stays open: nothing is sent on it any more,
/// but what the peer sent on it meanwhile (it may have chosen it a moment before this end
/// chose the other, when both dialed) is still read.
pub(super) const LINGER: Duration = Duration::from_secs(1);

/// Messages a quiet peer with no connection holds for it, at most (the oldest go first).
const PENDING_MAX: usize = 32;

/// Longest a shutdown waits for the connections to drain and the socket to be released.
const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(3);

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Live connections (for their UDP counters) and the totals of the closed ones.
#[derive(Default)]
pub(super) struct Traffic {
    live: HashMap<usize, Connection>,
    closed: [u64; 4],
}

fn udp_totals(conn: &Connection) -> [u64; 4] {
    let s = conn.stats();
    [
        s.udp_tx.datagrams,
        s.udp_tx.bytes,
        s.udp_rx.datagrams,
        s.udp_rx.bytes,
    ]
}

pub(super) struct PeerSlot {
    addr: SocketAddr,
    generation: u64,
    /// The pair's one connection, whichever end dialed it.
    link: Option<Link>,
    /// Whether the peer was announced as connected (PeerConnected) and not lost since. A
    /// connection replaced by a newer one keeps the peer connected.
    announced: bool,
    /// Whether `link` is set, or the pair is parked: the dialer waits on it for the pair to
    /// lose its connection (or for a parked pair's next message).
    linked: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    /// The pair speaks only through probes (`MeshConfig::quiet_peers`): its connection closes
    /// once idle, and its probe sessions stay open without it.
    quiet: bool,
    /// A quiet pair whose connection closed while its sessions stay open: their
    /// discriminators, until the next connection replaces them (or the peer is removed or
    /// readdressed). The peer stays connected meanwhile: its probes are what the pair is for.
    parked: Option<[u64; 2]>,
    /// Messages for a quiet peer without a connection, with when each was queued: sent on
    /// its next connection, which the first of them dials.
    pending: VecDeque<(Instant, Bytes)>,
    /// When the pair's connection last carried a message, either way (quiet pairs park
    /// after `park_after` of none).
    last_message: Instant,
    /// The next connection announces the peer again, so that both ends send their status.
    reannounce: bool,
}

/// Where a message to a peer goes (`Shared::route`).
pub(super) enum Route {
    /// Over the pair's connection.
    Send(Connection),
    /// Held for a quiet peer's next connection, dialed now if it was parked.
    Queued,
    /// Nowhere: not a peer, or no connection.
    Unsent,
}

/// What became of the pair when one of its connections ended (`Shared::unlink`).
pub(super) enum Unlinked {
    /// It was the pair's connection and the peer is lost: dial again.
    Lost,
    /// A quiet pair: its probe sessions stay open without the connection.
    Parked,
    /// It was not (or no longer) the pair's connection.
    NotLinked,
}

struct Link {
    conn: Connection,
    dialed_by_me: bool,
}

/// What became of a connection offered to its pair's slot.
pub(super) enum Install {
    /// It is the pair's connection now, with its probe sessions (None when their keys could
    /// not be derived: the connection then carries no probes). `replaced`: the pair had
    /// another, now closed.
    Installed {
        session: Option<Opened>,
        replaced: bool,
    },
    /// The pair keeps its other connection, dialed by the lower node id; close this one.
    /// That connection was just sent a liveness check: if it is stale (the peer restarted),
    /// the peer's stateless reset ends it at once and the lower id dials afresh.
    Kept,
    /// The peer is no longer in the peer list (or was re-added since this dial started).
    Gone,
}

/// Whether a pair keeps its `existing` connection when another one comes up. Both ends
/// decide alike, knowing only who dialed which: a connection dialed by the higher node id
/// never replaces one dialed by the lower (their dials raced, or the higher one lost its
/// connection without the lower noticing: the liveness check settles that); otherwise the
/// newer connection replaces the older, since a node dials only when it has no connection
/// with the peer, so the one it had is dead on its side (it restarted, or it timed out).
pub(super) fn keeps_existing(
    me: &NodeId,
    peer: &NodeId,
    existing_dialed_by_me: bool,
    new_dialed_by_me: bool,
) -> bool {
    let dialed_by_lower = |by_me: bool| if by_me { me < peer } else { peer < me };
    dialed_by_lower(existing_dialed_by_me) && !dialed_by_lower(new_dialed_by_me)
}

/// Everything the tasks share; they hold it by `Arc` and never hold a lock across an await.
pub(super) struct Shared {
    pub me: NodeId,
    /// The probe session of every live connection.
    pub probes: Arc<ProbeSessions>,
    pub redial_every: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    /// A quiet pair's connection closes after this long without a message.
    pub park_after: Duration,
    /// The peers of quiet pairs (`MeshConfig::quiet_peers`); read when a slot is made.
    quiet: Mutex<HashSet<NodeId>>,
    pub inbox: Arc<InboxShared>,
    pub turns: HandshakeTurns,
    pub counters: Counters,
    admission: Mutex<Admission>,
    endpoint: Mutex<Option<Endpoint>>,
    peers: Mutex<HashMap<NodeId, PeerSlot>>,
    generation: AtomicU64,
    traffic: Mutex<Traffic>,
    shutdown: watch::Sender<bool>,
    /// Every task holds a clone; shutdown drops this one and waits for the channel to close.
    tasks: Mutex<Option<mpsc::Sender<()>>>,
    tasks_done: tokio::sync::Mutex<mpsc::Receiver<()>>,
    socket: Weak<ProbeSocket>,
    warned: Mutex<HashMap<String, Instant>>,
    /// The runtime `start` ran on, so callers on other threads can still send.
    runtime: tokio::runtime::Handle,
}

fn is_link(slot: &PeerSlot, conn: &Connection) -> bool {
    slot.link.as_ref().map(|l| l.conn.stable_id()) == Some(conn.stable_id())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(
        cfg: &MeshConfig,
        inbox: Arc<InboxShared>,
        probes: Arc<ProbeSessions>,
        endpoint: Endpoint,
        socket: Weak<ProbeSocket>,
    ) -> Arc<Shared> {
        let (tasks, tasks_done) = mpsc::channel(1);
        Arc::new(Shared {
            me: cfg.me.clone(),
            probes,
            redial_every: cfg.redial_every,
            idle_timeout: cfg.idle_timeout,
            handshake_timeout: cfg.redial_every * 5,
            park_after: cfg.park_after,
            quiet: Mutex::new(cfg.quiet_peers.iter().cloned().collect()),
            inbox,
            turns: HandshakeTurns::new(super::mesh::MAX_CONCURRENT_HANDSHAKES),
            counters: Counters::default(),
            admission: Mutex::new(Admission::new(Instant::now())),
            endpoint: Mutex::new(Some(endpoint)),
            peers: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            traffic: Mutex::new(Traffic::default()),
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(Some(tasks)),
            tasks_done: tokio::sync::Mutex::new(tasks_done),
            socket,
            warned: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub fn stop(&self) -> Stop {
        Stop::new(self.shutdown.subscribe(), None)
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Spawns a task that shutdown waits for; refused (false) once shutdown began.
    pub fn spawn<F, Fut>(&self, task: F) -> bool
    where
        F: FnOnce(Stop) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(guard) = lock(&self.tasks).clone() else {
            return false;
        };
        // `map`, not an async block around `fut.await`: that block would hold room for the
        // task both as its captured value and as the future it awaits, twice its size for as
        // long as the task lives (a peer's dial loop lives as long as the peer).
        let fut = futures_util::FutureExt::map(task(self.stop()), move |()| drop(guard));
        self.runtime.spawn(fut);
        true
    }

    /// The mesh socket, until it is released at shutdown.
    pub fn probe_socket(&self) -> Option<Arc<ProbeSocket>> {
        self.socket.upgrade()
    }

    pub fn endpoint(&self) -> Option<Endpoint> {
        lock(&self.endpoint).clone()
    }

    pub fn is_peer(&self, node: &NodeId) -> bool {
        lock(&self.peers).contains_key(node)
    }

    /// The address to dial, while the slot this dialer was started for still exists.
    pub fn peer_addr(&self, peer: &NodeId, generation: u64) -> Option<SocketAddr> {
        let peers = lock(&self.peers);
        let slot = peers.get(peer).filter(|s| s.generation == generation)?;
        Some(slot.addr)
    }

    /// Offers a connection that came up with `peer` (dialed by this node for the slot of
    /// `generation`, or accepted) to the pair's slot; see `keeps_existing` for which one a
    /// pair keeps. The probe sessions of an installed connection are opened under the same
    /// lock, so that probes to the peer always use the pair's current connection.
    pub fn install(
        self: &Arc<Self>,
        peer: &NodeId,
        generation: Option<u64>,
        conn: &Connection,
        dialed_by_me: bool,
    ) -> Install {
        let mut peers = lock(&self.peers);
        // The configured id, not the certificate's copy of it: the probe sessions name the
        // peer in every answer, and copies of one id compare without reading the bytes.
        let Some(peer) = peers.get_key_value(peer).map(|(id, _)| id.clone()) else {
            return Install::Gone;
        };
        let peer = &peer;
        let Some(slot) = peers
            .get_mut(peer)
            .filter(|s| generation.is_none_or(|g| s.generation == g))
        else {
            return Install::Gone;
        };
        let existing = slot
            .link
            .as_ref()
            .filter(|l| l.conn.close_reason().is_none());
        if let Some(existing) = existing {
            if keeps_existing(&self.me, peer, existing.dialed_by_me, dialed_by_me) {
                // An empty datagram: answered by a stateless reset if the peer no longer has
                // that connection (see `tls::stateless_keys`), ignored by a live peer.
                let _ = existing.conn.send_datagram(bytes::Bytes::new());
                return Install::Kept;
            }
        }
        let session = match self.probes.open(conn, peer) {
            Ok(opened) => Some(opened),
            Err(error) => {
                tracing::warn!(peer = %peer, %error, "no probe session on this connection");
                None
            }
        };
        let old = slot.link.replace(Link {
            conn: conn.clone(),
            dialed_by_me,
        });
        slot.linked.send_replace(true);
        slot.last_message = Instant::now();
        let parked = slot.parked.take();
        let pending = std::mem::take(&mut slot.pending);
        drop(peers);
        if let Some(discriminators) = parked {
            // The parked sessions serve until the peer has opened the new ones (probes in
            // flight, and the peer's answers sealed with the old keys).
            let probes = self.probes.clone();
            self.spawn(move |mut stop| async move {
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = tokio::time::sleep(LINGER) => {}
                }
                probes.close(discriminators);
            });
        }
        for (queued, bytes) in pending {
            if queued.elapsed() > self.handshake_timeout {
                bump(&self.counters.pending_dropped);
                continue;
            }
            spawn_write(self, conn.clone(), peer.clone(), bytes);
        }
        let replaced = old.is_some();
        if let Some(old) = old {
            bump(&self.counters.replaced_connections);
            tracing::debug!(peer = %peer, "the pair's older connection replaced");
            let old = old.conn;
            self.spawn(move |mut stop| async move {
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = old.closed() => {}
                    _ = tokio::time::sleep(LINGER) => {}
                }
                old.close(
                    close_code::REPLACED.into(),
                    b"replaced by the pair's newer connection",
                );
            });
        }
        // The accepting end opens its sessions last (its handshake completes after the
        // dialer's), so it speaks first; the dialer answers with its own Ready.
        if let (Some(opened), Some(socket), false) = (&session, self.probe_socket(), dialed_by_me) {
            let (to, ready) = &opened.greeting;
            socket.greet(*to, ready);
        }
        Install::Installed { session, replaced }
    }

    /// Announces the peer as connected over `conn`: true the first time since it was last
    /// lost (or parked), while `conn` is still the pair's connection.
    pub fn announce(&self, peer: &NodeId, conn: &Connection) -> bool {
        let mut peers = lock(&self.peers);
        match peers.get_mut(peer) {
            Some(slot) if is_link(slot, conn) && (!slot.announced || slot.reannounce) => {
                slot.announced = true;
                slot.reannounce = false;
                true
            }
            _ => false,
        }
    }

    /// Takes `conn` out of its pair's slot if it is still the pair's connection, with its
    /// probe `sessions`: a quiet pair whose connection ended (`may_park`: not closed by this
    /// node for a reason of its own) keeps them open and stays connected; otherwise they
    /// close, and the peer is lost if it had been announced.
    pub fn unlink(
        &self,
        peer: &NodeId,
        conn: &Connection,
        sessions: Option<[u64; 2]>,
        may_park: bool,
    ) -> Unlinked {
        let mut peers = lock(&self.peers);
        let Some(slot) = peers.get_mut(peer).filter(|s| is_link(s, conn)) else {
            drop(peers);
            if let Some(discriminators) = sessions {
                self.probes.close(discriminators);
            }
            return Unlinked::NotLinked;
        };
        slot.link = None;
        if let (true, true, Some(discriminators)) = (may_park, slot.quiet, sessions) {
            slot.parked = Some(discriminators);
            slot.reannounce = true;
            // Something was sent meanwhile: dial again for it.
            slot.linked.send_replace(slot.pending.is_empty());
            bump(&self.counters.parked_connections);
            return Unlinked::Parked;
        }
        slot.linked.send_replace(false);
        let lost = std::mem::replace(&mut slot.announced, false);
        drop(peers);
        if let Some(discriminators) = sessions {
            self.probes.close(discriminators);
        }
        if lost {
            Unlinked::Lost
        } else {
            Unlinked::NotLinked
        }
    }

    /// How long the pair's connection `conn` carried no message, if the pair is quiet and
    /// `conn` still its connection.
    pub fn quiet_for(&self, peer: &NodeId, conn: &Connection) -> Option<Duration> {
        let peers = lock(&self.peers);
        let slot = peers.get(peer).filter(|s| s.quiet && is_link(s, conn))?;
        Some(slot.last_message.elapsed())
    }

    /// A message arrived from `peer`.
    pub fn heard_message(&self, peer: &NodeId) {
        if let Some(slot) = lock(&self.peers).get_mut(peer) {
            slot.last_message = Instant::now();
        }
    }

    /// Whether the pair is parked and has something to send: its dialer then dials at once
    /// (the higher id's grace is for a pair that lost its connection, when both may dial).
    pub fn unparking(&self, peer: &NodeId, generation: u64) -> bool {
        let peers = lock(&self.peers);
        peers
            .get(peer)
            .is_some_and(|s| s.generation == generation && s.parked.is_some())
    }

    /// Whether the pair has a connection, to wait on (None once the slot of `generation` is
    /// gone).
    pub fn linked(&self, peer: &NodeId, generation: u64) -> Option<watch::Receiver<bool>> {
        let peers = lock(&self.peers);
        let slot = peers.get(peer).filter(|s| s.generation == generation)?;
        Some(slot.linked.subscribe())
    }

    /// Whether a validated caller at `ip` may start a handshake now.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Throttled> {
        lock(&self.admission).admit(ip, Instant::now())
    }

    /// Where a message to `peer` goes: the pair's connection; or, for a quiet pair without
    /// one, its queue (dialing it, if parked).
    pub fn route(&self, peer: &NodeId, bytes: &Bytes) -> Route {
        let mut peers = lock(&self.peers);
        let Some(slot) = peers.get_mut(peer) else {
            return Route::Unsent;
        };
        if let Some(link) = &slot.link {
            slot.last_message = Instant::now();
            return Route::Send(link.conn.clone());
        }
        if !slot.quiet {
            return Route::Unsent;
        }
        let now = Instant::now();
        while slot.pending.len() >= PENDING_MAX
            || slot
                .pending
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > self.handshake_timeout)
        {
            slot.pending.pop_front();
            bump(&self.counters.pending_dropped);
        }
        slot.pending.push_back((now, bytes.clone()));
        if slot.parked.is_some() {
            slot.linked.send_replace(false);
        }
        Route::Queued
    }

    /// Marks the pairs with `quiet` as quiet, the others not; a parked pair no longer quiet
    /// dials again.
    pub fn set_quiet(&self, quiet: Vec<NodeId>) {
        let quiet: HashSet<NodeId> = quiet.into_iter().collect();
        let mut peers = lock(&self.peers);
        for (node, slot) in peers.iter_mut() {
            slot.quiet = quiet.contains(node);
            if !slot.quiet && slot.parked.is_some() {
                slot.linked.send_replace(false);
            }
        }
        *lock(&self.quiet) = quiet;
    }

    /// QUIC connections this node holds (handshaken, not yet closed), whatever their state.
    pub fn live_connections(&self) -> usize {
        lock(&self.traffic).live.len()
    }

    pub fn track(&self, conn: &Connection) {
        lock(&self.traffic)
            .live
            .insert(conn.stable_id(), conn.clone());
    }

    pub fn untrack(&self, conn: &Connection) {
        let mut traffic = lock(&self.traffic);
        if let Some(conn) = traffic.live.remove(&conn.stable_id()) {
            bump(&self.counters.closed_connections);
            for (total, n) in traffic.closed.iter_mut().zip(udp_totals(&conn)) {
                *total += n;
            }
        }
    }

    /// Queues a connection event for the node (never waits).
    pub fn emit(&self, event: MeshEvent) {
        if !self.inbox.push_control(event) {
            tracing::warn!(node = %self.me, "connection event dropped: the node is not reading");
        }
    }

    /// Whether a repeated complaint about `key` deserves a warning again, or only debug.
    pub fn loud(&self, key: String) -> bool {
        const WARN_EVERY: Duration = Duration::from_secs(60);
        let mut warned = lock(&self.warned);
        if warned.len() > 1024 {
            warned.clear();
        }
        let now = Instant::now();
        match warned.get(&key) {
            Some(at) if now.duration_since(*at) < WARN_EVERY => false,
            _ => {
                warned.insert(key, now);
                true
            }
        }
    }

    pub fn set_peers(self: &Arc<Self>, peers: Vec<(NodeId, SocketAddr)>) {
        let wanted: HashMap<NodeId, SocketAddr> =
            peers.into_iter().filter(|(n, _)| *n != self.me).collect();
        let mut dialers = Vec::new();
        let mut lost = Vec::new();
        {
            let quiet = lock(&self.quiet).clone();
            let mut table = lock(&self.peers);
            table.retain(|node, slot| {
                if wanted.contains_key(node) {
                    return true;
                }
                tracing::info!(peer = %node, "peer removed from the mesh");
                slot.stop.send_replace(true);
                if let Some(discriminators) = slot.parked.take() {
                    self.probes.close(discriminators);
                }
                if let Some(link) = &slot.link {
                    link.conn
                        .close(close_code::PEER_REMOVED.into(), b"peer removed");
                }
                false
            });
            for (node, addr) in wanted {
                if let Some(slot) = table.get_mut(&node) {
                    if slot.addr != addr {
                        tracing::info!(peer = %node, old = %slot.addr, new = %addr, "peer address changed");
                        slot.addr = addr;
                        if let Some(link) = &slot.link {
                            link.conn
                                .close(close_code::READDRESSED.into(), b"readdressed");
                        }
                        // Parked sessions name the old address: the peer is dialed afresh.
                        if let Some(discriminators) = slot.parked.take() {
                            self.probes.close(discriminators);
                            slot.linked.send_replace(false);
                            if std::mem::replace(&mut slot.announced, false) {
                                lost.push(node.clone());
                            }
                        }
                    }
                    continue;
                }
                let generation = self.generation.fetch_add(1, Ordering::Relaxed);
                let (stop, stopped) = watch::channel(false);
                table.insert(
                    node.clone(),
                    PeerSlot {
                        addr,
                        generation,
                        link: None,
                        announced: false,
                        linked: watch::channel(false).0,
                        stop,
                        quiet: quiet.contains(&node),
                        parked: None,
                        pending: VecDeque::new(),
                        last_message: Instant::now(),
                        reannounce: false,
                    },
                );
                dialers.push((node, generation, stopped));
            }
            self.inbox.set_peers(table.keys());
            lock(&self.admission).set_peers(table.values().map(|s| s.addr.ip()), Instant::now());
        }
        for node in lost {
            self.emit(MeshEvent::PeerLost(node));
        }
        for (node, generation, stopped) in dialers {
            let dialer = self.clone();
            self.spawn(move |stop| {
                link::dial_loop(dialer, node, generation, stop.with_peer(stopped))
            });
        }
    }

    pub fn connected(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = lock(&self.peers)
            .iter()
            .filter(|(_, slot)| (slot.link.is_some() || slot.parked.is_some()) && slot.announced)
            .map(|(node, _)| node.clone())
            .collect();
        nodes.sort();
        nodes
    }

    /// UDP datagrams and bytes sent and received, over live and closed connections.
    pub fn udp_totals(&self) -> [u64; 4] {
        let traffic = lock(&self.traffic);
        let mut udp = traffic.closed;
        for conn in traffic.live.values() {
            for (total, n) in udp.iter_mut().zip(udp_totals(conn)) {
                *total += n;
            }
        }
        udp
    }

    /// Tells every task to stop and closes every connection; what `shutdown` starts with, and
    /// all that dropping the last `Mesh` handle can do.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.inbox.close();
        if let Some(endpoint) = self.endpoint() {
            endpoint.close(close_code::NORMAL.into(), b"shutdown");
        }
    }

    /// Stops every task, closes every connection and the endpoint, and waits until the socket
    /// is released.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        drop(lock(&self.tasks).take());
        {
            let mut done = self.tasks_done.lock().await;
            while done.recv().await.is_some() {}
        }
        let endpoint = lock(&self.endpoint).take();
        let port = endpoint.as_ref().and_then(|e| e.local_addr().ok());
        // Bounded: a connection to a peer that vanished drains for three of its (backed-off)
        // probe timeouts, which can be long; a node that shuts down does not wait for that.
        let bound = self
            .idle_timeout
            .clamp(Duration::from_secs(1), SHUTDOWN_DRAIN_MAX);
        if let Some(endpoint) = &endpoint {
            if tokio::time::timeout(bound, endpoint.wait_idle())
                .await
                .is_err()
            {
                release_port(endpoint);
            }
        }
        drop(endpoint);
        lock(&self.peers).clear();
        let live: Vec<Connection> = lock(&self.traffic).live.values().cloned().collect();
        for conn in &live {
            self.untrack(conn);
        }
        drop(live);
        // quinn's drivers drop the socket once they notice the last handle is gone.
        let started = Instant::now();
        // The count can read zero a moment before the thread that dropped the last handle
        // has closed the descriptor: the port itself says when it is free.
        let free = |addr: &SocketAddr| std::net::UdpSocket::bind(addr).is_ok();
        while self.socket.strong_count() > 0 || port.is_some_and(|p| !free(&p)) {
            if started.elapsed() > bound {
                tracing::warn!(node = %self.me, "mesh socket still open after shutdown");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Writes one encoded message on a new unidirectional stream of `conn`, from a spawned task;
/// failures are counted and logged at debug.
pub(super) fn spawn_write(shared: &Arc<Shared>, conn: Connection, to: NodeId, bytes: Bytes) {
    let task_shared = shared.clone();
    let spawned = shared.spawn(move |mut stop| async move {
        let write = async {
            let mut stream = conn.open_uni().await.map_err(|e| e.to_string())?;
            stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
            stream.finish().map_err(|e| e.to_string())
        };
        let c = &task_shared.counters;
        tokio::select! {
            _ = stop.wait() => bump(&c.send_failures),
            result = write => match result {
                Ok(()) => bump(&c.messages_sent),
                Err(error) => {
                    bump(&c.send_failures);
                    tracing::debug!(peer = %to, %error, "message not sent");
                }
            },
        }
    });
    if !spawned {
        bump(&shared.counters.send_failures);
    }
}

/// Moves the connections still draining after a shutdown's wait off the mesh socket, so that
/// its port is free at once. A closed connection drains for three of its probe timeouts,
/// which grow with its round-trip time: over a long or congested path that can be tens of
/// seconds, all the while holding the socket, and a node restarted in the same process (the
/// demo, the tests, the benches) would find its port bound. What they might still send goes
/// out from a throw-away port; their peers have had the close already.
///
/// quinn keeps the socket it replaces as a fallback until traffic arrives on the new one; a
/// second replacement drops it.
fn release_port(endpoint: &Endpoint) {
    let any: SocketAddr = match endpoint.local_addr() {
        Ok(a) if a.is_ipv6() => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
        _ => (std::net::Ipv4Addr::LOCALHOST, 0).into(),
    };
    for _ in 0..2 {
        let replaced = std::net::UdpSocket::bind(any).and_then(|s| endpoint.rebind(s));
        if let Err(e) = replaced {
            tracing::warn!(error = %e, "mesh socket not released from its draining connections");
            return;
        }
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
