//! The work done per connection: dialing and re-dialing one peer when the pair has no
//! connection, accepting and identifying callers, and serving the pair's one connection in
//! both directions (one message per unidirectional stream; its two probe sessions open while
//! it lives). Nothing here decides what a message means; a bad frame is counted
//! and dropped, and never costs the connection. What a peer sends goes into its own queue of
//! the inbox; a full queue drops it (counted there) without slowing anyone else down.

use super::admission::Throttled;
use super::mesh::{close_code, MeshEvent};
use super::shared::{bump, Install, Shared, Unlinked, LINGER};
use super::tls::{identify_caller, IdentityError};
use crate::core::types::NodeId;
use crate::wire::{self, decode_message, WireError};
use quinn::{Connection, ConnectionError, Endpoint, Incoming, ReadToEndError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A stream must deliver its whole message within this; bounds what a peer that opens
/// streams and never finishes them can hold (on top of QUIC's stream-count limit).
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between dials to a peer that keeps refusing our certificate (or whose
/// certificate we refuse): no point in a handshake every `redial_every` for a config error.
const REFUSED_PAUSE_MAX: Duration = Duration::from_secs(5);
/// Longest wait for the peer's Ready packet before the connection counts as up anyway.
const PROBE_READY_WAIT: Duration = Duration::from_secs(1);
/// How long the higher node id of a pair waits, with no connection, before it dials again:
/// the lower one dials at once, and on a LAN its connection is up well within this.
const DIAL_GRACE: Duration = Duration::from_millis(400);

/// The mesh-wide shutdown signal, plus the per-peer one for a dialer's peer.
#[derive(Clone)]
pub(super) struct Stop {
    global: watch::Receiver<bool>,
    peer: Option<watch::Receiver<bool>>,
}

impl Stop {
    pub fn new(global: watch::Receiver<bool>, peer: Option<watch::Receiver<bool>>) -> Stop {
        Stop { global, peer }
    }

    pub fn with_peer(self, peer: watch::Receiver<bool>) -> Stop {
        Stop {
            peer: Some(peer),
            ..self
        }
    }

    /// Resolves once stopped (a dropped sender counts as stopped).
    pub async fn wait(&mut self) {
        let global = self.global.wait_for(|stopped| *stopped);
        match &mut self.peer {
            None => {
                let _ = global.await;
            }
            Some(peer) => {
                tokio::select! {
                    _ = global => {}
                    _ = peer.wait_for(|stopped| *stopped) => {}
                }
            }
        }
    }
}

fn is_tls_alert(code: quinn::TransportErrorCode) -> bool {
    u64::from(code) & !0xff == 0x100
}

enum DialFailure {
    /// Certificates disagree (either side refused the other): a configuration problem.
    Refused(String),
    /// Anything else: the peer is down, unreachable or slow.
    Unreachable(String),
}

async fn dial(
    endpoint: &Endpoint,
    addr: SocketAddr,
    peer: &NodeId,
    limit: Duration,
) -> Result<Connection, DialFailure> {
    let connecting = endpoint
        .connect(addr, peer.as_str())
        .map_err(|e| DialFailure::Unreachable(e.to_string()))?;
    match tokio::time::timeout(limit, connecting).await {
        Err(_) => Err(DialFailure::Unreachable(format!(
            "no handshake within {limit:?}"
        ))),
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(match refusal(&e) {
            Some(reason) => DialFailure::Refused(reason),
            None => DialFailure::Unreachable(e.to_string()),
        }),
    }
}

/// Why the certificates of a connection's two ends disagree, when that is how it ended.
fn refusal(error: &ConnectionError) -> Option<String> {
    match error {
        ConnectionError::TransportError(e) if is_tls_alert(e.code) => {
            Some(format!("its certificate was refused here: {e}"))
        }
        ConnectionError::ConnectionClosed(c) if is_tls_alert(c.error_code) => {
            Some(format!("it refused our certificate: {c}"))
        }
        ConnectionError::ApplicationClosed(c) if c.error_code == close_code::REJECTED.into() => {
            Some(format!(
                "it refused our certificate: {}",
                String::from_utf8_lossy(&c.reason)
            ))
        }
        _ => None,
    }
}

/// Keeps the pair's connection with `peer` up until the peer is removed or the mesh stops:
/// dials whenever the pair has none. The lower node id dials at once; the higher one too
/// when it starts (it may have restarted, and the lower one would only notice on its next
/// packet), but later waits `DIAL_GRACE` first, so that when both lose their connection only
/// one usually dials. When both do, `Shared::install` keeps one connection by a rule both
/// ends agree on.
pub(super) async fn dial_loop(shared: Arc<Shared>, peer: NodeId, generation: u64, stop: Stop) {
    let mut stop = stop;
    let Some(mut linked) = shared.linked(&peer, generation) else {
        return;
    };
    let i_dial_first = shared.me < peer;
    let mut dialed_before = false;
    let mut pause = shared.redial_every;
    let mut down_since = Instant::now();
    let mut warned = false;
    // The last dial timed out or could not reach the peer.
    let mut silent = false;
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            result = linked.wait_for(|up| !*up) => if result.is_err() { break },
        }
        if !i_dial_first && dialed_before && !shared.unparking(&peer, generation) {
            tokio::select! {
                _ = stop.wait() => break,
                _ = linked.wait_for(|up| *up) => continue,
                _ = tokio::time::sleep(DIAL_GRACE) => {}
            }
        }
        // Few handshakes at once (see `MAX_CONCURRENT_HANDSHAKES`, and `turns` for peers
        // that did not answer); the pair may have got its connection, accepted, while this one
        // waited for its turn.
        let turn = tokio::select! {
            _ = stop.wait() => break,
            turn = shared.turns.dial(silent) => turn,
        };
        if *linked.borrow() {
            // As if this dial had been made: the pair is connected, which is what the start's
            // dial of the higher id is for; later losses wait `DIAL_GRACE` as usual.
            dialed_before = true;
            continue;
        }
        let (Some(addr), Some(endpoint)) = (shared.peer_addr(&peer, generation), shared.endpoint())
        else {
            break;
        };
        dialed_before = true;
        // Boxed, like the link below: this task lives as long as the peer, mostly waiting,
        // and a future holds room for its largest state (a node holds one per peer).
        let attempt = Box::pin(dial(&endpoint, addr, &peer, shared.handshake_timeout));
        let result = tokio::select! {
            _ = stop.wait() => break,
            result = attempt => result,
        };
        drop((endpoint, turn));
        if shared.shutting_down() {
            break;
        }
        silent = matches!(result, Err(DialFailure::Unreachable(_)));
        match result {
            Ok(conn) => {
                if warned {
                    tracing::info!(peer = %peer, %addr, "peer reachable again");
                }
                let on_probation = pause > shared.redial_every;
                let dialed = Dialed {
                    generation,
                    on_probation,
                };
                let ran = Box::pin(run_link(&shared, &peer, conn, Some(dialed), &mut stop)).await;
                pause = match ran {
                    Ran::Refused => (pause * 2).clamp(shared.redial_every, REFUSED_PAUSE_MAX),
                    // It was the pair's connection for a while and ended: the peer restarted,
                    // timed out or was reset. Dial again at once.
                    Ran::Linked(lasted) if lasted > shared.redial_every => Duration::ZERO,
                    _ => shared.redial_every,
                };
                down_since = Instant::now();
                warned = false;
            }
            Err(DialFailure::Refused(reason)) => {
                bump(&shared.counters.dial_failures);
                pause = (pause * 2).clamp(shared.redial_every, REFUSED_PAUSE_MAX);
                if shared.loud(format!("refused {peer} {addr} {reason}")) {
                    tracing::warn!(peer = %peer, %addr, %reason, "cannot connect to peer");
                } else {
                    tracing::debug!(peer = %peer, %addr, %reason, "cannot connect to peer");
                }
            }
            Err(DialFailure::Unreachable(reason)) => {
                bump(&shared.counters.dial_failures);
                pause = shared.redial_every;
                // Peers start at different times: only an outage that outlasts the idle
                // timeout is worth a warning, and one per outage is enough.
                if !warned && down_since.elapsed() >= shared.idle_timeout {
                    warned = true;
                    tracing::warn!(peer = %peer, %addr, %reason, "peer unreachable");
                } else {
                    tracing::debug!(peer = %peer, %addr, %reason, "dial failed");
                }
            }
        }
        if pause.is_zero() {
            pause = shared.redial_every;
            continue;
        }
        tokio::select! {
            _ = stop.wait() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// A connection this node dialed: for the slot of `generation`, after a refusal when
/// `on_probation`.
struct Dialed {
    generation: u64,
    on_probation: bool,
}

/// How a connection ended.
enum Ran {
    /// The peer refused our certificate.
    Refused,
    /// It was the pair's connection for this long.
    Linked(Duration),
    /// The pair kept another connection, the peer is gone, or the mesh stops.
    Unused,
}

/// Serves a connection with `peer` (`dialed` by this node, or accepted) until it ends, as
/// the pair's connection if its slot takes it.
///
/// In TLS 1.3 the dialer finishes its handshake before the peer has judged its certificate,
/// so a refusal arrives just after "connected". After a refusal (`on_probation`), the next
/// connection is offered only once it has stayed open for a handshake timeout: a node that
/// keeps being refused does not flap between PeerConnected and PeerLost.
async fn run_link(
    shared: &Arc<Shared>,
    peer: &NodeId,
    conn: Connection,
    dialed: Option<Dialed>,
    stop: &mut Stop,
) -> Ran {
    shared.track(&conn);
    let addr = conn.remote_address();
    let admitted = !dialed.as_ref().is_some_and(|d| d.on_probation)
        || tokio::select! {
            _ = stop.wait() => false,
            _ = conn.closed() => false,
            _ = tokio::time::sleep(shared.handshake_timeout) => true,
        };
    let generation = dialed.as_ref().map(|d| d.generation);
    let install = if admitted {
        shared.install(peer, generation, &conn, dialed.is_some())
    } else {
        Install::Gone
    };
    let mut ran = Ran::Unused;
    let mut lost = false;
    match install {
        Install::Installed { session, replaced } => {
            let since = Instant::now();
            // The peer opens its sessions once it has identified us too: probes sent before
            // would be dropped, so the peer counts as connected once it said so (or after a
            // bounded wait, should that packet be lost). A replacement keeps the peer
            // connected (it restarted; its answers resume as soon as it is ready).
            let ready = replaced
                || match &session {
                    Some(opened) => tokio::select! {
                        _ = stop.wait() => false,
                        _ = conn.closed() => false,
                        _ = opened.ready.notified() => true,
                        _ = tokio::time::sleep(PROBE_READY_WAIT) => true,
                    },
                    None => true,
                };
            if ready && shared.announce(peer, &conn) {
                tracing::info!(peer = %peer, %addr, "connected to peer");
                shared.emit(MeshEvent::PeerConnected(peer.clone()));
            } else if replaced {
                tracing::debug!(peer = %peer, %addr, "the pair's connection replaced");
            }
            let served = if ready {
                serve(shared, &conn, peer, stop.clone()).await
            } else {
                Served::Stopped
            };
            if served == Served::Idle {
                conn.close(
                    close_code::PARKED.into(),
                    b"idle: the pair speaks through probes",
                );
            }
            // A quiet pair parks unless this end closed the connection for a reason of its
            // own (readdressed, stopping) or the certificates disagree (dial again, with the
            // refusal's backoff): the peer ended it (parked, shutting down, restarted) or it
            // timed out, and a peer that comes back dials again.
            let may_park = served == Served::Idle
                || (served == Served::Ended
                    && match conn.close_reason() {
                        Some(ConnectionError::LocallyClosed) => false,
                        Some(reason) => refusal(&reason).is_none(),
                        None => true,
                    });
            let sessions = session.map(|opened| opened.discriminators);
            match shared.unlink(peer, &conn, sessions, may_park) {
                Unlinked::Lost => lost = true,
                Unlinked::Parked => {
                    tracing::debug!(peer = %peer, %addr, "the pair's connection parked: probes only");
                }
                Unlinked::NotLinked => {}
            }
            ran = Ran::Linked(since.elapsed());
        }
        Install::Kept => {
            tracing::debug!(peer = %peer, %addr, "the pair keeps its connection dialed by the lower id");
            tokio::select! {
                _ = serve(shared, &conn, peer, stop.clone()) => {}
                _ = tokio::time::sleep(LINGER) => {}
            }
            conn.close(
                close_code::REPLACED.into(),
                b"the pair keeps the connection dialed by the lower node id",
            );
        }
        // Removed from the peer list between the caller's identification and now.
        Install::Gone if dialed.is_none() && !shared.shutting_down() => {
            reject(shared, &conn, addr, IdentityError::NotAPeer(peer.clone()));
        }
        Install::Gone => {}
    }
    let ended = conn.close_reason();
    close_when_done(shared, &conn);
    shared.untrack(&conn);
    if shared.shutting_down() {
        return Ran::Unused;
    }
    let refused = ended.as_ref().and_then(refusal);
    if let Some(reason) = &refused {
        if shared.loud(format!("refused-by {peer} {reason}")) {
            tracing::warn!(peer = %peer, %addr, %reason, "peer refused this node");
        } else {
            tracing::debug!(peer = %peer, %addr, %reason, "peer refused this node");
        }
    } else if lost {
        let reason = ended.as_ref().map(|r| r.to_string()).unwrap_or_default();
        tracing::info!(peer = %peer, %addr, %reason, "lost peer");
    }
    if lost {
        shared.emit(MeshEvent::PeerLost(peer.clone()));
    }
    if refused.is_some() && dialed.is_some() {
        return Ran::Refused;
    }
    ran
}

/// Accepts callers until the endpoint closes. A caller whose source address is not yet
/// validated gets a QUIC Retry (stateless: it costs this node nothing to send, and a caller
/// spoofing its source never sees it); a validated one gets a handshake if the meter admits
/// its source IP, and is refused before any cryptography otherwise.
pub(super) async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint, mut stop: Stop) {
    loop {
        let incoming = tokio::select! {
            _ = stop.wait() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let Some(incoming) = admit(&shared, incoming) else {
            continue;
        };
        let task_shared = shared.clone();
        // Boxed: an async fn keeps its arguments for its whole life, and the attempt is
        // large, while the task lives as long as the connection.
        let incoming = Box::new(incoming);
        shared.spawn(move |stop| handle_incoming(task_shared, incoming, stop));
    }
}

/// The attempt if it may go on to a handshake; otherwise it was answered (Retry, refusal).
fn admit(shared: &Shared, incoming: Incoming) -> Option<Incoming> {
    let addr = incoming.remote_address();
    if !incoming.remote_address_validated() && incoming.may_retry() {
        bump(&shared.counters.address_validations);
        if let Err(e) = incoming.retry() {
            e.into_incoming().ignore();
        }
        return None;
    }
    match shared.admit(addr.ip()) {
        Ok(()) => Some(incoming),
        Err(why) => {
            bump(&shared.counters.throttled_handshakes);
            let what = match why {
                Throttled::SourceIp => "too many handshakes from this address",
                Throttled::Global => "too many handshakes overall",
            };
            if shared.loud(format!("throttled {} {what}", addr.ip())) {
                tracing::warn!(%addr, reason = what, "mesh connection attempt refused");
            } else {
                tracing::debug!(%addr, reason = what, "mesh connection attempt refused");
            }
            incoming.refuse();
            None
        }
    }
}

fn refuse(shared: &Shared, addr: SocketAddr, reason: &str) {
    bump(&shared.counters.rejected_handshakes);
    if shared.loud(format!("refuse {addr} {reason}")) {
        tracing::warn!(%addr, %reason, "refused a mesh connection");
    } else {
        tracing::debug!(%addr, %reason, "refused a mesh connection");
    }
}

async fn handle_incoming(shared: Arc<Shared>, incoming: Box<Incoming>, mut stop: Stop) {
    let addr = incoming.remote_address();
    // Few handshakes at once, as for dials (`MAX_CONCURRENT_HANDSHAKES`); meanwhile quinn
    // holds the attempt and the caller repeats its first packet.
    let turn = tokio::select! {
        _ = stop.wait() => return,
        turn = shared.turns.accept() => turn,
    };
    // Boxed: the handshake's state is large and done with once the link is served.
    let handshake = Box::pin(tokio::time::timeout(shared.handshake_timeout, *incoming));
    let conn = match tokio::select! {
        _ = stop.wait() => return,
        result = handshake => result,
    } {
        Err(_) => {
            tracing::debug!(%addr, "incoming handshake timed out");
            return;
        }
        Ok(Err(ConnectionError::TransportError(e))) if is_tls_alert(e.code) => {
            refuse(&shared, addr, &e.to_string());
            return;
        }
        // A caller that does not trust our certificate (another fleet's CA) aborts with an
        // alert: the handshake was refused all the same, and an operator wants to see it.
        Ok(Err(ConnectionError::ConnectionClosed(close))) if is_tls_alert(close.error_code) => {
            refuse(
                &shared,
                addr,
                &format!("the caller refused this node's certificate: {close}"),
            );
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "incoming handshake failed");
            return;
        }
        Ok(Ok(conn)) => conn,
    };
    drop(turn);
    let identified = identify_caller(&conn, &shared.me, |node| shared.is_peer(node));
    let peer = match identified {
        Ok(peer) => peer,
        Err(why) => {
            shared.track(&conn);
            reject(&shared, &conn, addr, why);
            shared.untrack(&conn);
            return;
        }
    };
    tracing::debug!(peer = %peer, %addr, "accepted peer connection");
    run_link(&shared, &peer, conn, None, &mut stop).await;
}

/// Closes a connection we stopped serving (a no-op if it already ended), saying why.
fn close_when_done(shared: &Shared, conn: &Connection) {
    let why: &[u8] = if shared.shutting_down() {
        b"shutdown"
    } else {
        b""
    };
    conn.close(close_code::NORMAL.into(), why);
}

fn reject(shared: &Shared, conn: &Connection, addr: SocketAddr, why: IdentityError) {
    let reason = why.to_string();
    conn.close(close_code::REJECTED.into(), reason.as_bytes());
    refuse(shared, addr, &reason);
}

/// Why `serve` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    /// The connection ended.
    Ended,
    /// The mesh or the peer's slot stopped.
    Stopped,
    /// A quiet pair's connection carried no message for `park_after`.
    Idle,
}

/// Reads datagrams and streams from `conn` until it ends, the mesh (or peer) stops, or a
/// quiet pair's connection idles.
async fn serve(shared: &Arc<Shared>, conn: &Connection, peer: &NodeId, stop: Stop) -> Served {
    let mut stop = stop;
    let mut readers = JoinSet::new();
    let park_check = tokio::time::sleep(shared.park_after);
    tokio::pin!(park_check);
    loop {
        tokio::select! {
            _ = stop.wait() => return Served::Stopped,
            _ = &mut park_check => {
                let quiet_for = shared.quiet_for(peer, conn);
                match quiet_for {
                    Some(idle) if idle >= shared.park_after && readers.is_empty() => {
                        return Served::Idle;
                    }
                    Some(idle) => {
                        let left = shared.park_after.saturating_sub(idle);
                        park_check.as_mut().reset(tokio::time::Instant::now() + left.max(Duration::from_millis(10)));
                    }
                    None => park_check.as_mut().reset(tokio::time::Instant::now() + shared.park_after),
                }
            }
            datagram = conn.read_datagram() => match datagram {
                Ok(bytes) => on_datagram(shared, peer, &bytes),
                Err(_) => break,
            },
            stream = conn.accept_uni() => match stream {
                Ok(recv) => {
                    readers.spawn(read_message(shared.clone(), peer.clone(), recv, stop.clone()));
                }
                Err(_) => break,
            },
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
    // The connection is gone; messages already read in full are still handed over.
    while readers.join_next().await.is_some() {}
    Served::Ended
}

/// The mesh sends no QUIC datagrams (probes travel beside QUIC, see `probe_socket`) but an
/// empty one, the liveness check of `Shared::install`: anything else is a peer speaking
/// another protocol version, or garbage.
fn on_datagram(shared: &Shared, peer: &NodeId, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    bump(&shared.counters.malformed_datagrams);
    tracing::debug!(peer = %peer, len = bytes.len(), "QUIC datagram dropped: the mesh uses none");
}

async fn read_message(shared: Arc<Shared>, peer: NodeId, mut recv: quinn::RecvStream, stop: Stop) {
    let mut stop = stop;
    let c = &shared.counters;
    let read = tokio::time::timeout(STREAM_READ_TIMEOUT, recv.read_to_end(wire::MAX_MESSAGE));
    let bytes = match tokio::select! {
        _ = stop.wait() => return,
        result = read => result,
    } {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadToEndError::TooLong)) => {
            bump(&c.oversized_messages);
            tracing::debug!(peer = %peer, limit = wire::MAX_MESSAGE, "oversized message dropped");
            let _ = recv.stop(0u32.into());
            return;
        }
        Ok(Err(ReadToEndError::Read(e))) => {
            tracing::debug!(peer = %peer, error = %e, "message stream broken");
            return;
        }
        Err(_) => {
            bump(&c.malformed_messages);
            tracing::debug!(peer = %peer, "message stream not finished in time");
            let _ = recv.stop(0u32.into());
            return;
        }
    };
    match decode_message(&bytes) {
        Ok(msg) => {
            bump(&c.messages_received);
            shared.heard_message(&peer);
            let event = MeshEvent::Message {
                from: peer.clone(),
                msg,
            };
            if !shared.inbox.push(&peer, event, bytes.len()) {
                dropped(&shared, &peer);
            }
        }
        Err(WireError::TooLarge { .. }) => bump(&c.oversized_messages),
        Err(e) => {
            bump(&c.malformed_messages);
            tracing::debug!(peer = %peer, error = %e, len = bytes.len(), "malformed message dropped");
        }
    }
}

/// Says (at most once a minute per peer) that a peer's queue into the node overflows.
fn dropped(shared: &Shared, peer: &NodeId) {
    if shared.loud(format!("queue-full {peer}")) {
        tracing::warn!(
            peer = %peer,
            limit = super::inbox::PEER_QUEUE_EVENTS,
            "peer sends faster than this node reads: its excess is dropped"
        );
    }
}
