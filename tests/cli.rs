//! The `quorate` binary as an operator uses it against a running loopback fleet: status,
//! verdicts and failovers as tables and as JSON, the node and token taken from QUORATE_API
//! and QUORATE_TOKEN_FILE, a manual failover and its step timeline; and the completion
//! scripts and man page generated from the same definitions.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;

const TOKEN: &str = "cli-token-91ad";

/// The fast fleet on `octet` with a one-step plan on the watch of site a that prints a line,
/// and an operator token.
fn fleet(octet: u8, token: &Path) -> String {
    fleet_watching_a(
        octet,
        "",
        "takeover_delay_s = 0.5\nself_fence_after_s = 0.2\n\n\
         [[watch.pipeline.step]]\nname = \"promote-b\"\nkind = \"exec\"\ntimeout_s = 5\n\
         argv = [\"/bin/sh\", \"-c\", \"echo promoted at epoch $QUORATE_EPOCH\"]\n",
        &format!("\n[api]\ntoken_file = '{}'\n", token.display()),
    )
}

/// The line of `table` whose first cell is `first`, split into its cells.
fn row(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}

async fn wait_every_peer_reachable(rest: &Rest, addr: SocketAddr) {
    eventually("b1 to hear from every peer", || async move {
        let s = rest.try_get(addr, "/v1/status").await?;
        let peers = s["peers"].as_array().cloned().unwrap_or_default();
        if peers.len() == 7 && peers.iter().all(|p| p["reachable"] == true) {
            Ok(())
        } else {
            Err(s["peers"].to_string())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_verdicts_and_failovers_print_tables_of_a_running_fleet() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut f = LocalFleet::start(&fleet(57, &token), None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    let b1 = api(&f, "b1");
    wait_every_peer_reachable(&rest, b1).await;
    let b1_text = b1.to_string();
    let by_env = [("QUORATE_API", b1_text.as_str())];

    // The table, with the node from the environment.
    let status = quorate(&["status"], &by_env).await;
    let hash: String = f.fleet.hash.chars().take(12).collect();
    assert!(
        status.starts_with(&format!(
            "node b1  site b  roles indicator, pinger, voter  fleet {hash}\n"
        )),
        "{status}"
    );
    // b1 probes a; it does not judge its own site b.
    for (site, opinion) in [("a", "up"), ("b", "unknown")] {
        let r = row(&status, site);
        assert_eq!(&r[..3], [site, opinion, "none"], "{status}");
        assert_eq!(
            r.last().map(String::as_str),
            Some("-"),
            "no run yet: {status}"
        );
    }
    for peer in ["a1", "a2", "a3", "b2", "b3", "c1", "c2"] {
        let r = row(&status, peer);
        assert_eq!(r[2], "yes", "{status}");
        assert_eq!(r[4], format!("{hash} (same)"), "{status}");
    }

    // JSON is the node's own answer; --api wins over nothing in the environment.
    let json: Value =
        serde_json::from_str(&quorate(&["status", "--api", &b1_text, "-o", "json"], &[]).await)
            .expect("JSON");
    assert_eq!(json["node"], "b1");
    let site: Value = serde_json::from_str(
        &quorate(&["status", "--site", "a", "--output", "json"], &by_env).await,
    )
    .expect("JSON");
    assert_eq!(site["id"], "a");
    let detail = quorate(&["status", "--site", "a"], &by_env).await;
    assert!(
        detail.starts_with("site a  opinion up  verdict none"),
        "{detail}"
    );
    assert!(
        detail.contains("electorate   b1, b2, c1, c2 (majority 3)"),
        "{detail}"
    );
    let a1 = row(&detail, "b1");
    assert_eq!(a1[4..6], ["a1".to_string(), "yes".to_string()], "{detail}");

    assert_eq!(quorate(&["verdicts"], &by_env).await, "no verdicts yet\n");
    assert_eq!(
        quorate(&["verdicts", "--site", "a", "--limit", "5"], &by_env).await,
        "no verdicts yet\n"
    );
    assert_eq!(
        quorate(&["failovers"], &by_env).await,
        "no failover runs on this node\n"
    );

    // A manual failover, token from the environment: the answer as fields, then the run.
    let token_text = token.display().to_string();
    let op_env = [
        ("QUORATE_API", b1_text.as_str()),
        ("QUORATE_TOKEN_FILE", token_text.as_str()),
    ];
    // A drill answers with its report, shown as a timeline.
    let drill = quorate(&["drill", "a"], &op_env).await;
    assert!(drill.starts_with("drill of site a  site a"), "{drill}");
    let step = row(&drill, "1");
    assert_eq!(step[1..3], ["step/0", "promote-b"], "{drill}");
    assert_eq!(step.last().map(String::as_str), Some("ok"), "{drill}");

    let started = quorate(&["failover", "a", "--reason", "cli test"], &op_env).await;
    let id = row(&started, "id")[1].clone();
    assert!(id.starts_with("a-"), "{started}");
    assert_eq!(row(&started, "trigger")[1], "manual", "{started}");
    assert_eq!(row(&started, "reason")[1], "cli test", "{started}");
    assert!(
        started.ends_with(&format!("follow it: quorate failovers {id} --api {b1}\n")),
        "{started}"
    );

    eventually(&format!("run {id} to succeed"), || {
        let rest = &rest;
        let id = id.clone();
        async move {
            let run = rest.try_get(b1, &format!("/v1/failovers/{id}")).await?;
            (run["state"] == "succeeded")
                .then_some(())
                .ok_or(run.to_string())
        }
    })
    .await;

    let list = quorate(&["failovers"], &by_env).await;
    let r = row(&list, &id);
    assert_eq!(
        r[1..7],
        ["a", "manual", "succeeded", &r[4], "b1", "1/1"],
        "{list}"
    );

    let status = quorate(&["status"], &by_env).await;
    assert_eq!(
        row(&status, "a").last().cloned(),
        Some(format!("{id} succeeded")),
        "{status}"
    );

    // A maintenance window: the answer's fields, then a note under the sites table.
    let window = quorate(&["maintenance", "a", "--for", "1h"], &op_env).await;
    assert_eq!(row(&window, "site")[1], "a", "{window}");
    assert!(
        row(&window, "maintenance_until")[1].ends_with('Z'),
        "{window}"
    );
    let status = quorate(&["status"], &by_env).await;
    assert!(status.contains("a: maintenance until "), "{status}");
    quorate(&["maintenance", "a", "--end"], &op_env).await;
    let status = quorate(&["status"], &by_env).await;
    assert!(!status.contains("a: maintenance until "), "{status}");

    // The timeline, with the step's output shown to the token holder.
    let timeline = quorate(&["failovers", &id, "--token-file", &token_text], &by_env).await;
    assert!(
        timeline.starts_with(&format!("run {id}  site a")),
        "{timeline}"
    );
    let step = row(&timeline, "1");
    assert_eq!(step[1..3], ["step/0", "promote-b"], "{timeline}");
    assert_eq!(step[3], "+0.000 s", "{timeline}");
    assert_eq!(step.last().map(String::as_str), Some("ok"), "{timeline}");
    let epoch = id.trim_start_matches("a-");
    assert!(
        timeline.contains("promote-b:\n    ")
            && timeline.contains(&format!("promoted at epoch {epoch}")),
        "{timeline}"
    );

    // A blackout of a: the committed verdict in the verdicts table and the sites table.
    f.stop_site(&common::site("a")).await;
    let shown = wait_verdict(&rest, &[("b1", b1)], "a", "down").await;
    let verdicts = quorate(&["verdicts", "--site", "a"], &by_env).await;
    let epoch = shown.epoch.to_string();
    let r = row(&verdicts, "a");
    assert_eq!(
        r[1..5],
        ["down", epoch.as_str(), "0", shown.leader.as_str()],
        "{verdicts}"
    );
    assert!(r[5].ends_with(" ago)"), "{verdicts}");
    let status = quorate(&["status"], &by_env).await;
    let r = row(&status, "a");
    assert_eq!(
        r[1..5],
        ["down", "down", epoch.as_str(), shown.leader.as_str()],
        "{status}"
    );
    // The hold-down against a second automatic failover shows under the table.
    assert!(
        status.contains("a: no automatic failover before "),
        "{status}"
    );
    f.shutdown().await;
}

#[tokio::test]
async fn completions_and_the_man_page_come_from_the_command_definitions() {
    let bash = quorate(&["completions", "bash"], &[]).await;
    for word in ["failovers", "verdicts", "--token-file", "--output"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let zsh = quorate(&["completions", "zsh"], &[]).await;
    assert!(zsh.starts_with("#compdef quorate"), "{}", &zsh[..80]);
    let fish = quorate(&["completions", "fish"], &[]).await;
    assert!(fish.contains("complete -c quorate"), "fish");

    let man = quorate(&["man"], &[]).await;
    assert!(man.contains(".TH quorate 1"), "{}", &man[..200]);
    assert!(
        man.contains("quorate\\-status(1)"),
        "man page lists subcommands"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    quorate(&["man", "--dir", &out.display().to_string()], &[]).await;
    for page in ["quorate.1", "quorate-status.1", "quorate-certs-init.1"] {
        let text =
            std::fs::read_to_string(out.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let status_page = std::fs::read_to_string(out.join("quorate-status.1")).unwrap();
    assert!(
        status_page.contains("QUORATE_API"),
        "the env var is on the page"
    );
}
