//! Probes are authenticated: a Pinger and an Indicator mesh on loopback, with a UDP relay on
//! the Pinger's path to the Indicator that records every datagram (an observer of the wire).
//! Real probes are answered through the relay; recorded probes and answers replayed,
//! reflected, relabelled or altered from an off-path socket are neither answered nor counted.
//! And a crashed Indicator that comes back is probed again at once, not after the connection's
//! idle timeout (its new connection tells the Pinger to re-dial).

use quorate::core::types::NodeId;
use quorate::net::probe::{self, Kind, PROBE_LEN};
use quorate::net::{certs, CertPaths, Mesh, MeshConfig, MeshEvent, MeshInbox, MeshStats};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::net::UdpSocket;

#[path = "common/crashable.rs"]
mod crashable;
use crashable::crashable;

const WAIT: Duration = Duration::from_secs(10);
/// How long to wait for something that must not happen.
const QUIET: Duration = Duration::from_millis(400);

fn n(id: &str) -> NodeId {
    NodeId::from(id)
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// A port nobody listens on right now, on 127.0.0.3: the relays bind 127.0.0.1, and one of
/// them could otherwise be given the port just released here before the mesh binds it.
fn free_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
    socket.local_addr().unwrap()
}

fn config(me: &str, bind: SocketAddr, dir: &TempDir, peer: (&str, SocketAddr)) -> MeshConfig {
    MeshConfig {
        me: n(me),
        bind,
        peers: vec![(n(peer.0), peer.1)],
        certs: CertPaths::in_dir(dir.path(), &n(me)),
        answer_probes: false,
        idle_timeout: Duration::from_secs(3),
        keep_alive: Duration::from_millis(500),
        redial_every: Duration::from_millis(100),
        quiet_peers: Vec::new(),
        park_after: Duration::from_secs(5),
    }
}

/// Datagrams the relay saw, in order.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// Forwards between whoever sends to the returned address and `to`, recording every
/// datagram; stops when the test's runtime ends.
async fn relay(to: SocketAddr, seen: Seen) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(to).await.unwrap();
    let addr = front.local_addr().unwrap();
    let pinger: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let (f, b, p, s) = (front.clone(), back.clone(), pinger.clone(), seen.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            // A connected UDP socket reports an earlier ICMP "port unreachable" as an error
            // (the Indicator may start after the first forwarded packet): skip it.
            let Ok((len, from)) = f.recv_from(&mut buf).await else {
                continue;
            };
            *p.lock().unwrap() = Some(from);
            s.lock().unwrap().push(buf[..len].to_vec());
            let _ = b.send(&buf[..len]).await;
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok(len) = back.recv(&mut buf).await else {
                continue;
            };
            seen.lock().unwrap().push(buf[..len].to_vec());
            let to = *pinger.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..len], to).await;
            }
        }
    });
    addr
}

fn recorded(seen: &Seen, kind: Kind) -> Vec<[u8; PROBE_LEN]> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|d| !d.is_empty() && probe::is_probe_datagram(d[0]))
        .filter_map(|d| {
            let u = probe::parse(d).ok()?;
            (u.kind() == kind).then(|| d.as_slice().try_into().unwrap())
        })
        .collect()
}

