//! Bounded messages on loopback: a step that fails noisily two hundred times grows a journal
//! far larger than one mesh message, and the run still replicates to the electorate and ends
//! there, with nothing refused for its size; and the mesh counts a message too large to send
//! instead of sending what its peer would drop.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use quorate::net::{certs, CertPaths, Mesh, MeshConfig, MeshEvent, MeshInbox};
use quorate::wire::{Message, PeerStatus, MAX_MESSAGE};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// Attempts of the noisy step: the first and `RETRIES` retries.
const ATTEMPTS: u64 = 200;

/// The fast fleet with a one-step plan for site a: the step prints 4 KiB and fails, 200 times
/// with a 5 ms backoff (at most 40 ms between attempts).
fn fleet_with_noisy_step(octet: u8) -> String {
    let watch_a = format!(
        r#"takeover_delay_s = 0.5
self_fence_after_s = 0.2

[[watch.pipeline.step]]
name = "noisy"
kind = "exec"
timeout_s = 5
retries = {retries}
backoff_ms = 5
argv = ["/bin/sh", "-c", "printf '%04096d' 0; exit 1"]"#,
        retries = ATTEMPTS - 1,
    );
    fleet_watching_a(octet, "", &watch_a, "")
}

/// Polls `addr`'s GET /v1/failovers until its first run is in a final state, for at most
/// `within`.
async fn wait_finished(rest: &Rest, who: &str, addr: SocketAddr, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let runs = rest.try_get(addr, "/v1/failovers").await;
        if let Ok(runs) = &runs {
            let state = runs["failovers"][0]["state"].as_str().unwrap_or("");
            if !matches!(state, "" | "waiting" | "running") {
                return runs.clone();
            }
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{who}: the run did not finish within {within:?}; last seen: {runs:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_failing_noisily_two_hundred_times_replicates_and_the_run_ends() {
    let mut f = LocalFleet::start(&fleet_with_noisy_step(97), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &["b1", "b2", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    f.stop_site(&site("a")).await;
    let shown = wait_verdict(&rest, &voters, "a", "down").await;
    let e = shown.epoch;

    let leader = api(&f, &shown.leader);
    let runs = wait_finished(&rest, &shown.leader, leader, Duration::from_secs(120)).await;
    let run = &runs["failovers"][0];
    assert_eq!(run["id"], format!("a-{e}"), "{runs}");
    assert_eq!(run["state"], "aborted", "{runs}");
    assert_eq!(run["steps"][0]["attempts"], ATTEMPTS, "{runs}");

    // Another voter holds the whole journal: the same run, finished, every attempt in it.
    let (other, addr) = voters
        .iter()
        .find(|(name, _)| *name != shown.leader)
        .copied()
        .expect("a second voter");
    let runs = wait_finished(&rest, other, addr, Duration::from_secs(30)).await;
    let run = &runs["failovers"][0];
    assert_eq!(run["id"], format!("a-{e}"), "{other}: {runs}");
    assert_eq!(run["state"], "aborted", "{other}: {runs}");
    assert_eq!(run["leader"], shown.leader.as_str(), "{other}: {runs}");
    assert_eq!(run["steps"][0]["attempts"], ATTEMPTS, "{other}: {runs}");
    let detail = run["steps"][0]["detail"].as_str().unwrap_or("");
    assert!(
        detail.len() <= 2 * 1024 + 64,
        "the journal keeps at most ~2 KiB of a step's output: {} bytes",
        detail.len()
    );

    // Nothing was too large to send, or dropped for its size on arrival.
    for (name, addr) in &voters {
        let m = rest.metrics(*addr).await;
        for series in [
            "quorate_mesh_unsendable_messages_total",
            "quorate_mesh_oversized_messages_total",
        ] {
            assert_eq!(metric(&m, series), Some(0.0), "{name}: {series}");
        }
    }
    f.shutdown().await;
}

fn status(from: &str, fleet_hash: String) -> Message {
    Message::Status(PeerStatus {
        node: n(from),
        fleet_hash,
        opinions: vec![],
        verdicts: vec![],
        maintenance: vec![],
    })
}

async fn mesh(
    me: &str,
    bind: SocketAddr,
    dir: &std::path::Path,
    peer: (&str, SocketAddr),
) -> (Mesh, MeshInbox) {
    let cfg = MeshConfig {
        me: n(me),
        bind,
        peers: vec![(n(peer.0), peer.1)],
        certs: CertPaths::in_dir(dir, &n(me)),
        answer_probes: false,
        idle_timeout: Duration::from_secs(3),
        keep_alive: Duration::from_millis(500),
        redial_every: Duration::from_millis(100),
        quiet_peers: Vec::new(),
        park_after: Duration::from_secs(5),
    };
    Mesh::start(cfg).await.expect("mesh starts")
}

/// The next stream message `rx` delivers within 10 s.
async fn next_message(rx: &mut MeshInbox) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(MeshEvent::Message { msg, .. })) => return Some(msg),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_the_peer_is_counted_and_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    certs::init(dir.path(), &[n("x1"), n("x2")], false).unwrap();
    let free = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let (a1, a2) = (free(), free());
    let (m1, _rx1) = mesh("x1", a1, dir.path(), ("x2", a2)).await;
    let (m2, mut rx2) = mesh("x2", a2, dir.path(), ("x1", a1)).await;
    eventually("x1 to connect to x2", || {
        let m1 = m1.clone();
        async move {
            if m1.connected() == vec![n("x2")] {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        }
    })
    .await;
    let before = m1.stats();
    m1.send(&n("x2"), &status("x1", "x".repeat(MAX_MESSAGE)));
    assert_eq!(
        m1.stats().unsendable_messages,
        before.unsendable_messages + 1
    );
    // The connection is fine, and what arrives next is the small message.
    let small = status("x1", "f00d".to_string());
    m1.send(&n("x2"), &small);
    assert_eq!(next_message(&mut rx2).await, Some(small));
    assert_eq!(
        m2.stats().oversized_messages,
        0,
        "nothing too large arrived"
    );
    m1.shutdown().await;
    m2.shutdown().await;
}
