//! The mesh transport: one QUIC endpoint per node, one connection per pair of nodes carrying
//! both directions (dialed by the lower node id, see `link::dial_loop` and
//! `shared::keeps_existing`), messages as one unidirectional stream each, and probes as
//! authenticated UDP packets on the same socket, keyed from each connection's TLS session
//! (`probe`, `probe_sessions`, `probe_socket`). It owns sockets, connections and the tasks
//! around them; it makes no decision about what a probe or message means, and it never blocks
//! its caller: what cannot be sent is counted.
//!
//! A node's stateless-reset key is derived from its private key (`tls::stateless_keys`), so it is
//! the same after a restart: a peer still holding a connection to the previous process gets
//! a reset it can verify on its next packet, instead of believing the connection alive until
//! its idle timeout.
//!
//! What a peer can make this node hold is bounded (see "Bounded resources" in
//! docs/trust.md): QUIC flow-control windows and stream counts sized from the largest
//! legitimate message, one connection per peer, a per-peer queue into the node
//! (`inbox`), and a handshake meter in front of the TLS handshake (`admission`).

use super::certs::CertPaths;
use super::inbox::{InboxShared, MeshInbox};
use super::link;
use super::probe_sessions::{OutgoingProbe, ProbeSessions};
use super::probe_socket::ProbeSocket;
use super::shared::{bump, spawn_write, Route, Shared};
use super::tls::{self, TlsError};
use crate::core::types::NodeId;
use crate::wire::{encode_message, Message};
use quinn::{Endpoint, EndpointConfig, TokioRuntime};
use quinn_proto::HashedConnectionIdGenerator;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seed for QUIC's RTT estimate before the first sample: LAN-sized, so that loss detection of
/// the first probes and handshakes does not wait for the 333 ms internet default.
const INITIAL_RTT: Duration = Duration::from_millis(10);

/// Unidirectional streams (one message each) a peer may have open at once towards this node.
/// A behaving peer has a handful in flight; this many keep a burst of Append batches moving.
pub const MAX_CONCURRENT_STREAMS: u32 = 16;
/// Bytes one stream may have in flight before this node reads them: two replica Append
/// batches (`APPEND_BATCH_BYTES`, the largest message sent in normal operation) with their
/// envelope. A larger message (up to `MAX_MESSAGE`) still arrives, as the window moves.
pub const STREAM_WINDOW: u32 = 2 * crate::core::replica::APPEND_BATCH_BYTES as u32;
/// Bytes one connection may have in flight over all its streams.
pub const CONNECTION_WINDOW: u32 = 8 * STREAM_WINDOW;
/// QUIC datagrams waiting to be read per connection. The mesh sends none (probes travel
/// beside QUIC): whatever a peer sends is counted as malformed and dropped.
pub const DATAGRAM_BUFFER: usize = 4 * 1024;
/// Handshakes in progress at once, of those this node dials and of those it accepts (each).
/// A handshake holds tens of KiB (QUIC and TLS state, keys, the peer's certificate chain)
/// until it completes or times out, and a fleet starting up dials all at once: at a Pinger
/// of a thousand Indicators, a thousand handshakes each way made the start, not the
/// connections, set the process's memory (the allocator keeps what the burst used). A LAN
/// handshake takes milliseconds, so a thousand peers still connect within seconds (as fast
/// as without the bound in docs/performance.md). Dials to unreachable peers wait, a
/// handshake timeout per round of them, and hold at most half the turns (`turns`); a caller
/// waiting its turn repeats its first packet, which quinn holds meanwhile.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 64;

/// Connection attempts quinn holds before this node looked at them (Retry or refuse).
const MAX_INCOMING: usize = 1024;