/// Answers received by the Pinger's node within `within`: (nonce, sent_us).
async fn answers(rx: &mut MeshInbox, within: Duration) -> Vec<(u64, u64)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if let MeshEvent::ProbeAnswer { nonce, sent_us, .. } = event {
            got.push((nonce, sent_us));
        }
    }
    got
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn refused(s: &MeshStats) -> (u64, u64) {
    (s.probe_unauthenticated, s.probe_replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_reflected_and_forged_probe_packets_are_neither_answered_nor_counted() {
    init_tracing();
    let dir = TempDir::new().unwrap();
    certs::init(dir.path(), &[n("pinger"), n("indicator")], false).unwrap();
    let (pa, ia) = (free_addr(), free_addr());
    let seen: Seen = Arc::default();
    // The pair's one connection is dialed by the lower id (here the Indicator): both go
    // through a relay, so it sees the probe traffic whoever dials.
    let (via_i, via_p) = (relay(ia, seen.clone()).await, relay(pa, seen.clone()).await);
    let (pinger, mut p_rx) = Mesh::start(config("pinger", pa, &dir, ("indicator", via_i)))
        .await
        .unwrap();
    let mut icfg = config("indicator", ia, &dir, ("pinger", via_p));
    icfg.answer_probes = true;
    let (indicator, _i_rx) = Mesh::start(icfg).await.unwrap();
    let i = n("indicator");
    eventually("the pinger's connection", || {
        pinger.connected() == vec![i.clone()]
    })
    .await;

    // Real probes are answered end to end. The first may race the Indicator's session (it
    // opens once the Indicator has identified the caller): retry until one is answered.
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(pinger.send_probe(&i, 1, 100));
        if !answers(&mut p_rx, Duration::from_millis(100))
            .await
            .is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no probe answered");
    }
    for nonce in 2..=10u64 {
        assert!(pinger.send_probe(&i, nonce, nonce * 100));
    }
    let mut got = answers(&mut p_rx, QUIET).await;
    got.sort();
    assert_eq!(got, (2..=10).map(|k| (k, k * 100)).collect::<Vec<_>>());
    let (probes, replies) = (recorded(&seen, Kind::Probe), recorded(&seen, Kind::Answer));
    assert!(
        probes.len() >= 10 && replies.len() >= 10,
        "the relay saw the probe traffic"
    );

    let (p0, i0) = (pinger.stats(), indicator.stats());
    let off_path = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let last_probe = *probes.last().unwrap();
    let last_answer = *replies.last().unwrap();

    // 1. A recorded probe replayed to the Indicator: refused, not answered.
    off_path.send_to(&last_probe, ia).await.unwrap();
    // 2. A recorded answer replayed to the Pinger: refused, no answer reaches the node.
    off_path.send_to(&last_answer, pa).await.unwrap();
    eventually("the replays to be refused", || {
        pinger.stats().probe_replayed > p0.probe_replayed
            && indicator.stats().probe_replayed > i0.probe_replayed
    })
    .await;

    // 3. A probe reflected at its sender, as is and relabelled as an answer.
    let mut relabelled = last_probe;
    relabelled[0] = 0x02;
    // 4. Forged: a recorded probe with another nonce, and one for an unknown session.
    let mut altered = last_probe;
    altered[20] ^= 1;
    let mut stranger = last_probe;
    stranger[4] ^= 0xff;
    // 5. An answer sent to the Indicator, as if it were a probe.
    let mut answer_as_probe = last_answer;
    answer_as_probe[0] = 0x01;
    off_path.send_to(&last_probe, pa).await.unwrap();
    off_path.send_to(&relabelled, pa).await.unwrap();
    off_path.send_to(&altered, ia).await.unwrap();
    off_path.send_to(&stranger, ia).await.unwrap();
    off_path.send_to(&answer_as_probe, ia).await.unwrap();
    off_path.send_to(&[0x01; 10], ia).await.unwrap();
    eventually("the forgeries to be refused", || {
        pinger.stats().probe_unauthenticated >= p0.probe_unauthenticated + 2
            && indicator.stats().probe_unauthenticated >= i0.probe_unauthenticated + 4
    })
    .await;

    assert!(
        answers(&mut p_rx, QUIET).await.is_empty(),
        "nothing reached the Pinger's node"
    );
    let mut buf = [0u8; 256];
    let heard = tokio::time::timeout(QUIET, off_path.recv_from(&mut buf)).await;
    assert!(
        heard.is_err(),
        "the off-path socket got an answer: {heard:?}"
    );
    let (p1, i1) = (pinger.stats(), indicator.stats());
    assert_eq!(
        p1.answers_received, p0.answers_received,
        "no answer counted"
    );
    assert_eq!(
        i1.probes_answered_by_me, i0.probes_answered_by_me,
        "nothing answered"
    );
    assert_eq!(
        refused(&p1),
        (p0.probe_unauthenticated + 2, p0.probe_replayed + 1)
    );
    assert_eq!(
        refused(&i1),
        (i0.probe_unauthenticated + 4, i0.probe_replayed + 1)
    );

    // The session still works after the attack.
    assert!(pinger.send_probe(&i, 99, 9900));
    assert_eq!(
        answers(&mut p_rx, WAIT.min(Duration::from_secs(2))).await,
        vec![(99, 9900)]
    );

    pinger.shutdown().await;
    indicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_an_indicator_does_not_answer_and_no_session_means_no_probe() {
    let dir = TempDir::new().unwrap();
    certs::init(dir.path(), &[n("a"), n("b")], false).unwrap();
    let (aa, ba) = (free_addr(), free_addr());
    let (a, mut a_rx) = Mesh::start(config("a", aa, &dir, ("b", ba))).await.unwrap();
    assert!(
        !a.send_probe(&n("b"), 1, 1),
        "no connection, no session: not sent"
    );
    let (b, _b_rx) = Mesh::start(config("b", ba, &dir, ("a", aa))).await.unwrap();
    eventually("a's connection", || a.connected() == vec![n("b")]).await;
    eventually("b to take a probe", || {
        a.send_probe(&n("b"), 2, 2);
        std::thread::sleep(Duration::from_millis(20));
        b.stats().probes_ignored > 0
    })
    .await;
    assert!(answers(&mut a_rx, QUIET).await.is_empty());
    assert_eq!(b.stats().probes_answered_by_me, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_indicator_is_probed_again_long_before_the_idle_timeout() {
    init_tracing();
    let dir = TempDir::new().unwrap();
    certs::init(dir.path(), &[n("pinger"), n("indicator")], false).unwrap();
    let (pa, ia) = (free_addr(), free_addr());
    let long = |mut c: MeshConfig| {
        c.idle_timeout = Duration::from_secs(30);
        c.keep_alive = Duration::from_secs(10);
        c
    };
    let (pinger, mut p_rx) = Mesh::start(long(config("pinger", pa, &dir, ("indicator", ia))))
        .await
        .unwrap();
    let icfg = || {
        let mut c = long(config("indicator", ia, &dir, ("pinger", pa)));
        c.answer_probes = true;
        c
    };
    let answered_within = |within: Duration| {
        let pinger = pinger.clone();
        async move {
            let deadline = Instant::now() + within;
            let mut nonce = 1000;
            while Instant::now() < deadline {
                nonce += 1;
                pinger.send_probe(&n("indicator"), nonce, 0);
                tokio::time::sleep(Duration::from_millis(100)).await;
                if pinger.stats().answers_received > 0 {
                    return true;
                }
            }
            false
        }
    };

    let first = tokio::task::spawn_blocking({
        let cfg = icfg();
        move || crashable(cfg)
    })
    .await
    .unwrap();
    assert!(answered_within(WAIT).await, "the first Indicator answers");

    // The Indicator crashes (no close on the wire) and comes back on the same address. It
    // is the lower id of the pair: it dials afresh and its new connection replaces the old.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || drop(first))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    while p_rx.try_recv().is_some() {}
    let before = pinger.stats().answers_received;
    let second = tokio::task::spawn_blocking({
        let cfg = icfg();
        move || crashable(cfg)
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut nonce = 5000;
    loop {
        nonce += 1;
        pinger.send_probe(&n("indicator"), nonce, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if pinger.stats().answers_received > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted Indicator is not probed within 5 s (idle timeout 30 s)"
        );
    }
    pinger.shutdown().await;
    tokio::task::spawn_blocking(move || drop(second))
        .await
        .unwrap();
}
