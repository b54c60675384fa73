//! A fleet reload rebuilds everything derived from the fleet file. Three of the four voters
//! that judge site a are replaced by new nodes through a reload while the fleet runs: site a's
//! nodes must fence against the new electorate (all heard), not the old one (mostly gone), so
//! no isolation step runs, no verdict is reached and no failover starts.

mod common;

use common::*;
use quorate::config::Fleet;
use quorate::localfleet::LocalFleet;
use std::path::Path;
use std::time::Duration;

/// The fast fleet with status every 100 ms, a plan for site a and isolation steps that append
/// to `log`.
fn fleet_with_isolation(octet: u8, log: &Path) -> String {
    let watch_a = format!(
        r#"takeover_delay_s = 1
self_fence_after_s = 0.5
[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "echo \"run $QUORATE_STEP\" >> {log}"]
[[watch.isolation]]
name = "withdraw-a"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "echo \"isolation $QUORATE_STEP $QUORATE_SITE\" >> {log}"]"#,
        log = log.display()
    );
    fleet_watching_a(octet, "status_interval_ms = 100", &watch_a, "")
}

/// Replaces voter `old` (id and addresses) by `new` at the last octet `host` of its site.
fn replace_node(
    text: &str,
    octet: u8,
    site: u8,
    old: &str,
    old_host: u8,
    new: &str,
    host: u8,
) -> String {
    text.replace(&format!("\"{old}\""), &format!("\"{new}\""))
        .replace(
            &format!("\"127.{octet}.{site}.{old_host}:"),
            &format!("\"127.{octet}.{site}.{host}:"),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replacing_a_voter_by_reload_fences_nothing_and_decides_nothing() {
    init_tracing();
    let octet = 67;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let text = fleet_with_isolation(octet, &log);
    let mut f = LocalFleet::start(&text, None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    wait_opinion(&rest, &apis(&f, &A_VOTERS), "a", "up").await;

    // c2 makes way for c9, as an operator does it: the new node starts, the changed file goes
    // to every node, and the retired one is stopped once the file is everywhere.
    let new_text = replace_node(&text, octet, 3, "c2", 2, "c9", 9);
    let new_fleet = Fleet::parse(&new_text).expect("the changed fleet is valid");
    f.issue_cert(&n("c9"))
        .expect("a certificate for the new node");
    let c2_api = api(&f, "c2");
    f.fleet = new_fleet.clone();
    f.start_node(&n("c9")).await.expect("the new node starts");
    std::fs::write(&f.fleet_path, &new_text).expect("the fleet file changes");

    let stays = apis(&f, &["a1", "a2", "a3", "b1", "b2", "c1", "c9"]);
    for (name, addr) in &stays {
        let rest = rest.clone();
        let addr = *addr;
        let want = new_fleet.hash.clone();
        eventually(&format!("{name} to run the new fleet"), || {
            let rest = rest.clone();
            let want = want.clone();
            async move {
                let st = rest.try_get(addr, "/v1/status").await?;
                if st["fleet_hash"] == want.as_str() {
                    Ok(())
                } else {
                    Err(st["fleet_hash"].to_string())
                }
            }
        })
        .await;
    }
    // The node the file no longer lists says so and stops voting.
    eventually("c2 to retire", || {
        let rest = rest.clone();
        async move {
            let st = rest.try_get(c2_api, "/v1/status").await?;
            let why = st["voting_disabled"].as_str().unwrap_or_default();
            if why.contains("not in the fleet file") {
                Ok(())
            } else {
                Err(st["voting_disabled"].to_string())
            }
        }
    })
    .await;
    let voters = apis(&f, &["b1", "b2", "c1", "c9"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    f.stop_node(&n("c2")).await;

    // Several self-fence delays and a takeover delay, under probe and status traffic.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steps = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(steps.is_empty(), "no isolation step and no run: {steps}");
    for (name, addr) in &apis(&f, &["a1", "a2", "a3"]) {
        let st = rest.get(*addr, "/v1/status").await;
        assert_eq!(
            st["isolation"]["isolations"], 0,
            "{name}: {}",
            st["isolation"]
        );
        assert_eq!(st["isolation"]["heard"], 4, "{name}: {}", st["isolation"]);
    }
    for (name, addr) in &voters {
        let s = rest.site(*addr, "a").await;
        assert_eq!(s["verdict"], "none", "{name}: {s}");
        let runs = rest.get(*addr, "/v1/failovers").await;
        assert_eq!(runs["failovers"], serde_json::json!([]), "{name}: {runs}");
    }
    // The new electorate decides: a blackout of a is declared by it.
    f.stop_site(&site("a")).await;
    wait_verdict(&rest, &voters, "a", "down").await;
    f.shutdown().await;
}
