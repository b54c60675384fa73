//! Gray failures on a loopback fleet: site a's Indicators run an exec service check
//! (`[[site.check]]`) whose result the test sets per node with a file, and the watch on a
//! judges the service. Hosts stay up throughout; only the service changes.
//!
//! - the service stopped on every Indicator of a: DOWN verdict and the failover pipeline runs;
//! - stopped on one Indicator: its failing checks show in the evidence, no verdict;
//! - flapping faster than rise/fall on every Indicator: no verdict.
//! - a reload that adds the checks and `judge = "service"` to a running fleet starts them.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const INDICATORS_OF_A: [&str; 3] = ["a1", "a2", "a3"];

/// The fast fleet with an exec check on site a that passes while `dir/up-<node>` exists,
/// judged by service, and a one-step pipeline that appends the epoch to `dir/failover.log`.
fn fleet(octet: u8, dir: &Path) -> String {
    fleet_judged_by(octet, dir, true)
}

/// `fleet`, or without `judge` and checks when `service` is false.
fn fleet_judged_by(octet: u8, dir: &Path, service: bool) -> String {
    let d = dir.display();
    let judge = if service { "judge = \"service\"" } else { "" };
    let watch_a = format!(
        r#"{judge}
takeover_delay_s = 0.5
self_fence_after_s = 0.2
[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "echo $QUORATE_EPOCH >> {d}/failover.log"]
"#
    );
    let text = fleet_watching_a(octet, "", &watch_a, "");
    if !service {
        return text;
    }
    let site_a = "[[site]]\nid   = \"a\"\nkind = \"primary\"\n";
    assert!(text.contains(site_a));
    let check = format!(
        r#"
[[site.check]]
name = "svc"
kind = "exec"
argv = ["/bin/sh", "-c", "test -e {d}/up-$QUORATE_NODE"]
interval_ms = 200
timeout_ms = 200
rise = 2
fall = 3
"#
    );
    text.replacen(site_a, &format!("{site_a}{check}"), 1)
}

fn flag(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("up-{node}"))
}

fn service_up(dir: &Path, node: &str, up: bool) {
    if up {
        std::fs::write(flag(dir, node), b"").unwrap();
    } else {
        let _ = std::fs::remove_file(flag(dir, node));
    }
}

/// Starts the fleet with the service up on every Indicator of a and waits for a to be UP.
async fn start(octet: u8, dir: &Path) -> LocalFleet {
    for n in INDICATORS_OF_A {
        service_up(dir, n, true);
    }
    let f = LocalFleet::start(&fleet(octet, dir), None, true)
        .await
        .expect("the fleet starts");
    wait_opinion(&Rest::new(), &apis(&f, &A_VOTERS), "a", "up").await;
    f
}

/// What b1's own Pinger last heard of `indicator`'s service.
async fn service_seen_by_b1(
    rest: &Rest,
    f: &LocalFleet,
    indicator: &str,
) -> Result<String, String> {
    let s = rest.try_get(api(f, "b1"), "/v1/sites/a").await?;
    s["evidence"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["pinger"] == "b1"))
        .and_then(|e| e["indicators"].as_array())
        .and_then(|l| l.iter().find(|i| i["node"] == indicator))
        .and_then(|i| i["service"].as_str().map(str::to_string))
        .ok_or_else(|| format!("no service of {indicator} in {s}"))
}

