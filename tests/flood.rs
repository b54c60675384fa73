//! A member that floods. With the real certificate of a3 (an Indicator of site a: mutual TLS
//! admits it, nothing makes it behave), a client sends every other node valid-but-useless
//! messages, junk streams and junk datagrams as fast as it can, on several streams at once,
//! while another loop reconnects to every node as fast as it can. Meanwhile site b is blacked
//! out: its DOWN verdict must still commit at every voter of its electorate within twice the
//! time the same blackout takes on the same fleet without the flood (measured first, in this
//! test, plus a second of slack for a shared machine).

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use quorate::net::{tls, CertPaths};
use quorate::wire::{self, Message, PeerStatus};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The voters of site b (its electorate: the voters of a and c).
const B_VOTERS: [&str; 4] = ["a1", "a2", "c1", "c2"];
/// Every node the flooder (as a3) talks to.
const TARGETS: [&str; 7] = ["a1", "a2", "b1", "b2", "b3", "c1", "c2"];

/// Starts the fast fleet on `octet` without a3 (its identity is the flooder's) and waits
/// until b's voters see b up.
async fn fleet_without_a3(octet: u8) -> LocalFleet {
    let mut f = start_fleet(octet).await;
    f.stop_node(&n("a3")).await;
    let rest = Rest::new();
    wait_opinion(&rest, &apis(&f, &B_VOTERS), "b", "up").await;
    // Let every connection settle after a3's departure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    f
}

/// Blacks out site b and returns how long until every voter of b holds the DOWN verdict.
async fn blackout_of_b(f: &mut LocalFleet) -> Duration {
    let t0 = Instant::now();
    f.stop_site(&site("b")).await;
    let all_down = f
        .wait_until(Duration::from_secs(60), |f| {
            let v = f.verdicts(&site("b"));
            B_VOTERS
                .iter()
                .all(|id| v.get(&n(id)).is_some_and(|(verdict, _)| *verdict == "down"))
        })
        .await;
    assert!(
        all_down,
        "b's DOWN verdict not committed at every voter within 60 s: {:?}",
        f.verdicts(&site("b"))
    );
    t0.elapsed()
}

struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    connects: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    /// Floods `targets` as a3 from a runtime of its own (its own OS thread), until dropped.
    fn start(f: &LocalFleet, targets: Vec<SocketAddr>, names: Vec<String>) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let connects = Arc::new(AtomicU64::new(0));
        let paths = CertPaths::in_dir(&f.certs_dir, &n("a3"));
        let useless = wire::encode_message(&Message::Status(PeerStatus {
            node: n("a3"),
            fleet_hash: f.fleet.hash.clone(),
            opinions: vec![],
            verdicts: vec![],
            maintenance: vec![],
        }))
        .expect("a status fits");
        let (s, c, k) = (stop.clone(), sent.clone(), connects.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("flood runtime");
            rt.block_on(flood(paths, targets, names, useless, s, c, k));
        });
        Flood {
            stop,
            sent,
            connects,
            thread: Some(thread),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn flood(
    paths: CertPaths,
    targets: Vec<SocketAddr>,
    names: Vec<String>,
    useless: Vec<u8>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    connects: Arc<AtomicU64>,
) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client");
    endpoint.set_default_client_config(tls::client_config(&paths).expect("client config"));
    let junk: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (addr, name) in targets.into_iter().zip(names) {
        // Streams and datagrams as fast as the connection takes them, reconnecting when cut.
        for writer in 0..4 {
            let (endpoint, stop, sent, name) =
                (endpoint.clone(), stop.clone(), sent.clone(), name.clone());
            let (useless, junk) = (useless.clone(), junk.clone());
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Ok(conn)) = tokio::time::timeout(
                        Duration::from_secs(2),
                        endpoint.connect(addr, &name).expect("connect"),
                    )
                    .await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let _ = conn.send_datagram(junk[..40].to_vec().into());
                        let bytes = if writer % 2 == 0 { &useless } else { &junk };
                        let Ok(mut s) = conn.open_uni().await else {
                            break;
                        };
                        if s.write_all(bytes).await.is_err() {
                            break;
                        }
                        let _ = s.finish();
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // A fresh handshake after another, as fast as they are granted or refused.
        let (endpoint, stop, connects) = (endpoint.clone(), stop.clone(), connects.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let attempt = endpoint.connect(addr, &name).expect("connect");
                if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
                    connects.fetch_add(1, Ordering::Relaxed);
                    conn.close(0u32.into(), b"again");
                } else {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    endpoint.close(0u32.into(), b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_flooding_and_reconnecting_does_not_slow_a_blackout_verdict_beyond_twice() {
    init_tracing();
    // Without the flood.
    let mut quiet = fleet_without_a3(143).await;
    let normal = blackout_of_b(&mut quiet).await;
    quiet.shutdown().await;

    // The same fleet and blackout while a3 floods everyone.
    let mut f = fleet_without_a3(144).await;
    let rest = Rest::new();
    let targets: Vec<SocketAddr> = TARGETS
        .iter()
        .map(|t| f.fleet.node(&n(t)).expect("in the fleet").mesh)
        .collect();
    let flood = Flood::start(&f, targets, TARGETS.iter().map(|t| t.to_string()).collect());
    // Let the flood reach full speed before the blackout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        flood.sent.load(Ordering::Relaxed) > 100,
        "the flood is under way"
    );
    let flooded = blackout_of_b(&mut f).await;
    let (sent, connects) = (
        flood.sent.load(Ordering::Relaxed),
        flood.connects.load(Ordering::Relaxed),
    );

    // The bounds were at work at the voters of b.
    let mut throttled = 0.0;
    let mut dropped = 0.0;
    let mut replaced = 0.0;
    let mut malformed = 0.0;
    for (name, addr) in apis(&f, &B_VOTERS) {
        let m = rest.metrics(addr).await;
        throttled += metric(&m, "quorate_mesh_throttled_handshakes_total").unwrap_or(0.0);
        dropped += metric(&m, "quorate_mesh_dropped_events_total{peer=\"a3\"}").unwrap_or(0.0);
        replaced += metric(&m, "quorate_mesh_replaced_connections_total").unwrap_or(0.0);
        // The flood's reconnect loop replaces its own junk connection now and then, so not
        // every voter need have counted junk; the voters together must have.
        malformed += metric(&m, "quorate_mesh_malformed_messages_total").unwrap_or(0.0);
        let (code, body) = rest
            .call(reqwest::Method::GET, addr, "/healthz")
            .await
            .expect("healthz answers");
        assert_eq!(code, 200, "{name}: {body}");
    }
    drop(flood);
    eprintln!(
        "blackout of b committed at every voter: {normal:?} without the flood, {flooded:?} \
         with it ({sent} flood messages, {connects} reconnections; at the voters: \
         {throttled} handshakes throttled, {replaced} connections replaced, {dropped} events \
         of a3 dropped)"
    );
    assert!(
        throttled >= 1.0,
        "reconnecting as fast as it can is throttled"
    );
    assert!(
        malformed >= 1.0,
        "the voters of b received the junk streams"
    );
    assert!(
        replaced >= 1.0,
        "a newer connection of a3 replaced an older one"
    );
    let bound = normal * 2 + Duration::from_secs(1);
    assert!(
        flooded <= bound,
        "the flood slowed the verdict beyond twice its normal time: {flooded:?} > {bound:?} \
         (normal {normal:?})"
    );
    f.shutdown().await;
}
