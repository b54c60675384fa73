//! The fleet-wide operator lock on a loopback fleet: two operators calling `POST /v1/failovers`
//! at two voters at the same moment get one run; one call answers 202 with it, the other 409
//! naming it. A node outside the site's electorate sends the operator elsewhere.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "lock-token-93a2";
const ROUNDS: usize = 20;

/// The fast fleet with a two-step plan on the watch of site a; every step that is not a dry
/// run appends "EPOCH STEP" to `effects`.
fn fleet(octet: u8, token: &Path, effects: &Path) -> String {
    let script = format!(
        "[ \"$QUORATE_DRY_RUN\" = 1 ] || echo \"$QUORATE_EPOCH $QUORATE_STEP\" >> {}",
        effects.display()
    );
    let watch_a = format!(
        r#"takeover_delay_s = 0.5
self_fence_after_s = 0.2

[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", '{script}']

[watch.pipeline.step.compensation]
name = "demote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", '{script}']

[[watch.pipeline.step]]
name = "notify"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", '{script}']"#
    );
    let api = format!("\n[api]\ntoken_file = '{}'\n", token.display());
    fleet_watching_a(octet, "", &watch_a, &api)
}

async fn failover(addr: SocketAddr, reason: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = client
        .request(Method::POST, format!("http://{addr}/v1/failovers"))
        .bearer_auth(TOKEN)
        .json(&json!({ "site": "a", "reason": reason }))
        .send()
        .await
        .expect("the node answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("a JSON body"))
}

/// The ids of the runs every voter of `voters` shows in GET /v1/failovers, with their triggers.
async fn runs_shown(rest: &Rest, voters: &[(&str, SocketAddr)]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (_, addr) in voters {
        let runs = rest.get(*addr, "/v1/failovers").await;
        for r in runs["failovers"].as_array().unwrap() {
            out.insert((
                r["id"].as_str().unwrap().to_string(),
                r["trigger"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_manual_failovers_at_two_voters_give_one_run_every_round() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let effects = dir.path().join("effects.log");
    let f = LocalFleet::start(&fleet(93, &token, &effects), None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    // Every pair of two different voters, both ways round.
    let pairs: Vec<(usize, usize)> = (0..voters.len())
        .flat_map(|i| (0..voters.len()).map(move |j| (i, j)))
        .filter(|(i, j)| i != j)
        .collect();
    let mut seen = runs_shown(&rest, &voters).await;
    assert!(seen.is_empty(), "no run before the first call: {seen:?}");
    let mut epochs = Vec::new();
    for round in 0..ROUNDS {
        let (i, j) = pairs[round % pairs.len()];
        let ((x, xa), (y, ya)) = (voters[i], voters[j]);
        let reason = format!("round {round}");
        let (at_x, at_y) = tokio::join!(failover(xa, &reason), failover(ya, &reason));
        let (won, lost, winner) = match (at_x.0, at_y.0) {
            (202, 409) => (at_x.1, at_y.1, x),
            (409, 202) => (at_y.1, at_x.1, y),
            _ => panic!("round {round}: {x} answered {at_x:?}, {y} answered {at_y:?}"),
        };
        let id = won["id"].as_str().unwrap().to_string();
        assert_eq!(won["leader"], winner, "round {round}: {won}");
        assert_eq!(won["trigger"], "manual", "round {round}: {won}");
        assert_eq!(
            lost["run"], id,
            "round {round}: the 409 names the run: {lost}"
        );
        assert_eq!(lost["leader"], winner, "round {round}: {lost}");
        let msg = lost["error"].as_str().unwrap();
        assert!(
            msg.contains(&id) && msg.contains(winner),
            "round {round}: {msg}"
        );
        epochs.push(won["epoch"].as_u64().unwrap());

        // Wait for the run to end where it is led, before the next round.
        let leader = api(&f, winner);
        eventually(&format!("run {id} to finish"), || {
            let (rest, id) = (&rest, &id);
            async move {
                let runs = rest.try_get(leader, "/v1/failovers").await?;
                let run = runs["failovers"]
                    .as_array()
                    .and_then(|l| l.iter().find(|r| r["id"] == *id).cloned())
                    .ok_or(format!("{runs}"))?;
                match run["state"].as_str() {
                    Some("succeeded") => Ok(()),
                    Some("running" | "waiting") => Err(run.to_string()),
                    _ => panic!("run {id} ended badly: {run}"),
                }
            }
        })
        .await;
        let now = runs_shown(&rest, &voters).await;
        let new: Vec<_> = now.difference(&seen).cloned().collect();
        assert_eq!(
            new,
            vec![(id.clone(), "manual".to_string())],
            "round {round}: exactly one new run across the voters"
        );
        seen = now;
    }
    let distinct: BTreeSet<u64> = epochs.iter().copied().collect();
    assert_eq!(distinct.len(), ROUNDS, "one epoch per run: {epochs:?}");

    // Every run's steps ran once, each under its own epoch; nothing else ran.
    let want: BTreeSet<String> = epochs
        .iter()
        .flat_map(|e| [format!("{e} promote-b"), format!("{e} notify")])
        .collect();
    let lines = eventually("every step's side effect", || {
        let (effects, want) = (&effects, &want);
        async move {
            let text = std::fs::read_to_string(effects).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= want.len() {
                Ok(lines)
            } else {
                Err(format!("{} of {} lines", lines.len(), want.len()))
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = std::fs::read_to_string(&effects).unwrap();
    let all: Vec<&str> = text.lines().collect();
    assert_eq!(all.len(), want.len(), "no step ran twice: {all:?}");
    let got: BTreeSet<String> = lines.into_iter().collect();
    assert_eq!(got, want);

    // a1 is not a member of a's electorate: it cannot take the lock and says who can.
    let (code, body) = failover(api(&f, "a1"), "from inside the site").await;
    assert_eq!(code, 403, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(A_VOTERS.iter().all(|v| msg.contains(v)), "{msg}");
    f.shutdown().await;
}