fn failover_log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("failover.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// No voter shows a verdict on a, and b1 still holds it up.
async fn assert_no_verdict(rest: &Rest, f: &LocalFleet) {
    for (name, addr) in apis(f, &A_VOTERS) {
        let s = rest.site(addr, "a").await;
        assert_eq!(s["verdict"], "none", "{name} shows a verdict: {s}");
    }
    assert_eq!(rest.site(api(f, "b1"), "a").await["opinion"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_dead_on_every_indicator_while_hosts_answer_fails_the_site_over() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let f = start(181, dir.path()).await;
    let rest = Rest::new();
    assert_eq!(rest.site(api(&f, "b1"), "a").await["judge"], "service");

    for n in INDICATORS_OF_A {
        service_up(dir.path(), n, false);
    }
    let shown = wait_verdict(&rest, &apis(&f, &A_VOTERS), "a", "down").await;
    eventually("the failover step to run", || async {
        let l = failover_log(dir.path());
        if l == vec![shown.epoch.to_string()] {
            Ok(())
        } else {
            Err(format!("{l:?}"))
        }
    })
    .await;

    // The hosts never stopped answering: the evidence says why they count as missed.
    for n in INDICATORS_OF_A {
        assert_eq!(service_seen_by_b1(&rest, &f, n).await.unwrap(), "failing");
    }
    let status = rest.get(api(&f, "a1"), "/v1/status").await;
    assert_eq!(status["service_health"], "failing", "{status}");
    assert_eq!(status["service_checks"][0]["name"], "svc");
    assert_eq!(status["service_checks"][0]["state"], "failing");
    let metrics = rest.metrics(api(&f, "a1")).await;
    assert_eq!(
        metric(
            &metrics,
            r#"quorate_service_check_passing{check="svc",kind="exec"}"#
        ),
        Some(0.0),
        "{metrics}"
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_dead_on_one_indicator_gives_no_verdict() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let f = start(182, dir.path()).await;
    let rest = Rest::new();

    service_up(dir.path(), "a1", false);
    eventually("b1 to hear a1's service failing", || async {
        match service_seen_by_b1(&rest, &f, "a1").await? {
            s if s == "failing" => Ok(()),
            s => Err(s),
        }
    })
    .await;
    // Several detection budgets with a1 answering "failing".
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        service_seen_by_b1(&rest, &f, "a2").await.unwrap(),
        "passing"
    );
    assert_no_verdict(&rest, &f).await;
    assert!(failover_log(dir.path()).is_empty());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_flapping_faster_than_rise_and_fall_gives_no_verdict() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let f = start(183, dir.path()).await;
    let rest = Rest::new();

    // Down 250 ms of every 800 ms on every Indicator at once: checks 200 ms apart see at most
    // two failures in a row, and fall = 3.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < until {
        for n in INDICATORS_OF_A {
            service_up(dir.path(), n, false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        for n in INDICATORS_OF_A {
            service_up(dir.path(), n, true);
        }
        tokio::time::sleep(Duration::from_millis(550)).await;
    }
    let status = rest.get(api(&f, "a1"), "/v1/status").await;
    let check = &status["service_checks"][0];
    assert!(
        check["failures"].as_u64().unwrap() >= 3,
        "the flaps were seen: {check}"
    );
    assert_eq!(check["state"], "passing", "{check}");
    assert_no_verdict(&rest, &f).await;
    assert!(failover_log(dir.path()).is_empty());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_that_adds_checks_and_judges_the_service_starts_them() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // The service is down on every Indicator from the start, but nobody checks it yet.
    let f = LocalFleet::start(&fleet_judged_by(184, dir.path(), false), None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    wait_opinion(&rest, &apis(&f, &A_VOTERS), "a", "up").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_no_verdict(&rest, &f).await;
    assert_eq!(rest.site(api(&f, "b1"), "a").await["judge"], "host");

    let changed = fleet_judged_by(184, dir.path(), true);
    std::fs::write(&f.fleet_path, &changed).unwrap();
    for id in f.running() {
        f.handle(&id).expect("running").reload_fleet();
    }
    let shown = wait_verdict(&rest, &apis(&f, &A_VOTERS), "a", "down").await;
    assert_eq!(rest.site(api(&f, "b1"), "a").await["judge"], "service");
    let status = rest.get(api(&f, "a2"), "/v1/status").await;
    assert_eq!(status["service_checks"][0]["state"], "failing", "{status}");
    eventually("the failover step to run", || async {
        let l = failover_log(dir.path());
        if l == vec![shown.epoch.to_string()] {
            Ok(())
        } else {
            Err(format!("{l:?}"))
        }
    })
    .await;
    f.shutdown().await;
}