/// Application close codes on the mesh (CONNECTION_CLOSE error codes).
pub mod close_code {
    /// The node is shutting down or replaced the connection routinely.
    pub const NORMAL: u32 = 0;
    /// The caller's certificate does not speak for a node of this fleet; the reason is sent.
    pub const REJECTED: u32 = 1;
    /// The peer was removed from the peer list.
    pub const PEER_REMOVED: u32 = 2;
    /// The peer's address changed; the connection will be re-dialed.
    pub const READDRESSED: u32 = 3;
    /// The pair keeps another connection: a newer one, or the one the lower node id dialed.
    pub const REPLACED: u32 = 4;
    /// A quiet pair's connection carried no message for a while: its probe sessions stay.
    pub const PARKED: u32 = 5;
}

#[derive(Clone, Debug)]
pub struct MeshConfig {
    pub me: NodeId,
    pub bind: SocketAddr,
    /// The nodes to hold a connection with and where to dial them (an entry for `me` is
    /// ignored); a node gives its fleet's `mesh_peers`.
    pub peers: Vec<(NodeId, SocketAddr)>,
    pub certs: CertPaths,
    /// Indicator role: answer authenticated probes right in the receive path.
    pub answer_probes: bool,
    pub idle_timeout: Duration,
    pub keep_alive: Duration,
    /// How often a missing connection is retried; a dial gives up after 5 times this.
    pub redial_every: Duration,
    /// The peers this node speaks with only through probes (`Fleet::quiet_peers`): their
    /// connection closes once it carried no message for `park_after`, and their probe
    /// sessions stay open without it; the next message dials again.
    pub quiet_peers: Vec<NodeId>,
    pub park_after: Duration,
}

// A message is the large variant; boxing it would cost an allocation per message and gain
// nothing on a channel that moves events one at a time.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum MeshEvent {
    /// An authenticated answer to one of our probes arrived from `from` (the Pinger side).
    /// `at` = when it was received.
    ProbeAnswer {
        from: NodeId,
        nonce: u64,
        sent_us: u64,
        /// What the Indicator's answer says of its service.
        health: crate::core::health::ServiceHealth,
        at: Instant,
    },
    /// A stream message arrived.
    Message { from: NodeId, msg: Message },
    /// The connection with this peer is up: probes and messages to it can be sent.
    PeerConnected(NodeId),
    /// The connection with this peer is gone; it is being re-dialed.
    PeerLost(NodeId),
}

#[derive(Default, Clone, Debug, serde::Serialize)]
pub struct MeshStats {
    pub probes_sent: u64,
    /// As Indicator.
    pub probes_answered_by_me: u64,
    /// Authenticated probes not answered because this node is not an Indicator.
    pub probes_ignored: u64,
    pub answers_received: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// QUIC datagrams received (the mesh uses none).
    pub malformed_datagrams: u64,
    /// Probe packets dropped unanswered and uncounted: malformed, for no live session, in the
    /// wrong direction, or with a MAC that does not verify.
    pub probe_unauthenticated: u64,
    /// Authenticated probe packets dropped as replays (or older than the replay window).
    pub probe_replayed: u64,
    /// Authenticated probe answers dropped because their session owed no answer: more
    /// answers than probes sent.
    pub probe_unsolicited: u64,
    pub malformed_messages: u64,
    pub oversized_messages: u64,
    /// Messages this node did not send because a receiver would drop them (too large).
    pub unsendable_messages: u64,
    /// Incoming connections refused: failed certificate verification during the handshake,
    /// or a verified certificate that does not speak for a peer of this node.
    pub rejected_handshakes: u64,
    pub send_failures: u64,
    /// Outgoing dial attempts that did not produce a connection.
    pub dial_failures: u64,
    /// Connection attempts answered with a QUIC Retry (source address not yet validated).
    pub address_validations: u64,
    /// Connection attempts refused by the handshake meter (per source IP or node-wide).
    pub throttled_handshakes: u64,
    /// Connections closed because their pair replaced them with another (a newer one, or
    /// the one the lower node id dialed).
    pub replaced_connections: u64,
    /// Connections of quiet pairs closed once idle, their probe sessions kept open.
    pub parked_connections: u64,
    /// Messages queued for a quiet peer without a connection and dropped unsent: older than
    /// a handshake timeout when it came up, or pushed out by newer ones.
    pub pending_dropped: u64,
    /// Events of each peer dropped because its queue into the node was full (every peer
    /// listed, zero included).
    pub dropped_events: BTreeMap<String, u64>,
    /// UDP traffic of the mesh socket: QUIC and probe packets.
    pub udp_tx_datagrams: u64,
    pub udp_tx_bytes: u64,
    pub udp_rx_datagrams: u64,
    pub udp_rx_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Nothing was bound.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Nothing was bound.
    #[error("invalid mesh setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    #[error("cannot bind the mesh socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The node's QUIC mesh. Cheap to clone; every clone is the same mesh. Call `shutdown` to
/// release it; dropping the last clone only starts the shutdown.
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    _last_handle: Arc<LastHandle>,
}

