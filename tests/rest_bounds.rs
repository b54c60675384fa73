//! The REST server under a slowloris: 1,000 connections to every voter of a's electorate that
//! send half a request head and stall (reopened whenever the server cuts one). Health checks
//! still answer promptly, a blackout's first failover step still runs, a stalled connection
//! is cut by the header-read timeout, an oversized body is refused, and the output of the
//! failover's step is shown only to a caller with the read (or operator) token.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOWLORIS_PER_NODE: usize = 1000;
const SECRET: &str = "s3cr3t-printed-by-the-step";
const HALF_A_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: quorate\r\nX-Slow: ";

fn fleet(octet: u8, dir: &Path) -> String {
    let marker = dir.join("first-step-ran");
    let watch_a = format!(
        r#"takeover_delay_s = 0.5
self_fence_after_s = 0.2

[[watch.pipeline.step]]
name = "announce"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "echo {SECRET}; touch {marker}"]"#,
        marker = marker.display()
    );
    let tail = format!(
        "[api]\ntoken_file = \"{}\"\nread_token_file = \"{}\"\n",
        dir.join("operator.token").display(),
        dir.join("read.token").display()
    );
    fleet_watching_a(octet, "", &watch_a, &tail)
}

/// The test opens thousands of sockets: the soft descriptor limit goes up to the hard one.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).expect("raise RLIMIT_NOFILE to its hard limit");
}

/// Keeps one stalled connection open to `addr`, reopening it a second after the server
/// closes it.
async fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !std::mem::take(&mut first) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if s.write_all(HALF_A_HEAD).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                read = s.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
        }
    }
}

async fn healthz_within(rest: &Rest, name: &str, addr: SocketAddr, bound: Duration) {
    let t0 = Instant::now();
    let (code, body) = rest
        .call(reqwest::Method::GET, addr, "/healthz")
        .await
        .unwrap_or_else(|e| panic!("{name}: healthz did not answer: {e}"));
    let took = t0.elapsed();
    assert_eq!(code, 200, "{name}: {body}");
    assert!(
        took <= bound,
        "{name}: healthz took {took:?} (bound {bound:?})"
    );
}

async fn failovers_with(addr: SocketAddr, token: Option<&str>) -> String {
    let mut req = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{addr}/v1/failovers"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("failovers answer");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.expect("a body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_delays_neither_health_nor_failover_and_step_output_needs_the_read_token() {
    init_tracing();
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("operator.token"), "op-token\n").unwrap();
    std::fs::write(dir.path().join("read.token"), "read-token\n").unwrap();
    let mut f = LocalFleet::start(&fleet(145, dir.path()), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    // One stalled connection is cut by the header-read timeout (5 s).
    let b1 = api(&f, "b1");
    let mut lone = TcpStream::connect(b1).await.unwrap();
    lone.write_all(HALF_A_HEAD).await.unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(15), lone.read(&mut buf))
        .await
        .expect("the server cuts a stalled request head");
    assert!(
        matches!(read, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).contains("408"),
        "{read:?}"
    );
    let cut_after = t0.elapsed();
    assert!(
        cut_after >= Duration::from_secs(4),
        "cut after {cut_after:?}"
    );

    // A body over the limit (64 KiB) is refused before any handler reads it.
    let big = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{b1}/v1/drills"))
        .bearer_auth("op-token")
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .expect("an answer");
    assert_eq!(big.status().as_u16(), 413);

    // 1,000 stalled connections to every voter, kept up for the rest of the test by an
    // attacker on a thread of its own (as another process would be).
    let stop = Arc::new(AtomicBool::new(false));
    let targets: Vec<SocketAddr> = voters.iter().map(|(_, a)| *a).collect();
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("attacker runtime");
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for addr in targets {
                    for _ in 0..SLOWLORIS_PER_NODE {
                        tasks.spawn(slowloris(addr, stop.clone()));
                    }
                }
                while tasks.join_next().await.is_some() {}
            });
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, addr) in &voters {
        healthz_within(&rest, name, *addr, Duration::from_secs(2)).await;
    }

    // A blackout of a: its failover's first step still runs promptly.
    let t0 = Instant::now();
    f.stop_site(&site("a")).await;
    let marker = dir.path().join("first-step-ran");
    while !marker.exists() {
        if t0.elapsed() >= WAIT {
            let runs = failovers_with(api(&f, "b1"), Some("op-token")).await;
            eprintln!("verdicts {:?}; b1 runs {runs}", f.verdicts(&site("a")));
        }
        assert!(
            t0.elapsed() < WAIT,
            "the first step did not run within {WAIT:?} under the slowloris"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_step = t0.elapsed();
    for (name, addr) in &voters {
        healthz_within(&rest, name, *addr, Duration::from_secs(2)).await;
    }
    let m = rest.metrics(b1).await;
    let evicted = metric(&m, "quorate_api_evicted_connections_total").unwrap_or(0.0);
    let timeouts = metric(&m, "quorate_api_header_timeouts_total").unwrap_or(0.0);
    eprintln!(
        "first step ran {first_step:?} after the blackout; b1 evicted {evicted} connections, \
         cut {timeouts} for their headers"
    );
    assert!(evicted >= 1.0, "the connection cap made room: {evicted}");
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || attacker.join())
        .await
        .unwrap()
        .expect("the attacker stops");

    // The step's output: redacted without a token or with a wrong one; shown with the read
    // token or the operator token.
    let shown = wait_verdict(&rest, &voters, "a", "down").await;
    let leader = api(&f, &shown.leader);
    let text = eventually("the run's step to finish at the leader", || async move {
        let t = failovers_with(leader, Some("read-token")).await;
        if t.contains(SECRET) {
            Ok(t)
        } else {
            Err(t)
        }
    })
    .await;
    assert!(text.contains(SECRET));
    assert!(failovers_with(leader, Some("op-token"))
        .await
        .contains(SECRET));
    for token in [None, Some("wrong")] {
        let t = failovers_with(leader, token).await;
        assert!(!t.contains(SECRET), "{token:?}: {t}");
        assert!(t.contains("output redacted"), "{token:?}: {t}");
        assert!(t.contains("exited 0"), "the actuator's own line stays: {t}");
    }
    let id = format!("a-{}", shown.epoch);
    let one = rest.get(leader, &format!("/v1/failovers/{id}")).await;
    assert!(!one.to_string().contains(SECRET), "{one}");
    f.shutdown().await;
}
