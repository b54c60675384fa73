//! The failover pipeline on a loopback fleet: after a DOWN verdict the leading voter waits the
//! takeover delay and runs the site's steps once, in order, through real actuators, with each
//! step journaled; the run shows on GET /v1/failovers of the leader.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use std::path::Path;

/// The fast fleet with a two-step exec pipeline on the watch of site a; each step appends
/// "EPOCH STEP KEY" to `log`.
fn fleet_with_plan(octet: u8, log: &Path) -> String {
    let step = |name: &str| {
        format!(
            r#"
[[watch.pipeline.step]]
name = "{name}"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "echo \"$QUORATE_EPOCH $QUORATE_STEP $QUORATE_IDEMPOTENCY_KEY\" >> {log}"]
"#,
            log = log.display()
        )
    };
    let watch_a = format!(
        "takeover_delay_s = 0.5\nself_fence_after_s = 0.2\n{}{}",
        step("promote-b"),
        step("notify")
    );
    fleet_watching_a(octet, "", &watch_a, "")
}

/// Waits until `log` has at least `n` lines.
async fn wait_lines(log: &Path, n: usize, what: &str) {
    eventually(what, || async move {
        let l = lines(log);
        if l.len() >= n {
            Ok(())
        } else {
            Err(format!("{l:?}"))
        }
    })
    .await;
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_down_verdict_runs_the_pipeline_once_under_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let mut f = LocalFleet::start(&fleet_with_plan(61, &log), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &["b1", "b2", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;

    f.stop_site(&site("a")).await;
    let shown = wait_verdict(&rest, &voters, "a", "down").await;

    wait_lines(&log, 2, "both steps to have run").await;
    // Give a second run (another voter, or a repeat) every chance to show up.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let l = lines(&log);
    let e = shown.epoch;
    assert_eq!(
        l,
        vec![
            format!("{e} promote-b a/{e}/step/0/promote-b"),
            format!("{e} notify a/{e}/step/1/notify")
        ],
        "each step exactly once, in order, with the verdict's epoch"
    );

    let leader = api(&f, &shown.leader);
    let runs = rest.get(leader, "/v1/failovers").await;
    let run = &runs["failovers"][0];
    assert_eq!(run["id"], format!("a-{e}"));
    assert_eq!(run["state"], "succeeded", "{runs}");
    assert_eq!(run["steps"].as_array().unwrap().len(), 2);
    let one = rest.get(leader, &format!("/v1/failovers/a-{e}")).await;
    assert_eq!(one["steps"][1]["name"], "notify");
    // The electorate holds the run's journal too: every voter shows the same run, led by
    // the leader, finished.
    for (name, addr) in &voters {
        let runs = eventually(&format!("{name} to hold the finished journal"), || {
            let rest = &rest;
            async move {
                let runs = rest.get(*addr, "/v1/failovers").await;
                if runs["failovers"][0]["state"] == "succeeded" {
                    Ok(runs)
                } else {
                    Err(runs.to_string())
                }
            }
        })
        .await;
        let list = runs["failovers"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{name}: {runs}");
        assert_eq!(list[0]["leader"], shown.leader.as_str(), "{name}: {runs}");
        assert_eq!(list[0]["term"], e, "{name}: {runs}");
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_restarted_after_its_run_does_not_run_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let mut f = LocalFleet::start(&fleet_with_plan(62, &log), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &["b1", "b2", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    f.stop_site(&site("a")).await;
    let shown = wait_verdict(&rest, &voters, "a", "down").await;
    wait_lines(&log, 2, "both steps to have run").await;
    let leader = n(&shown.leader);
    f.stop_node(&leader).await;
    f.start_node(&leader).await.expect("the leader restarts");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        lines(&log).len(),
        2,
        "the finished run is not run again: {:?}",
        lines(&log)
    );
    let runs = rest.get(api(&f, &shown.leader), "/v1/failovers").await;
    assert_eq!(
        runs["failovers"][0]["state"], "succeeded",
        "the journal still shows the run: {runs}"
    );
    f.shutdown().await;
}

/// The fast fleet with status every 100 ms and isolation steps for site a: each node of a that
/// is cut off from a majority of a's electorate appends "STEP SITE" to `log`.
fn fleet_with_isolation(octet: u8, log: &Path) -> String {
    let watch_a = format!(
        r#"takeover_delay_s = 1
self_fence_after_s = 0.5
[[watch.isolation]]
name = "withdraw-a"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "echo \"$QUORATE_STEP $QUORATE_SITE\" >> {log}"]"#,
        log = log.display()
    );
    fleet_watching_a(octet, "status_interval_ms = 100", &watch_a, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_cut_off_from_its_electorate_runs_its_isolation_steps_once_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("isolation.log");
    let mut f = LocalFleet::start(&fleet_with_isolation(63, &log), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let a_nodes = apis(&f, &["a1", "a2", "a3"]);
    wait_opinion(&rest, &apis(&f, &["b1", "c1"]), "a", "up").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        lines(&log).is_empty(),
        "a healthy site does not fence itself: {:?}",
        lines(&log)
    );

    // Every voter of a's electorate (b and c) goes away: a is alive but cut off.
    f.stop_site(&site("b")).await;
    f.stop_site(&site("c")).await;
    wait_lines(&log, 3, "every node of a to run its isolation step").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        lines(&log),
        vec!["withdraw-a a".to_string(); 3],
        "once per node of a"
    );
    for (name, addr) in &a_nodes {
        let st = rest.get(*addr, "/v1/status").await;
        assert_eq!(st["isolation"]["isolated"], true, "{name}: {st}");
    }

    // The electorate comes back: the nodes of a report the reconnection.
    for id in ["b1", "b2", "b3", "c1", "c2"] {
        f.start_node(&n(id)).await.expect("restart");
    }
    for (name, addr) in &a_nodes {
        let rest = rest.clone();
        let addr = *addr;
        eventually(&format!("{name} to be reconnected"), || {
            let rest = rest.clone();
            async move {
                let st = rest.try_get(addr, "/v1/status").await?;
                if st["isolation"]["isolated"] == false && st["isolation"]["isolations"] == 1 {
                    Ok(())
                } else {
                    Err(st["isolation"].to_string())
                }
            }
        })
        .await;
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_never_seen_up_gets_its_verdict_but_no_failover() {
    // Bringing up a fleet whose site a has not started yet: the electorate rightly judges a
    // DOWN, but that is no disaster, so nothing may run.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let mut f =
        LocalFleet::prepare(&fleet_with_plan(64, &log), None, true).expect("fleet prepared");
    for id in ["b1", "b2", "b3", "c1", "c2"] {
        f.start_node(&n(id)).await.expect("node starts");
    }
    let rest = Rest::new();
    let voters = apis(&f, &["b1", "b2", "c1", "c2"]);
    wait_verdict(&rest, &voters, "a", "down").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(lines(&log).is_empty(), "no step may run: {:?}", lines(&log));
    for (name, addr) in &voters {
        let runs = rest.get(*addr, "/v1/failovers").await;
        assert_eq!(
            runs["failovers"].as_array().unwrap().len(),
            0,
            "{name}: {runs}"
        );
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verdict_replaced_during_the_takeover_delay_drops_its_run_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let text = fleet_with_plan(65, &log).replace("takeover_delay_s = 0.5", "takeover_delay_s = 4");
    let mut f = LocalFleet::start(&text, None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &["b1", "b2", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    let stopped = f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    // a comes back well inside the takeover delay.
    for id in &stopped {
        f.start_node(id).await.expect("a's node restarts");
    }
    wait_verdict(&rest, &voters, "a", "up").await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(lines(&log).is_empty(), "no step ran: {:?}", lines(&log));
    for (name, addr) in &voters {
        let runs = rest.get(*addr, "/v1/failovers").await;
        let run = runs["failovers"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["epoch"] == down.epoch).cloned())
            .unwrap_or_else(|| panic!("{name} does not show run a-{}: {runs}", down.epoch));
        assert_eq!(run["state"], "dropped", "{name}: {run}");
    }
    f.shutdown().await;
}
