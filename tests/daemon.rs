//! `quorate run` as a daemon, through the binary: it tells systemd READY=1 once its mesh and
//! REST listen and pings WATCHDOG=1 from its event loop (a unix datagram socket stands in for
//! systemd's NOTIFY_SOCKET), SIGHUP re-reads the fleet file even when its mtime did not move,
//! and `--log-format json` writes one JSON object a line with stable fields for verdicts,
//! runs and steps.

mod common;

use common::*;
use quorate::config::Fleet;
use quorate::localfleet::LocalFleet;
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every line of a JSON log, parsed; a line that is not a JSON object fails the test.
fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line in {}: {e}: {line}", path.display()));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v.get(key).is_some(), "no {key} in {line}");
            }
            v
        })
        .collect()
}

fn find<'a>(lines: &'a [Value], message: &str) -> Option<&'a Value> {
    lines.iter().find(|v| v["message"] == message)
}

/// Waits up to WAIT for a datagram saying `what`; returns every datagram seen until then.
fn wait_for_datagram(sock: &UnixDatagram, what: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let hit = msg.lines().any(|l| l == what);
            seen.push(msg);
            if hit {
                return;
            }
        }
    }
    panic!("no {what} within {WAIT:?}; the node sent {seen:?}");
}

#[test]
fn ready_and_watchdog_reach_notify_socket_and_sighup_reloads_at_once() {
    let octet = 158;
    let text = fleet_text(octet);
    let f = LocalFleet::prepare(&text, None, true).expect("the fleet prepares");
    let sock_path = f.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("a notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sock_s = sock_path.display().to_string();
    // 400 ms: the node pings every 200 ms.
    let node = spawn_node(
        &f,
        "b1",
        &[
            ("NOTIFY_SOCKET", sock_s.as_str()),
            ("WATCHDOG_USEC", "400000"),
            ("QUORATE_LOG_FORMAT", "json"),
        ],
    );

    let mut seen = Vec::new();
    wait_for_datagram(&sock, "READY=1", &mut seen);
    // READY=1 means REST already listens.
    std::net::TcpStream::connect(api(&f, "b1")).expect("REST listens once READY=1 is sent");
    let ready_at = Instant::now();
    let mut pings = 0;
    while pings < 5 {
        wait_for_datagram(&sock, "WATCHDOG=1", &mut seen);
        pings += 1;
    }
    // Five pings at 200 ms take about a second; a loop that pinged only when it was busy
    // (or never) would take far longer.
    assert!(
        ready_at.elapsed() < Duration::from_secs(5),
        "5 watchdog pings took {:?}",
        ready_at.elapsed()
    );

    // A changed fleet file whose mtime is put back: the 1 s poll cannot see it, SIGHUP must.
    let fleet_path = &f.fleet_path;
    let mtime = std::fs::metadata(fleet_path).unwrap().modified().unwrap();
    let new_text = text.replacen("[timing]\n", "[timing]\nstatus_interval_ms = 150\n", 1);
    let new_hash = Fleet::parse(&new_text).expect("valid").hash;
    std::fs::write(fleet_path, &new_text).unwrap();
    let file = std::fs::File::options()
        .write(true)
        .open(fleet_path)
        .unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    assert_eq!(
        std::fs::metadata(fleet_path).unwrap().modified().unwrap(),
        mtime
    );
    // Give the poll a chance to (wrongly) pick it up, so that the test would catch a reload
    // that did not need the signal.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        find(&json_lines(&node.log), "fleet file reloaded").is_none(),
        "reloaded without SIGHUP although the mtime did not change"
    );

    let pid = rustix::process::Pid::from_child(&node.child);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP");
    let deadline = Instant::now() + WAIT;
    let reloaded = loop {
        let lines = json_lines(&node.log);
        if let Some(v) = find(&lines, "fleet file reloaded") {
            break v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no reload within {WAIT:?} of SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(reloaded["new"], new_hash[..12]);
    assert_eq!(reloaded["span"]["node"], "b1", "{reloaded}");
    assert!(
        find(&json_lines(&node.log), "SIGHUP: re-reading the fleet file").is_some(),
        "the signal is logged"
    );
    // The process lives on after the signal (its default action would end it).
    wait_for_datagram(&sock, "WATCHDOG=1", &mut seen);
    let lines = json_lines(&node.log);
    let started = find(&lines, "node started").expect("a node started line");
    assert_eq!(started["node"], "b1");
    assert_eq!(started["site"], "b");
}

/// A fleet whose watch of a has a one-step plan, with every node but the voters running (the
/// tests start the voters themselves, as separate processes).
async fn fleet_with_voters_stopped(octet: u8) -> LocalFleet {
    let watch_a = "takeover_delay_s = 0.5\nself_fence_after_s = 0.2\n\
                   [[watch.pipeline.step]]\nname = \"promote-b\"\nkind = \"exec\"\n\
                   timeout_s = 5\nargv = [\"/bin/true\"]\n";
    let text = fleet_watching_a(octet, "status_interval_ms = 100", watch_a, "");
    let mut f = LocalFleet::prepare(&text, None, true).expect("the fleet prepares");
    start_all_but(&mut f, &A_VOTERS).await;
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_site_epoch_verdict_run_and_step() {
    init_tracing();
    let mut f = fleet_with_voters_stopped(159).await;
    let children: Vec<ChildGuard> = A_VOTERS
        .iter()
        .map(|v| spawn_node(&f, v, &[("QUORATE_LOG_FORMAT", "json")]))
        .collect();
    let rest = Rest::new();
    wait_opinion(&rest, &apis(&f, &A_VOTERS), "a", "up").await;
    f.stop_site(&site("a")).await;

    // The leader's log says when its step finished.
    let lines = eventually("a step attempt of a's failover in a voter's log", || {
        let logs: Vec<_> = children.iter().map(|c| c.log.clone()).collect();
        async move {
            for log in &logs {
                let lines = json_lines(log);
                if find(&lines, "step attempt finished").is_some() {
                    return Ok(lines);
                }
            }
            Err("no step finished yet".to_string())
        }
    })
    .await;
    let step = find(&lines, "step attempt finished").unwrap();
    assert_eq!(step["site"], "a", "{step}");
    assert_eq!(step["step"], "promote-b", "{step}");
    assert_eq!(step["kind"], "failover", "{step}");
    assert_eq!(step["ok"], true, "{step}");
    assert!(step["attempt"].is_u64(), "{step}");
    let run_id = step["run_id"].as_u64().expect("run_id is a number");

    let started = find(&lines, "failover run started").expect("the run's start is logged");
    assert_eq!(started["site"], "a");
    assert_eq!(started["run_id"].as_u64(), Some(run_id), "{started}");
    let step_started = find(&lines, "failover step started").expect("the step's start");
    assert_eq!(step_started["run_id"].as_u64(), Some(run_id));
    assert_eq!(step_started["step"], "promote-b");

    let all: Vec<Value> = children.iter().flat_map(|c| json_lines(&c.log)).collect();
    let verdict = all
        .iter()
        .find(|v| v["message"] == "verdict committed" && v["verdict"] == "down")
        .expect("the DOWN verdict is logged");
    assert_eq!(verdict["site"], "a");
    assert!(verdict["epoch"].is_u64(), "{verdict}");
    assert!(verdict["span"]["node"].is_string(), "{verdict}");
    let round = find(&all, "vote round ended").expect("a vote round is logged");
    assert!(
        round["epoch"].is_u64() && round["site"].is_string(),
        "{round}"
    );
    drop(children);
    f.shutdown().await;
}

#[test]
fn an_unset_node_under_systemd_fails_naming_the_variable() {
    // /etc/default/quorate without QUORATE_NODE: the unit passes the other flags by variable.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quorate"))
        .arg("run")
        .env("QUORATE_NODE", "")
        .env("QUORATE_FLEET", "/nonexistent/fleet.toml")
        .env("QUORATE_CERTS", "/nonexistent/certs")
        .env("QUORATE_DATA", "/nonexistent/data")
        .output()
        .expect("quorate runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("QUORATE_NODE) is empty"), "{stderr}");
}

/// Takes every datagram waiting on `sock` and says how many were WATCHDOG=1.
fn drain_pings(sock: &UnixDatagram) -> usize {
    let mut buf = [0u8; 4096];
    let mut pings = 0;
    while let Ok(n) = sock.recv(&mut buf) {
        pings += usize::from(String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1"));
    }
    pings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_event_loop_stops_pinging_the_watchdog() {
    init_tracing();
    let mut f = fleet_with_voters_stopped(160).await;
    // The failover's leader freezes its event loop when it is about to start the step.
    let once = f.dir.join("failpoint-reached");
    let once_s = once.display().to_string();
    let mut voters = Vec::new();
    for v in A_VOTERS {
        let path = f.dir.join(format!("{v}.notify"));
        let sock = UnixDatagram::bind(&path).expect("a notify socket");
        sock.set_nonblocking(true).unwrap();
        let path_s = path.display().to_string();
        let child = spawn_node(
            &f,
            v,
            &[
                ("NOTIFY_SOCKET", path_s.as_str()),
                ("WATCHDOG_USEC", "400000"),
                ("QUORATE_FAILPOINT", "start:promote-b"),
                ("QUORATE_FAILPOINT_ONCE", once_s.as_str()),
            ],
        );
        voters.push((v, sock, child));
    }
    let rest = Rest::new();
    wait_opinion(&rest, &apis(&f, &A_VOTERS), "a", "up").await;
    for (v, sock, _) in &voters {
        assert!(drain_pings(sock) > 0, "{v} pings while its loop turns");
    }
    f.stop_site(&site("a")).await;

    let frozen = eventually("the leader to freeze at the step's start", || {
        let once = once.clone();
        async move {
            std::fs::read_to_string(&once)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| "not yet".to_string())
        }
    })
    .await;
    for (_, sock, _) in &voters {
        drain_pings(sock);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (v, sock, _) in &voters {
        let pings = drain_pings(sock);
        if *v == frozen {
            assert_eq!(pings, 0, "{v}'s loop is frozen but it still pinged");
        } else {
            // 1.5 s at one ping every 200 ms: a generous floor for a loaded machine.
            assert!(pings >= 2, "{v} pinged only {pings} times in 1.5 s");
        }
    }
    drop(voters);
    f.shutdown().await;
}
