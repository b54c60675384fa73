//! State shared by the mesh's tasks: the peer table with each peer's connections, the
//! inbox, the handshake meter, the counters, the traffic totals and the task accounting that
//! makes shutdown complete. Locks here are plain mutexes over plain data and are never held
//! across an await.

use super::admission::{Admission, Throttled};
use super::inbox::InboxShared;
use super::link::{self, Stop};
use super::mesh::{close_code, MeshConfig, MeshEvent};
use super::probe_socket::{End, Opened, ProbeSessions, ProbeSocket};
use crate::core::types::NodeId;
use quinn::{Connection, Endpoint};
use std::collections::HashMap;
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
    /// Incoming connections closed because the same peer connected again.
    pub replaced_connections: AtomicU64,
}

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
    outgoing: Option<Connection>,
    /// When `outgoing` was installed.
    outgoing_since: Instant,
    /// The peer's newest connection to us. A peer dials again only once its connection
    /// ended (or it restarted), so a newer one replaces the older: one peer identity holds
    /// one incoming connection, however often it reconnects.
    incoming: Option<Connection>,
    stop: watch::Sender<bool>,
}

/// Everything the tasks share; they hold it by `Arc` and never hold a lock across an await.
pub(super) struct Shared {
    pub me: NodeId,
    /// The probe session of every live connection.
    pub probes: Arc<ProbeSessions>,
    pub redial_every: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub inbox: Arc<InboxShared>,
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
            inbox,
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
        let fut = task(self.stop());
        self.runtime.spawn(async move {
            fut.await;
            drop(guard);
        });
        true
    }

    /// The mesh socket, until it is released at shutdown.
    pub fn probe_socket(&self) -> Option<Arc<ProbeSocket>> {
        self.socket.upgrade()
    }

    /// Starts the probe session of a connection that came up with `peer` (the acceptor tells
    /// the dialer its end is open); None (logged) when its keys cannot be derived, and then the
    /// connection carries no probes.
    pub fn open_probe_session(&self, conn: &Connection, peer: &NodeId, end: End) -> Option<Opened> {
        match self.probes.open(conn, peer, end) {
            Ok(opened) => {
                if let (Some((to, ready)), Some(socket)) = (&opened.greeting, self.probe_socket()) {
                    socket.greet(*to, ready);
                }
                Some(opened)
            }
            Err(error) => {
                tracing::warn!(peer = %peer, %error, "no probe session on this connection");
                None
            }
        }
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

    pub fn install_outgoing(&self, peer: &NodeId, generation: u64, conn: &Connection) -> bool {
        let mut peers = lock(&self.peers);
        match peers.get_mut(peer).filter(|s| s.generation == generation) {
            Some(slot) => {
                slot.outgoing = Some(conn.clone());
                slot.outgoing_since = Instant::now();
                true
            }
            None => false,
        }
    }

    pub fn uninstall_outgoing(&self, peer: &NodeId, conn: &Connection) {
        if let Some(slot) = lock(&self.peers).get_mut(peer) {
            if slot.outgoing.as_ref().map(|c| c.stable_id()) == Some(conn.stable_id()) {
                slot.outgoing = None;
            }
        }
    }

    /// Records an accepted connection of `peer`, so that removing the peer closes it, and
    /// closes the peer's older incoming connection if it had one.
    pub fn install_incoming(&self, peer: &NodeId, conn: &Connection) -> bool {
        let mut peers = lock(&self.peers);
        let Some(slot) = peers.get_mut(peer) else {
            return false;
        };
        if let Some(old) = slot.incoming.replace(conn.clone()) {
            // Only a replaced connection that still looked alive says the peer restarted; one
            // already closing (the peer closed it on purpose) does not, or two nodes would
            // keep re-dialing each other.
            let peer_restarted = old.close_reason().is_none();
            // The peer dialed again while its old connection looked alive here: it most
            // likely restarted, and then our outgoing connection leads to its previous
            // incarnation (whose stateless resets we cannot check) and would only end at the
            // idle timeout, carrying probes nobody can verify. Dial it afresh, unless that
            // connection is itself brand new (two nodes must not keep replacing each other).
            let stale = slot
                .outgoing
                .as_ref()
                .filter(|_| peer_restarted)
                .filter(|_| slot.outgoing_since.elapsed() > self.handshake_timeout)
                .cloned();
            drop(peers);
            bump(&self.counters.replaced_connections);
            old.close(
                close_code::REPLACED.into(),
                b"replaced by a newer connection",
            );
            if let Some(stale) = stale {
                stale.close(close_code::REDIAL.into(), b"peer reconnected: redialing");
            }
            tracing::debug!(peer = %peer, "older incoming connection replaced");
        }
        true
    }

    pub fn uninstall_incoming(&self, peer: &NodeId, conn: &Connection) {
        if let Some(slot) = lock(&self.peers).get_mut(peer) {
            if slot.incoming.as_ref().map(|c| c.stable_id()) == Some(conn.stable_id()) {
                slot.incoming = None;
            }
        }
    }

    /// Whether a validated caller at `ip` may start a handshake now.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Throttled> {
        lock(&self.admission).admit(ip, Instant::now())
    }

    pub fn outgoing(&self, peer: &NodeId) -> Option<Connection> {
        lock(&self.peers).get(peer)?.outgoing.clone()
    }

    pub fn track(&self, conn: &Connection) {
        lock(&self.traffic)
            .live
            .insert(conn.stable_id(), conn.clone());
    }

    pub fn untrack(&self, conn: &Connection) {
        let mut traffic = lock(&self.traffic);
        if let Some(conn) = traffic.live.remove(&conn.stable_id()) {
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
        {
            let mut table = lock(&self.peers);
            table.retain(|node, slot| {
                if wanted.contains_key(node) {
                    return true;
                }
                tracing::info!(peer = %node, "peer removed from the mesh");
                slot.stop.send_replace(true);
                for conn in slot.outgoing.iter().chain(slot.incoming.iter()) {
                    conn.close(close_code::PEER_REMOVED.into(), b"peer removed");
                }
                false
            });
            for (node, addr) in wanted {
                if let Some(slot) = table.get_mut(&node) {
                    if slot.addr != addr {
                        tracing::info!(peer = %node, old = %slot.addr, new = %addr, "peer address changed");
                        slot.addr = addr;
                        if let Some(conn) = &slot.outgoing {
                            conn.close(close_code::READDRESSED.into(), b"readdressed");
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
                        outgoing: None,
                        outgoing_since: Instant::now(),
                        incoming: None,
                        stop,
                    },
                );
                dialers.push((node, generation, stopped));
            }
            self.inbox.set_peers(table.keys());
            lock(&self.admission).set_peers(table.values().map(|s| s.addr.ip()), Instant::now());
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
            .filter(|(_, slot)| slot.outgoing.is_some())
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
        // Bounded: a connection to a peer that vanished drains for three of its (backed-off)
        // probe timeouts, which can be long; a node that shuts down does not wait for that.
        let bound = self
            .idle_timeout
            .clamp(Duration::from_secs(1), SHUTDOWN_DRAIN_MAX);
        if let Some(endpoint) = &endpoint {
            let _ = tokio::time::timeout(bound, endpoint.wait_idle()).await;
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
        while self.socket.strong_count() > 0 {
            if started.elapsed() > bound {
                tracing::warn!(node = %self.me, "mesh socket still open after shutdown");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
