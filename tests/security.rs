//! A running fleet against strangers and garbage: a node certified by another CA that takes
//! the place of a fleet member is refused and never counts, and malformed, truncated and
//! oversized datagrams and stream frames (from a peer with a valid certificate, and raw UDP
//! from anyone) are dropped, counted, and change nothing.

mod common;

use common::*;
use quorate::net::{certs, tls, CertPaths};
use quorate::node::{self, NodeSpec};
use quorate::wire::{self, Datagram, Message, PeerStatus};
use std::net::SocketAddr;
use std::time::Duration;

/// Sum of `series` over the REST addresses `nodes`.
async fn total(rest: &Rest, nodes: &[(&str, SocketAddr)], series: &str) -> f64 {
    let mut sum = 0.0;
    for (_, addr) in nodes {
        sum += rest.metric(*addr, series).await.unwrap_or(0.0);
    }
    sum
}

/// Asserts, for `period`, that b1 never lists c2 as a reachable peer.
async fn c2_stays_unreachable_on_b1(rest: &Rest, b1: SocketAddr, period: Duration) {
    let deadline = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < deadline {
        let status = rest.get(b1, "/v1/status").await;
        let c2 = status["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["node"] == "c2").cloned())
            .expect("c2 in b1's peers");
        assert_eq!(c2["reachable"], false, "b1 lists the impostor: {c2}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certified_by_another_ca_is_refused_and_never_counts() {
    init_tracing();
    let mut f = start_fleet(231).await;
    let rest = Rest::new();
    let others = apis(&f, &["a1", "a2", "a3", "b1", "b2", "b3", "c1"]);
    let b1 = api(&f, "b1");
    wait_opinion(&rest, &apis(&f, &["b1", "b2", "c1", "c2"]), "a", "up").await;
    f.stop_node(&n("c2")).await;
    // The real c2's last status ages out first (it greeted b1 when their connection came up).
    wait_peer(&rest, b1, "c2", false).await;
    // Rounds before this moment may hold answers of the real c2 (e.g. a false positive while
    // the fleet started on a loaded machine); only later ones must be free of "c2".
    let impostor_since = std::time::SystemTime::now();

    // An impostor for c2: same fleet file and address, certificate from its own CA.
    let rogue_dir = tempfile::Builder::new()
        .prefix("quorate-rogue-")
        .tempdir()
        .expect("a temp dir");
    let rogue_certs = rogue_dir.path().join("certs");
    let rogue_ca = rogue_dir.path().join("ca");
    certs::init_in(
        &rogue_ca,
        &rogue_certs,
        &[n("c2")],
        false,
        certs::NODE_LIFETIME,
    )
    .expect("rogue CA");
    let spec = |certs_dir: std::path::PathBuf| NodeSpec {
        fleet: f.fleet.clone(),
        fleet_path: None,
        node: n("c2"),
        certs_dir,
        data_dir: rogue_dir.path().join("data"),
        retention: Default::default(),
        serve_api: false,
        events: None,
    };
    let before = total(&rest, &others, "quorate_mesh_rejected_handshakes_total").await;
    let rogue = node::spawn(spec(rogue_certs.clone()))
        .await
        .expect("the impostor starts");
    // This impostor trusts only its own CA: it gives up on the fleet's server certificates
    // before it shows its own (TLS 1.3 checks the server first), and the fleet's nodes refuse
    // its server certificate when they dial c2's address.
    eventually("the impostor's dials to fail", || {
        let rogue = &rogue;
        async move {
            let m = rogue.snapshot().mesh.clone();
            if m.dial_failures > 0 {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        }
    })
    .await;
    c2_stays_unreachable_on_b1(&rest, b1, Duration::from_secs(2)).await;
    let m = rogue.snapshot().mesh.clone();
    assert_eq!((m.messages_received, m.answers_received), (0, 0), "{m:?}");
    let rejected = total(&rest, &others, "quorate_mesh_rejected_handshakes_total").await;
    println!("refused handshakes counted by the fleet: {before} -> {rejected}");
    rogue.shutdown().await;

    // Bolder: the impostor trusts the fleet CA (it accepts the fleet's servers), but its own
    // certificate is still from another CA, so the fleet's servers refuse it.
    std::fs::copy(f.certs_dir.join("ca.pem"), rogue_certs.join("ca.pem")).expect("copy");
    let rogue = node::spawn(spec(rogue_certs)).await.expect("restarts");
    eventually("the fleet to refuse the impostor's certificate", || {
        let (rest, others) = (&rest, &others);
        async move {
            let now = total(rest, others, "quorate_mesh_rejected_handshakes_total").await;
            if now > rejected {
                Ok(())
            } else {
                Err(format!("{now} refused"))
            }
        }
    })
    .await;
    c2_stays_unreachable_on_b1(&rest, b1, Duration::from_secs(2)).await;
    let m = rogue.snapshot().mesh.clone();
    assert_eq!((m.messages_received, m.answers_received), (0, 0), "{m:?}");

    // A blackout now: b1, b2 and c1 decide; the impostor has no say and learns nothing.
    let voters = apis(&f, &["b1", "b2", "c1"]);
    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    assert_ne!(down.leader, "c2");
    for (name, addr) in &voters {
        let detail = rest.get(*addr, "/v1/sites/a").await;
        for round in detail["rounds"].as_array().expect("rounds") {
            let ended = humantime::parse_rfc3339(round["ended_at"].as_str().expect("ended_at"))
                .expect("RFC 3339");
            if ended < impostor_since {
                continue;
            }
            let voters: Vec<_> = round["answers"]
                .as_array()
                .expect("answers")
                .iter()
                .map(|a| a["voter"].clone())
                .collect();
            assert!(
                !voters.contains(&"c2".into()),
                "{name}: c2 answered: {round}"
            );
        }
    }
    let snap = rogue.snapshot();
    let a = snap.sites.iter().find(|s| s.id.as_str() == "a").expect("a");
    assert_eq!(a.verdict, "none", "the impostor learned a verdict");
    assert!(snap.peers.iter().all(|p| !p.reachable), "{:?}", snap.peers);
    rogue.shutdown().await;
    f.shutdown().await;
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
    let mut stream = conn.open_uni().await.expect("a stream");
    // The receiver may stop an oversized stream before it is all written.
    let _ = stream.write_all(bytes).await;
    let _ = stream.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_mesh_is_dropped_and_counted_and_the_node_keeps_working() {
    init_tracing();
    let mut f = start_fleet(232).await;
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;
    let b1 = api(&f, "b1");
    let b1_mesh = f.fleet.node(&n("b1")).expect("b1").mesh;
    let counters = [
        "quorate_mesh_malformed_datagrams_total",
        "quorate_mesh_malformed_messages_total",
        "quorate_mesh_oversized_messages_total",
    ];
    let text = rest.metrics(b1).await;
    for c in counters {
        assert_eq!(metric(&text, c), Some(0.0), "{c} before any garbage");
    }

    // A bare QUIC client holding b2's valid certificate, with b2 itself stopped: b1 keeps one
    // connection per peer, so the real b2's connection would stand in the way of this one.
    f.stop_node(&n("b2")).await;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client");
    let b2_paths = CertPaths::in_dir(&f.certs_dir, &n("b2"));
    endpoint.set_default_client_config(tls::client_config(&b2_paths).expect("client config"));
    let conn = endpoint
        .connect(b1_mesh, "b1")
        .expect("connect")
        .await
        .expect("b1 admits a fleet certificate");

    let probe = wire::encode_datagram(&Datagram::Probe {
        nonce: 5,
        sent_us: 6,
        opinion: quorate::core::types::Opinion::Up,
    });
    // The mesh carries no QUIC datagrams (probes travel beside QUIC, authenticated with keys
    // of the connection) but empty ones, its liveness checks: even a well-formed old-style
    // probe datagram is garbage.
    let bad_datagrams = [
        probe.clone(),
        probe[..probe.len() - 1].to_vec(),
        vec![wire::WIRE_VERSION; wire::MAX_DATAGRAM + 20],
        noise(1, 30),
        [&[wire::WIRE_VERSION][..], &noise(2, 20)].concat(),
    ];
    for d in &bad_datagrams {
        conn.send_datagram(d.clone().into()).expect("datagram sent");
    }
    let status = Message::Status(PeerStatus {
        node: n("b2"),
        fleet_hash: "f00d".into(),
        opinions: vec![],
        verdicts: vec![],
        maintenance: vec![],
    });
    let message = wire::encode_message(&status).expect("encodes");
    send_stream(&conn, &message[..message.len() / 2]).await;
    send_stream(&conn, &[&[9u8][..], &message[1..]].concat()).await;
    send_stream(&conn, &[&[wire::WIRE_VERSION][..], &noise(3, 500)].concat()).await;
    send_stream(&conn, &noise(4, 500)).await;
    send_stream(&conn, &vec![wire::WIRE_VERSION; wire::MAX_MESSAGE + 1000]).await;

    // Raw UDP to the mesh port: not QUIC at all, or QUIC-looking headers with junk.
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut long_header = vec![0xc0, 0, 0, 0, 1, 8];
    long_header.extend(noise(5, 1200));
    for d in [
        Vec::new(),
        b"hello".to_vec(),
        noise(6, 1400),
        long_header,
        [&[0x40][..], &noise(7, 60)].concat(),
        // Probe packets (fixed bit clear) for no session: forged, dropped and counted.
        [&[0x01, 0x01, 0, 0][..], &noise(8, 48)].concat(),
        [&[0x02, 0x01, 0, 0][..], &noise(9, 48)].concat(),
    ] {
        raw.send_to(&d, b1_mesh).expect("udp sent");
    }

    let bad = bad_datagrams.len() as f64;
    eventually("b1 to count the garbage", || {
        let rest = &rest;
        async move {
            let text = rest.try_metrics(b1).await?;
            let v: Vec<f64> = counters
                .iter()
                .map(|c| metric(&text, c).unwrap_or(0.0))
                .collect();
            let forged = metric(&text, "quorate_mesh_probe_unauthenticated_total").unwrap_or(0.0);
            if v[0] >= bad && v[1] >= 4.0 && v[2] >= 1.0 && forged >= 2.0 {
                Ok(())
            } else {
                Err(format!("{counters:?} = {v:?}"))
            }
        }
    })
    .await;

    // The same connection is still up.
    assert!(conn.close_reason().is_none());
    conn.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    f.start_node(&n("b2")).await.expect("b2 starts again");

    // And the node goes on with its job: every peer reachable, a blackout decided as usual.
    let status = rest.get(b1, "/v1/status").await;
    assert_eq!(status["fleet_mismatch"], serde_json::json!([]), "{status}");
    eventually("b1 to hear from every peer", || {
        let rest = &rest;
        async move {
            let status = rest.try_get(b1, "/v1/status").await?;
            let peers = status["peers"].as_array().cloned().unwrap_or_default();
            if !peers.is_empty() && peers.iter().all(|p| p["reachable"] == true) {
                Ok(())
            } else {
                Err(status["peers"].to_string())
            }
        }
    })
    .await;
    let text = rest.metrics(b1).await;
    assert_eq!(
        metric(&text, "quorate_mesh_rejected_handshakes_total"),
        Some(0.0)
    );
    f.stop_site(&site("a")).await;
    wait_verdict(&rest, &voters, "a", "down").await;
    f.shutdown().await;
}
