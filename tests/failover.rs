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
    let text = fleet_text(octet);
    let cut = text.find("[[watch]]").expect("the fleet has watches");
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
    format!(
        r#"{head}
[[watch]]
site = "a"
by = ["b", "c"]
takeover_delay_s = 0.5
self_fence_after_s = 0.2
{first}{second}
[[watch]]
site = "b"
by = ["a", "c"]
"#,
        head = &text[..cut],
        first = step("promote-b"),
        second = step("notify"),
    )
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

    let log2 = log.clone();
    eventually("both steps to have run", || {
        let log = log2.clone();
        async move {
            let l = lines(&log);
            if l.len() >= 2 {
                Ok(l)
            } else {
                Err(format!("{l:?}"))
            }
        }
    })
    .await;
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
    // Followers lead nothing.
    for (name, addr) in &voters {
        if *name != shown.leader {
            let runs = rest.get(*addr, "/v1/failovers").await;
            assert_eq!(
                runs["failovers"].as_array().unwrap().len(),
                0,
                "{name}: {runs}"
            );
        }
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
    let log2 = log.clone();
    eventually("both steps to have run", || {
        let log = log2.clone();
        async move {
            let l = lines(&log);
            if l.len() >= 2 {
                Ok(())
            } else {
                Err(format!("{l:?}"))
            }
        }
    })
    .await;
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