/// The mesh's tasks hold `Shared` themselves, so only a handle of the handles can tell that
/// the owner let go.
struct LastHandle(Arc<Shared>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> MeshError {
    MeshError::Config {
        setting,
        reason: reason.into(),
    }
}

fn transport_config(cfg: &MeshConfig) -> Result<Arc<quinn::TransportConfig>, MeshError> {
    if cfg.idle_timeout.is_zero() {
        return Err(invalid("idle_timeout", "must be positive"));
    }
    if cfg.keep_alive.is_zero() || cfg.keep_alive >= cfg.idle_timeout {
        return Err(invalid(
            "keep_alive",
            format!(
                "{:?} must be positive and shorter than idle_timeout ({:?})",
                cfg.keep_alive, cfg.idle_timeout
            ),
        ));
    }
    if cfg.redial_every.is_zero() {
        return Err(invalid("redial_every", "must be positive"));
    }
    let idle = quinn::IdleTimeout::try_from(cfg.idle_timeout)
        .map_err(|_| invalid("idle_timeout", "too large for QUIC"))?;
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(cfg.keep_alive))
        .initial_rtt(INITIAL_RTT)
        // The mesh only uses datagrams and unidirectional streams.
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(MAX_CONCURRENT_STREAMS.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window(CONNECTION_WINDOW.into())
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        // QUIC's minimum MTU (1,200 B) fits every network, so no path MTU search: its larger
        // packets would make every connection keep a send buffer twice that size, for
        // messages that are small (the largest, a replica Append batch, only takes a few
        // more packets) while probes travel beside QUIC anyway.
        .mtu_discovery_config(None);
    Ok(Arc::new(t))
}

impl Mesh {
    /// Binds and starts the mesh; what peers send comes out of the returned inbox, one
    /// peer's turn after another.
    pub async fn start(cfg: MeshConfig) -> Result<(Mesh, MeshInbox), MeshError> {
        let transport = transport_config(&cfg)?;
        let mut server = tls::server_config(&cfg.certs)?;
        server
            .transport_config(transport.clone())
            .max_incoming(MAX_INCOMING);
        let mut client = tls::client_config(&cfg.certs)?;
        client.transport_config(transport);

        let bind_err = |source| MeshError::Bind {
            addr: cfg.bind,
            source,
        };
        let socket = bind_udp(cfg.bind).map_err(bind_err)?;
        let local_addr = socket.local_addr().map_err(bind_err)?;
        let runtime = Arc::new(TokioRuntime);
        let inbox = InboxShared::new();
        let sessions = ProbeSessions::new(cfg.me.clone(), cfg.answer_probes, inbox.clone());
        let socket = ProbeSocket::new(socket, &*runtime, sessions.clone()).map_err(bind_err)?;
        let socket = Arc::new(socket);
        let socket_weak = Arc::downgrade(&socket);
        // Peers must keep the QUIC fixed bit set: a datagram with it clear is a probe packet.
        let keys = tls::stateless_keys(&cfg.certs)?;
        let mut endpoint_config = EndpointConfig::new(Arc::new(keys.reset));
        endpoint_config
            .cid_generator(move || {
                Box::new(HashedConnectionIdGenerator::from_key(keys.connection_ids))
            })
            .grease_quic_bit(false);
        let mut endpoint =
            Endpoint::new_with_abstract_socket(endpoint_config, Some(server), socket, runtime)
                .map_err(bind_err)?;
        endpoint.set_default_client_config(client);

        let shared = Shared::new(&cfg, inbox.clone(), sessions, endpoint.clone(), socket_weak);
        let acceptor = shared.clone();
        shared.spawn(move |stop| link::accept_loop(acceptor, endpoint, stop));
        let trimmer = shared.clone();
        shared.spawn(move |stop| super::trim::trimmer(trimmer, stop));
        let mesh = Mesh {
            _last_handle: Arc::new(LastHandle(shared.clone())),
            shared,
            local_addr,
        };
        mesh.set_peers(cfg.peers);
        tracing::info!(node = %cfg.me, addr = %local_addr, "mesh listening");
        Ok((mesh, MeshInbox::new(inbox)))
    }

    /// Non-blocking: sends an authenticated probe to `to` through the mesh socket. Returns
    /// false (and counts a send failure) when there is no live connection with it (whose
    /// session keys the probe) or the socket refused the packet.
    pub fn send_probe(&self, to: &NodeId, nonce: u64, sent_us: u64) -> bool {
        match self.shared.probe_socket() {
            Some(socket) => socket.send_probe(to, nonce, sent_us),
            None => {
                bump(&self.shared.probes.counters.send_failures);
                false
            }
        }
    }

    /// Non-blocking: sends a batch of authenticated probes through the mesh socket, on Linux
    /// with `sendmmsg` (many destinations per system call). Returns the indexes (in order) of
    /// those not sent, each counted as a send failure: no live connection with that peer, or
    /// the socket refused the packet (its buffer full: then every later probe of the batch
    /// too).
    pub fn send_probes(&self, probes: &[OutgoingProbe]) -> Vec<usize> {
        match self.shared.probe_socket() {
            Some(socket) => socket.send_probes(probes),
            None => {
                let failures = &self.shared.probes.counters.send_failures;
                failures.fetch_add(probes.len() as u64, Ordering::Relaxed);
                (0..probes.len()).collect()
            }
        }
    }

    /// The newest probe this node answered of each Pinger since the last call: who sent it,
    /// when it arrived and the Pinger's opinion of this node's site it carried. Empty when
    /// none arrived (or this node answers none).
    pub fn take_probes_heard(&self) -> Vec<(NodeId, Instant, crate::core::types::Opinion)> {
        self.shared.probes.take_heard()
    }

    /// What this node's probe answers say of its service from now on (Indicators whose site
    /// has service checks).
    pub fn set_service_health(&self, health: crate::core::health::ServiceHealth) {
        self.shared.probes.set_health(health);
    }

    /// Replaces the list of quiet peers (`MeshConfig::quiet_peers`), at a fleet reload.
    pub fn set_quiet_peers(&self, quiet: Vec<NodeId>) {
        self.shared.set_quiet(quiet);
    }

    /// Non-blocking: writes one encoded message on a new unidirectional stream of the
    /// connection with `to`, from a spawned task; to a quiet peer without a connection, on
    /// its next one, which this dials if the pair was parked. Failures are counted and logged
    /// at debug. Each message travels alone: two messages to the same peer may arrive in
    /// either order.
    pub fn send(&self, to: &NodeId, msg: &Message) {
        let shared = &self.shared;
        let bytes = match encode_message(msg) {
            Ok(b) => bytes::Bytes::from(b),
            Err(error) => {
                // The peer would drop it unread: count and say so rather than send it. The
                // same message is likely built again each interval, so the log thins out to
                // the 1st, 2nd, 4th, 8th, ... occurrence.
                let c = &shared.counters.unsendable_messages;
                let total = c.fetch_add(1, Ordering::Relaxed) + 1;
                if total.is_power_of_two() {
                    tracing::warn!(peer = %to, %error, total, "message not sent");
                }
                return;
            }
        };
        match shared.route(to, &bytes) {
            Route::Send(conn) => spawn_write(shared, conn, to.clone(), bytes),
            Route::Queued => {}
            Route::Unsent => {
                bump(&shared.counters.send_failures);
                tracing::debug!(peer = %to, "message not sent: no connection");
            }
        }
    }

    /// Replaces the peer list (fleet reload): dials new peers, drops removed ones, re-dials a
    /// peer whose address changed. An entry for this node itself is ignored.
    pub fn set_peers(&self, peers: Vec<(NodeId, SocketAddr)>) {
        self.shared.set_peers(peers);
    }

    /// Peers whose connection is up (those `send_probe` and `send` can reach).
    pub fn connected(&self) -> Vec<NodeId> {
        self.shared.connected()
    }

    /// QUIC connections this node holds now, in any state: one per connected peer, plus
    /// briefly one a pair is about to drop (a race of dials, a replaced connection).
    pub fn live_connections(&self) -> usize {
        self.shared.live_connections()
    }

    pub fn stats(&self) -> MeshStats {
        let c = &self.shared.counters;
        let p = &self.shared.probes.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut udp = self.shared.udp_totals();
        for (total, n) in udp.iter_mut().zip(p.udp_totals()) {
            *total += n;
        }
        let [udp_tx_datagrams, udp_tx_bytes, udp_rx_datagrams, udp_rx_bytes] = udp;
        MeshStats {
            probes_sent: get(&p.probes_sent),
            probes_answered_by_me: get(&p.probes_answered_by_me),
            probes_ignored: get(&p.ignored),
            answers_received: get(&p.answers_received),
            messages_sent: get(&c.messages_sent),
            messages_received: get(&c.messages_received),
            malformed_datagrams: get(&c.malformed_datagrams),
            probe_unauthenticated: get(&p.unauthenticated),
            probe_replayed: get(&p.replayed),
            probe_unsolicited: get(&p.unsolicited),
            malformed_messages: get(&c.malformed_messages),
            oversized_messages: get(&c.oversized_messages),
            unsendable_messages: get(&c.unsendable_messages),
            rejected_handshakes: get(&c.rejected_handshakes),
            send_failures: get(&c.send_failures) + get(&p.send_failures),
            dial_failures: get(&c.dial_failures),
            address_validations: get(&c.address_validations),
            throttled_handshakes: get(&c.throttled_handshakes),
            replaced_connections: get(&c.replaced_connections),
            parked_connections: get(&c.parked_connections),
            pending_dropped: get(&c.pending_dropped),
            dropped_events: self
                .shared
                .inbox
                .drops()
                .into_iter()
                .map(|(peer, n)| (peer.to_string(), n))
                .collect(),
            udp_tx_datagrams,
            udp_tx_bytes,
            udp_rx_datagrams,
            udp_rx_bytes,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Closes every connection and the endpoint; returns when every task has ended and the
    /// socket is released (so the address can be bound again). Idempotent.
    pub async fn shutdown(&self) {
        self.shared.shutdown().await;
        tracing::info!(node = %self.shared.me, addr = %self.local_addr, "mesh shut down");
    }
}

/// Binds the mesh's UDP socket with large buffers: a Pinger's answers arrive in one burst per
/// round (every Indicator answers at once), and the default receive buffer (~208 KiB) drops
/// them past a few hundred Indicators. The kernel caps the request at net.core.rmem_max.
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    const BUFFER: usize = 8 << 20;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    // Best effort: a smaller buffer still works, only bursts beyond it are lost.
    socket.set_recv_buffer_size(BUFFER).ok();
    socket.set_send_buffer_size(BUFFER).ok();
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
