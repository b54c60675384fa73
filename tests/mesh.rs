//! The QUIC mesh over loopback: probes and messages between fleet members, refusal of
//! strangers, resilience to garbage frames, a clean shutdown that frees the port (also while a
//! connection over a slow path still drains), one connection per pair of
//! nodes for both directions, and a peer that crashed and restarted (either end of its pair)
//! reachable again at once although idle connections live 30 s.

use quorate::core::types::{NodeId, Opinion};
use quorate::net::{certs, tls, CertPaths, Mesh, MeshConfig, MeshEvent, MeshInbox, OutgoingProbe};
use quorate::relay::Relay;
use quorate::wire::{self, Datagram, Message, PeerStatus};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tempfile::TempDir;

#[path = "common/crashable.rs"]
mod crashable;
use crashable::crashable;

const WAIT: Duration = Duration::from_secs(10);

fn n(id: &str) -> NodeId {
    NodeId::from(id)
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// A loopback address nobody listens on right now.
fn free_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

fn config(
    me: &str,
    bind: SocketAddr,
    certs: CertPaths,
    peers: &[(&str, SocketAddr)],
) -> MeshConfig {
    MeshConfig {
        me: n(me),
        bind,
        peers: peers.iter().map(|(id, addr)| (n(id), *addr)).collect(),
        certs,
        answer_probes: false,
        idle_timeout: Duration::from_secs(3),
        keep_alive: Duration::from_millis(500),
        redial_every: Duration::from_millis(100),
        quiet_peers: Vec::new(),
        park_after: Duration::from_secs(5),
    }
}

fn fleet(nodes: &[&str]) -> TempDir {
    let dir = TempDir::new().unwrap();
    let ids: Vec<NodeId> = nodes.iter().map(|id| n(id)).collect();
    certs::init(dir.path(), &ids, false).unwrap();
    dir
}

fn paths(dir: &Path, node: &str) -> CertPaths {
    CertPaths::in_dir(dir, &n(node))
}

fn status(from: &str) -> Message {
    Message::Status(PeerStatus {
        node: n(from),
        fleet_hash: "f00d".into(),
        opinions: vec![],
        verdicts: vec![],
        maintenance: vec![],
    })
}

async fn start(cfg: MeshConfig) -> (Mesh, MeshInbox) {
    Mesh::start(cfg).await.unwrap()
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    eventually_within(what, WAIT, cond).await
}

async fn eventually_within(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next event satisfying `pick`, skipping others; None after `within`.
async fn next_event<T>(
    rx: &mut MeshInbox,
    within: Duration,
    mut pick: impl FnMut(MeshEvent) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => {
                if let Some(found) = pick(event) {
                    return Some(found);
                }
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

fn message_from(event: MeshEvent) -> Option<(NodeId, Message)> {
    match event {
        MeshEvent::Message { from, msg } => Some((from, msg)),
        _ => None,
    }
}

fn answer(event: MeshEvent) -> Option<(NodeId, u64, u64)> {
    match event {
        MeshEvent::ProbeAnswer {
            from,
            nonce,
            sent_us,
            ..
        } => Some((from, nonce, sent_us)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_and_messages_round_trip_between_fleet_members() {
    init_tracing();
    let dir = fleet(&["pinger", "indicator"]);
    let (pa, ia) = (free_addr(), free_addr());
    let (pinger, mut p_rx) = start(config(
        "pinger",
        pa,
        paths(dir.path(), "pinger"),
        &[("indicator", ia)],
    ))
    .await;
    let mut icfg = config(
        "indicator",
        ia,
        paths(dir.path(), "indicator"),
        &[("pinger", pa)],
    );
    icfg.answer_probes = true;
    let (indicator, mut i_rx) = start(icfg).await;
    let (p, i) = (n("pinger"), n("indicator"));

    let connected = next_event(&mut p_rx, WAIT, |e| match e {
        MeshEvent::PeerConnected(node) => Some(node),
        _ => None,
    })
    .await;
    assert_eq!(connected, Some(i.clone()));
    assert_eq!(pinger.connected(), vec![i.clone()]);
    eventually("indicator to dial the pinger", || {
        indicator.connected() == vec![p.clone()]
    })
    .await;

    for nonce in 1..=20u64 {
        assert!(pinger.send_probe(&i, nonce, nonce * 1000));
    }
    let mut nonces = Vec::new();
    while nonces.len() < 20 {
        let (from, nonce, sent_us) = next_event(&mut p_rx, WAIT, answer)
            .await
            .expect("an answer to every probe");
        assert_eq!(from, i);
        assert_eq!(sent_us, nonce * 1000, "sent_us echoed untouched");
        nonces.push(nonce);
    }
    nonces.sort();
    assert_eq!(nonces, (1..=20).collect::<Vec<_>>());

    pinger.send(&i, &status("pinger"));
    let got = next_event(&mut i_rx, WAIT, message_from).await;
    assert_eq!(got, Some((p.clone(), status("pinger"))));
    indicator.send(&p, &status("indicator"));
    let got = next_event(&mut p_rx, WAIT, message_from).await;
    assert_eq!(got, Some((i.clone(), status("indicator"))));

    // Bytes on the wire per probe: only probes (and the ACKs they carry) flow in this window,
    // once the race of dials at the start is settled: the pinger (the higher id) dialed too
    // when it started, and its connection, completed when the indicator came up, is dropped
    // after lingering a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    eventually("one connection each", || {
        pinger.live_connections() == 1 && indicator.live_connections() == 1
    })
    .await;
    const PROBES: u64 = 200;
    let before = pinger.stats();
    for k in 0..PROBES {
        assert!(pinger.send_probe(&i, 1000 + k, u64::MAX - k));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut answered = 0;
    while answered < PROBES {
        next_event(&mut p_rx, WAIT, answer)
            .await
            .expect("an answer to every probe");
        answered += 1;
    }
    let after = pinger.stats();
    let datagrams = after.udp_tx_datagrams - before.udp_tx_datagrams;
    let bytes = after.udp_tx_bytes - before.udp_tx_bytes;
    let per_datagram = bytes as f64 / datagrams as f64;
    println!(
        "{PROBES} probes: pinger sent {datagrams} UDP datagrams, {bytes} bytes: \
         {per_datagram:.1} bytes per datagram, {:.1} bytes per probe",
        bytes as f64 / PROBES as f64
    );
    assert!(
        datagrams >= PROBES,
        "{datagrams} datagrams for {PROBES} probes"
    );
    assert!(
        per_datagram <= 80.0,
        "{per_datagram:.1} bytes per probe datagram"
    );

    let (ps, is) = (pinger.stats(), indicator.stats());
    assert_eq!(ps.probes_sent, 20 + PROBES);
    assert_eq!(ps.answers_received, 20 + PROBES);
    assert_eq!(is.probes_answered_by_me, 20 + PROBES);
    assert_eq!((ps.messages_sent, ps.messages_received), (1, 1));
    assert_eq!((is.messages_sent, is.messages_received), (1, 1));
    assert_eq!(is.rejected_handshakes + ps.rejected_handshakes, 0);
    assert_eq!(ps.malformed_datagrams + ps.malformed_messages, 0);

    pinger.shutdown().await;
    indicator.shutdown().await;
}

/// Sends probes and messages from `mesh` to `to` for `period`.
async fn keep_trying(mesh: &Mesh, to: &NodeId, from: &str, period: Duration) {
    let deadline = Instant::now() + period;
    let mut nonce = 0;
    while Instant::now() < deadline {
        nonce += 1;
        mesh.send_probe(to, nonce, 0);
        mesh.send(to, &status(from));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certified_by_another_ca_is_refused_both_ways() {
    init_tracing();
    let fleet_dir = fleet(&["a", "b"]);
    let foreign_dir = fleet(&["b"]);
    let (aa, ba) = (free_addr(), free_addr());
    let mut acfg = config("a", aa, paths(fleet_dir.path(), "a"), &[("b", ba)]);
    acfg.answer_probes = true;
    let (a, mut a_rx) = start(acfg).await;
    // Trusts the fleet CA (so it accepts a's server certificate), but its own certificate
    // for "b" comes from another CA.
    let forged = CertPaths {
        ca_cert: fleet_dir.path().join("ca.pem"),
        ..paths(foreign_dir.path(), "b")
    };
    let mut bcfg = config("b", ba, forged, &[("a", aa)]);
    bcfg.answer_probes = true;
    let (b, mut b_rx) = start(bcfg).await;

    keep_trying(&b, &n("a"), "b", Duration::from_millis(1500)).await;

    let (sa, sb) = (a.stats(), b.stats());
    assert!(sa.rejected_handshakes > 0, "a refused nothing: {sa:?}");
    assert!(
        sa.dial_failures > 0,
        "a accepted b's foreign server certificate"
    );
    assert_eq!(sa.messages_received, 0);
    assert_eq!(sa.probes_answered_by_me, 0);
    assert!(a.connected().is_empty());
    assert_eq!(sb.answers_received, 0);
    assert!(
        next_event(&mut a_rx, Duration::from_millis(100), message_from)
            .await
            .is_none()
    );
    assert!(next_event(&mut b_rx, Duration::from_millis(100), answer)
        .await
        .is_none());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_certificate_for_a_node_outside_the_peer_list_is_refused_until_it_joins() {
    init_tracing();
    let dir = fleet(&["a", "b"]);
    // Issued later by the same CA: valid, but a is not told about x.
    certs::issue(dir.path(), &n("x")).unwrap();
    let (aa, xa) = (free_addr(), free_addr());
    let mut acfg = config("a", aa, paths(dir.path(), "a"), &[("b", free_addr())]);
    acfg.answer_probes = true;
    let (a, mut a_rx) = start(acfg).await;
    let (x, mut x_rx) = start(config("x", xa, paths(dir.path(), "x"), &[("a", aa)])).await;

    keep_trying(&x, &n("a"), "x", Duration::from_millis(1500)).await;

    let sa = a.stats();
    assert!(sa.rejected_handshakes > 0, "a refused nothing: {sa:?}");
    assert_eq!(sa.messages_received, 0);
    assert_eq!(sa.probes_answered_by_me, 0);
    assert_eq!(x.stats().answers_received, 0);
    assert!(
        next_event(&mut a_rx, Duration::from_millis(100), message_from)
            .await
            .is_none()
    );
    assert!(next_event(&mut x_rx, Duration::from_millis(100), answer)
        .await
        .is_none());

    // A fleet reload that adds x lets it in.
    a.set_peers(vec![(n("b"), free_addr()), (n("x"), xa)]);
    eventually("x to be admitted", || {
        x.connected() == vec![n("a")] && x.send_probe(&n("a"), 7, 7)
    })
    .await;
    assert_eq!(
        next_event(&mut x_rx, WAIT, answer)
            .await
            .map(|(from, ..)| from),
        Some(n("a"))
    );
    x.send(&n("a"), &status("x"));
    assert_eq!(
        next_event(&mut a_rx, WAIT, message_from).await,
        Some((n("x"), status("x")))
    );
    a.shutdown().await;
    x.shutdown().await;
}

/// Deterministic filler bytes (xorshift), so a failure reproduces.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

async fn send_stream(conn: &quinn::Connection, bytes: &[u8]) {
    let mut stream = conn.open_uni().await.unwrap();
    // The receiver may stop an oversized stream before it is all written.
    let _ = stream.write_all(bytes).await;
    let _ = stream.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_are_counted_and_the_connection_keeps_working() {
    init_tracing();
    let dir = fleet(&["a", "b"]);
    let aa = free_addr();
    let mut acfg = config("a", aa, paths(dir.path(), "a"), &[("b", free_addr())]);
    acfg.answer_probes = true;
    let (a, mut a_rx) = start(acfg).await;

    // A bare QUIC client holding b's valid certificate.
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(tls::client_config(&paths(dir.path(), "b")).unwrap());
    let conn = endpoint.connect(aa, "a").unwrap().await.unwrap();

    let probe = wire::encode_datagram(&Datagram::Probe {
        nonce: 5,
        sent_us: 6,
        opinion: Opinion::Up,
    });
    // The mesh carries no QUIC datagrams (probes travel beside QUIC) but empty ones, its
    // liveness checks: even a well-formed old-style probe datagram is garbage.
    conn.send_datagram(Vec::new().into()).unwrap();
    let bad_datagrams = [
        probe.clone(),
        probe[..probe.len() - 1].to_vec(),
        vec![wire::WIRE_VERSION; wire::MAX_DATAGRAM + 20],
        noise(1, 30),
        [&[wire::WIRE_VERSION][..], &noise(2, 20)].concat(),
    ];
    for d in &bad_datagrams {
        conn.send_datagram(d.clone().into()).unwrap();
    }
    let message = wire::encode_message(&status("b")).expect("encodes");
    send_stream(&conn, &message[..message.len() / 2]).await;
    send_stream(&conn, &[&[9u8][..], &message[1..]].concat()).await;
    send_stream(&conn, &[&[wire::WIRE_VERSION][..], &noise(3, 500)].concat()).await;
    send_stream(&conn, &noise(4, 500)).await;
    send_stream(&conn, &vec![wire::WIRE_VERSION; wire::MAX_MESSAGE + 1000]).await;

    eventually("garbage to be counted", || {
        let s = a.stats();
        s.malformed_datagrams >= bad_datagrams.len() as u64
            && s.malformed_messages >= 4
            && s.oversized_messages >= 1
    })
    .await;
    let s = a.stats();
    assert_eq!(s.malformed_datagrams, bad_datagrams.len() as u64);
    assert_eq!((s.malformed_messages, s.oversized_messages), (4, 1));

    // The same connection still carries a good message.
    send_stream(&conn, &message).await;
    assert_eq!(
        next_event(&mut a_rx, WAIT, message_from).await,
        Some((n("b"), status("b")))
    );
    assert!(conn.close_reason().is_none());
    assert_eq!(a.stats().rejected_handshakes, 0);

    conn.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_port_and_a_restarted_node_is_redialed() {
    init_tracing();
    let dir = fleet(&["a", "b"]);
    let (aa, ba) = (free_addr(), free_addr());
    let (a, _a_rx) = start(config("a", aa, paths(dir.path(), "a"), &[("b", ba)])).await;
    let (b, mut b_rx) = start(config("b", ba, paths(dir.path(), "b"), &[("a", aa)])).await;
    eventually("a and b to connect", || {
        a.connected() == vec![n("b")] && b.connected() == vec![n("a")]
    })
    .await;

    let started = Instant::now();
    a.shutdown().await;
    println!("shutdown took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3));
    a.shutdown().await; // idempotent
    assert!(!a.send_probe(&n("b"), 1, 1));
    drop(std::net::UdpSocket::bind(aa).expect("port released by shutdown"));

    let lost = next_event(&mut b_rx, WAIT, |e| match e {
        MeshEvent::PeerLost(node) => Some(node),
        _ => None,
    })
    .await;
    assert_eq!(lost, Some(n("a")));

    let (a2, _a2_rx) = start(config("a", aa, paths(dir.path(), "a"), &[("b", ba)])).await;
    let back = next_event(&mut b_rx, WAIT, |e| match e {
        MeshEvent::PeerConnected(node) => Some(node),
        _ => None,
    })
    .await;
    assert_eq!(back, Some(n("a")));
    a2.shutdown().await;
    b.shutdown().await;
    drop(std::net::UdpSocket::bind(ba).expect("port released by shutdown"));
}

/// A closed connection drains for three of its probe timeouts, which grow with its round-trip
/// time, and holds the socket meanwhile: over a path with a 2 s round trip, about 18 s. The
/// shutdown still frees the port within its bound, for a restart in the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_frees_the_port_while_a_connection_over_a_slow_path_still_drains() {
    init_tracing();
    let dir = fleet(&["a", "b"]);
    let (aa, ba) = (free_addr(), free_addr());
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let relay = Relay::start(vec![(any, aa), (any, ba)])
        .await
        .expect("the relay binds");
    relay.set_delay(Duration::from_secs(1));
    let (pa, pb) = (relay.public_addrs()[0], relay.public_addrs()[1]);
    let cfg = |me: &str, bind, peer: (&str, SocketAddr)| {
        let mut cfg = long_timers(config(me, bind, paths(dir.path(), me), &[peer]));
        // Handshakes time out after five of these: a handshake over the relay takes 3 s.
        cfg.redial_every = Duration::from_secs(1);
        cfg
    };
    let (a, _a_rx) = start(cfg("a", aa, ("b", pb))).await;
    let (b, _b_rx) = start(cfg("b", ba, ("a", pa))).await;
    // A handshake takes 3 s here, and a dial may time out (5 s) before one succeeds.
    eventually_within(
        "a and b to connect over the relay",
        Duration::from_secs(30),
        || a.connected() == vec![n("b")] && b.connected() == vec![n("a")],
    )
    .await;

    let started = Instant::now();
    a.shutdown().await;
    let took = started.elapsed();
    println!("shutdown took {took:?}");
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    drop(std::net::UdpSocket::bind(aa).expect("port released by shutdown"));
    b.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_the_mesh_and_frees_its_port() {
    init_tracing();
    let dir = fleet(&["a", "b"]);
    let (aa, ba) = (free_addr(), free_addr());
    let (a, _a_rx) = start(config("a", aa, paths(dir.path(), "a"), &[("b", ba)])).await;
    let (b, mut b_rx) = start(config("b", ba, paths(dir.path(), "b"), &[("a", aa)])).await;
    eventually("a and b to connect", || {
        a.connected() == vec![n("b")] && b.connected() == vec![n("a")]
    })
    .await;
    let a_clone = a.clone();
    drop(a);
    assert_eq!(a_clone.connected(), vec![n("b")], "a clone keeps the mesh");
    drop(a_clone);
    let lost = next_event(&mut b_rx, WAIT, |e| match e {
        MeshEvent::PeerLost(node) => Some(node),
        _ => None,
    })
    .await;
    assert_eq!(lost, Some(n("a")));
    eventually("a's port to be free", || {
        std::net::UdpSocket::bind(aa).is_ok()
    })
    .await;
    b.shutdown().await;
}

/// Every node a Pinger and an Indicator, each peer of the others.
async fn full_mesh(dir: &TempDir, ids: &[&str], long: bool) -> Vec<(Mesh, MeshInbox)> {
    let addrs: Vec<SocketAddr> = ids.iter().map(|_| free_addr()).collect();
    let mut nodes = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let peers: Vec<(&str, SocketAddr)> = ids
            .iter()
            .zip(&addrs)
            .filter(|(other, _)| *other != id)
            .map(|(other, addr)| (*other, *addr))
            .collect();
        let mut cfg = config(id, addrs[k], paths(dir.path(), id), &peers);
        cfg.answer_probes = true;
        if long {
            cfg = long_timers(cfg);
        }
        nodes.push(start(cfg).await);
    }
    nodes
}

/// Idle connections that live long: a stale one would linger for 30 s.
fn long_timers(mut cfg: MeshConfig) -> MeshConfig {
    cfg.idle_timeout = Duration::from_secs(30);
    cfg.keep_alive = Duration::from_secs(10);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_of_nodes_holds_exactly_one_connection_for_both_directions() {
    init_tracing();
    let ids = ["a", "b", "c"];
    let dir = fleet(&ids);
    let mut nodes = full_mesh(&dir, &ids, false).await;
    eventually("every pair to connect", || {
        nodes.iter().all(|(m, _)| m.connected().len() == 2)
    })
    .await;
    // Past the higher ids' dial grace and any race of dials: one connection per pair stays.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for ((mesh, _), id) in nodes.iter().zip(ids) {
        assert_eq!(
            mesh.live_connections(),
            2,
            "{id} holds one connection per peer"
        );
    }

    // Both directions of each pair carry probes and messages over that one connection.
    for from in 0..ids.len() {
        for to in 0..ids.len() {
            if from == to {
                continue;
            }
            let (sender, target) = (nodes[from].0.clone(), n(ids[to]));
            let nonce = (from * 10 + to) as u64;
            assert!(sender.send_probe(&target, nonce, 7));
            let got = next_event(&mut nodes[from].1, WAIT, answer).await;
            assert_eq!(got, Some((target.clone(), nonce, 7)), "{from} probes {to}");
            sender.send(&target, &status(ids[from]));
            let got = next_event(&mut nodes[to].1, WAIT, message_from).await;
            assert_eq!(got, Some((n(ids[from]), status(ids[from]))));
        }
    }
    for ((mesh, _), id) in nodes.iter().zip(ids) {
        assert_eq!(mesh.live_connections(), 2, "{id}: still one per peer");
        let s = mesh.stats();
        assert_eq!(s.malformed_datagrams, 0, "{id}: {s:?}");
    }
    for (mesh, _) in nodes.drain(..) {
        mesh.shutdown().await;
    }
}

/// `crashed` (one of a pair, with long idle timers) crashes and restarts on the same address:
/// both directions work again within a few seconds, over one connection.
async fn a_crashed_and_restarted_peer_is_reachable_again_promptly(crashed: &str) {
    init_tracing();
    let dir = fleet(&["a", "b"]);
    let other = if crashed == "a" { "b" } else { "a" };
    let (ca, oa) = (free_addr(), free_addr());
    let (stays, mut s_rx) = start(long_timers(config(
        other,
        oa,
        paths(dir.path(), other),
        &[(crashed, ca)],
    )))
    .await;
    let crashed_cfg = long_timers(config(
        crashed,
        ca,
        paths(dir.path(), crashed),
        &[(other, oa)],
    ));
    let first = tokio::task::spawn_blocking({
        let cfg = crashed_cfg.clone();
        move || crashable(cfg)
    })
    .await
    .unwrap();
    eventually("the pair to connect", || {
        stays.connected() == vec![n(crashed)]
    })
    .await;
    // Up for a while: nothing about the connection is young when the peer crashes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || drop(first))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (back, mut b_rx) = start(crashed_cfg).await;
    let restarted = Instant::now();

    // Messages each way, until one arrives each way.
    let (to_back, to_stays) = (n(crashed), n(other));
    let (mut heard_back, mut heard_stays) = (false, false);
    let deadline = restarted + Duration::from_secs(5);
    while !(heard_back && heard_stays) {
        assert!(
            Instant::now() < deadline,
            "{crashed} restarted: not reachable both ways within 5 s (idle timeout 30 s): \
             heard by the restarted node {heard_back}, by its peer {heard_stays}"
        );
        stays.send(&to_back, &status(other));
        back.send(&to_stays, &status(crashed));
        let pick = |e: MeshEvent| message_from(e).map(|(from, _)| from);
        let window = Duration::from_millis(100);
        heard_back |= next_event(&mut b_rx, window, pick).await == Some(to_stays.clone());
        heard_stays |= next_event(&mut s_rx, window, pick).await == Some(to_back.clone());
    }
    println!(
        "{crashed} reachable both ways {:?} after its restart",
        restarted.elapsed()
    );
    eventually("one connection each", || {
        stays.live_connections() == 1 && back.live_connections() == 1
    })
    .await;
    assert_eq!(stays.connected(), vec![to_back]);
    back.shutdown().await;
    stays.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_lower_id_which_dials_is_reachable_again_promptly() {
    a_crashed_and_restarted_peer_is_reachable_again_promptly("a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_higher_id_which_waits_to_be_dialed_is_reachable_again_promptly() {
    a_crashed_and_restarted_peer_is_reachable_again_promptly("b").await;
}

/// A Pinger's round as one batch: more probes than one `sendmmsg` chunk (64), to a dozen
/// Indicators, with a peer of the fleet that is down (no session) in the middle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_probes_to_many_peers_is_sent_and_answered_and_a_peer_without_session_is_reported(
) {
    init_tracing();
    const INDICATORS: usize = 12;
    const PROBES: usize = 150;
    let names: Vec<String> = (0..INDICATORS).map(|i| format!("ind-{i:02}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.extend(["down", "pinger"]);
    let dir = fleet(&all);
    let addrs: Vec<SocketAddr> = all.iter().map(|_| free_addr()).collect();
    let peers_of = |me: &str| -> Vec<(&str, SocketAddr)> {
        all.iter()
            .zip(&addrs)
            .filter(|(id, _)| **id != me)
            .map(|(id, addr)| (*id, *addr))
            .collect()
    };
    let pinger_addr = addrs[all.len() - 1];
    let (pinger, mut p_rx) = start(config(
        "pinger",
        pinger_addr,
        paths(dir.path(), "pinger"),
        &peers_of("pinger"),
    ))
    .await;
    let mut indicators = Vec::new();
    for (k, id) in names.iter().enumerate() {
        let mut cfg = config(
            id,
            addrs[k],
            paths(dir.path(), id),
            &[("pinger", pinger_addr)],
        );
        cfg.answer_probes = true;
        indicators.push(start(cfg).await);
    }
    let ids: Vec<NodeId> = names.iter().map(|id| n(id)).collect();
    eventually("every indicator connected", || {
        let connected = pinger.connected();
        ids.iter().all(|id| connected.contains(id))
    })
    .await;

    // Round-robin over the Indicators; the peer that is down sits in the second chunk. Each
    // Indicator is told its own opinion of its site.
    const DOWN_AT: usize = 70;
    let opinions = [
        Opinion::Unknown,
        Opinion::Up,
        Opinion::Suspect,
        Opinion::Down,
    ];
    let probes: Vec<OutgoingProbe> = (0..PROBES)
        .map(|k| {
            let to = if k == DOWN_AT {
                n("down")
            } else {
                ids[k % INDICATORS].clone()
            };
            OutgoingProbe {
                to,
                nonce: 5000 + k as u64,
                sent_us: 7 * k as u64,
                opinion: opinions[k % INDICATORS % 4],
            }
        })
        .collect();
    let before = pinger.stats();
    let not_sent = pinger.send_probes(&probes);
    assert_eq!(not_sent, vec![DOWN_AT], "only the probe without a session");
    let after = pinger.stats();
    let sent = (PROBES - 1) as u64;
    assert_eq!(after.probes_sent - before.probes_sent, sent);
    assert_eq!(after.send_failures - before.send_failures, 1);
    assert!(after.udp_tx_datagrams - before.udp_tx_datagrams >= sent);
    assert!(after.udp_tx_bytes - before.udp_tx_bytes >= sent * 52);

    let mut answered = Vec::new();
    while answered.len() < PROBES - 1 {
        let (from, nonce, sent_us) = next_event(&mut p_rx, WAIT, answer)
            .await
            .expect("an answer to every probe sent");
        let k = (nonce - 5000) as usize;
        assert_eq!(from, probes[k].to, "answered by the Indicator probed");
        assert_eq!(sent_us, 7 * k as u64, "sent_us echoed untouched");
        answered.push(k);
    }
    answered.sort_unstable();
    let expected: Vec<usize> = (0..PROBES).filter(|k| *k != DOWN_AT).collect();
    assert_eq!(answered, expected);
    let answered_by: u64 = indicators
        .iter()
        .map(|(m, _)| m.stats().probes_answered_by_me)
        .sum();
    assert_eq!(answered_by, sent);
    assert_eq!(pinger.stats().probe_unauthenticated, 0);
    // Each Indicator heard the Pinger, with the opinion its probes carried; once.
    for (i, (m, _)) in indicators.iter().enumerate() {
        let heard: Vec<_> = m
            .take_probes_heard()
            .into_iter()
            .map(|(from, _, opinion)| (from, opinion))
            .collect();
        assert_eq!(heard, [(n("pinger"), opinions[i % 4])]);
        assert!(m.take_probes_heard().is_empty(), "taken");
    }
    assert!(
        pinger.take_probes_heard().is_empty(),
        "no one probes the Pinger"
    );

    pinger.shutdown().await;
    for (m, _) in &indicators {
        m.shutdown().await;
    }
}

/// A hub with more peers than it handshakes with at once (`MAX_CONCURRENT_HANDSHAKES`, each
/// way) still connects to all of them, one connection each: the handshakes wait their turn
/// instead of failing. `hub_dials`: the hub has the lowest id and dials (its peers are up
/// first); otherwise the highest, and all its peers dial it at once (it is up first).
async fn a_hub_connects_to_more_peers_than_it_handshakes_with_at_once(hub_dials: bool) {
    init_tracing();
    const PEERS: usize = quorate::net::mesh::MAX_CONCURRENT_HANDSHAKES + 8;
    let hub = if hub_dials { "a" } else { "z" };
    let names: Vec<String> = (0..PEERS).map(|i| format!("p-{i:03}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push(hub);
    let dir = fleet(&all);
    // An address of its own for each node, reserved before any binds: ports of one IP
    // could be handed out twice.
    let own_addr = |k: usize| {
        let ip = std::net::Ipv4Addr::new(127, 0, 3 + (k / 250) as u8, (k % 250) as u8 + 1);
        let socket = std::net::UdpSocket::bind((ip, 0)).unwrap();
        socket.local_addr().unwrap()
    };
    let hub_addr = own_addr(PEERS);
    let peer_addrs: Vec<SocketAddr> = (0..PEERS).map(own_addr).collect();
    let listed: Vec<(&str, SocketAddr)> = names
        .iter()
        .map(String::as_str)
        .zip(peer_addrs.iter().copied())
        .collect();
    let hub_config = long_timers(config(hub, hub_addr, paths(dir.path(), hub), &listed));
    let mut hub_mesh = None;
    if !hub_dials {
        hub_mesh = Some(start(hub_config.clone()).await);
    }
    let mut peers = Vec::new();
    for (id, addr) in &listed {
        let cfg = long_timers(config(id, *addr, paths(dir.path(), id), &[(hub, hub_addr)]));
        peers.push(start(cfg).await);
    }
    if hub_dials {
        hub_mesh = Some(start(hub_config).await);
    }
    let (hub_mesh, _hub_rx) = hub_mesh.expect("hub started");
    // Generous: here all the peers' handshakes share this test's two threads, and the hub
    // meters callers from one source IP (`admission`).
    let deadline = Instant::now() + Duration::from_secs(40);
    while hub_mesh.connected().len() < PEERS {
        assert!(
            Instant::now() < deadline,
            "{} of {PEERS} peers connected",
            hub_mesh.connected().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the peers' dial grace: the pairs settled on one connection each.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hub_mesh.live_connections(), PEERS);
    assert_eq!(hub_mesh.connected().len(), PEERS);
    hub_mesh.shutdown().await;
    for (mesh, _) in &peers {
        mesh.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dialing_more_peers_than_it_handshakes_with_at_once_reaches_them_all() {
    a_hub_connects_to_more_peers_than_it_handshakes_with_at_once(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dialed_by_more_peers_than_it_handshakes_with_at_once_accepts_them_all() {
    a_hub_connects_to_more_peers_than_it_handshakes_with_at_once(false).await;
}

/// Drops every event already queued (waiting `quiet` for more).
async fn drain_events(rx: &mut MeshInbox, quiet: Duration) {
    while next_event(rx, quiet, Some).await.is_some() {}
}

fn peer_connected(event: MeshEvent) -> Option<NodeId> {
    match event {
        MeshEvent::PeerConnected(node) => Some(node),
        _ => None,
    }
}

/// Sends a probe every 20 ms until one is answered; false after `WAIT`.
async fn probe_until_answered(pinger: &Mesh, rx: &mut MeshInbox, to: &NodeId, first: u64) -> bool {
    let deadline = Instant::now() + WAIT;
    let mut nonce = first;
    while Instant::now() < deadline {
        pinger.send_probe(to, nonce, nonce);
        nonce += 1;
        if next_event(rx, Duration::from_millis(20), answer)
            .await
            .is_some()
        {
            return true;
        }
    }
    false
}

/// A pair that speaks only through probes (an Indicator-only node and a Pinger that probes
/// it) closes its connection once it carried no message for a while, and its probes go on
/// without it; a message dials again (both ends announce the peer anew, so that they send
/// their statuses) and the pair parks again; an end that restarts opens fresh sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_pair_parks_its_idle_connection_and_probes_on_without_it() {
    init_tracing();
    let dir = fleet(&["indicator", "pinger"]);
    let (pa, ia) = (free_addr(), free_addr());
    let quiet = |mut cfg: MeshConfig, peer: &str| {
        cfg.quiet_peers = vec![n(peer)];
        cfg.park_after = Duration::from_millis(300);
        cfg
    };
    let pcfg = config(
        "pinger",
        pa,
        paths(dir.path(), "pinger"),
        &[("indicator", ia)],
    );
    let (pinger, mut p_rx) = start(quiet(pcfg, "indicator")).await;
    let mut icfg = quiet(
        config(
            "indicator",
            ia,
            paths(dir.path(), "indicator"),
            &[("pinger", pa)],
        ),
        "pinger",
    );
    icfg.answer_probes = true;
    let (indicator, mut i_rx) = start(icfg.clone()).await;
    let (p, i) = (n("pinger"), n("indicator"));

    assert_eq!(
        next_event(&mut p_rx, WAIT, peer_connected).await,
        Some(i.clone())
    );
    eventually("the pair to park its connection", || {
        pinger.live_connections() == 0 && indicator.live_connections() == 0
    })
    .await;
    assert_eq!(
        pinger.connected(),
        vec![i.clone()],
        "a parked peer stays connected"
    );
    assert_eq!(indicator.connected(), vec![p.clone()]);
    assert!(pinger.stats().parked_connections + indicator.stats().parked_connections >= 1);

    // Probes without a connection, on the sessions the connection opened.
    for nonce in 1..=10u64 {
        assert!(
            pinger.send_probe(&i, nonce, nonce),
            "probe {nonce} sent while parked"
        );
    }
    for _ in 1..=10 {
        next_event(&mut p_rx, WAIT, answer)
            .await
            .expect("an answer to every probe while parked");
    }
    assert_eq!(pinger.live_connections(), 0, "probes do not dial");

    // A message dials again, arrives, and both ends announce the peer anew.
    drain_events(&mut p_rx, Duration::from_millis(50)).await;
    drain_events(&mut i_rx, Duration::from_millis(50)).await;
    indicator.send(&p, &status("indicator"));
    let got = next_event(&mut p_rx, WAIT, message_from).await;
    assert_eq!(got, Some((i.clone(), status("indicator"))));
    assert_eq!(
        next_event(&mut i_rx, WAIT, peer_connected).await,
        Some(p.clone())
    );
    assert!(
        probe_until_answered(&pinger, &mut p_rx, &i, 100).await,
        "probes answered on the new connection's sessions"
    );
    eventually("the pair to park again", || {
        pinger.live_connections() == 0 && indicator.live_connections() == 0
    })
    .await;
    assert!(probe_until_answered(&pinger, &mut p_rx, &i, 1_000).await);

    // The Indicator restarts while the pair is parked: its new process dials, and the
    // Pinger's probes are answered on the new sessions.
    indicator.shutdown().await;
    drop(i_rx);
    let (indicator, _i_rx) = start(icfg).await;
    assert!(
        probe_until_answered(&pinger, &mut p_rx, &i, 10_000).await,
        "the restarted Indicator answers"
    );
    eventually("the pair to park once more", || {
        pinger.live_connections() == 0 && indicator.live_connections() == 0
    })
    .await;
    let stats = pinger.stats();
    assert_eq!(stats.pending_dropped, 0);
    pinger.shutdown().await;
    indicator.shutdown().await;
}
