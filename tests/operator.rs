//! The operator API on a loopback fleet: the bearer token rule of mutating calls, drills (a
//! dry run with no side effect), manual failovers, maintenance windows and failbacks.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOKEN: &str = "op-token-5f1c";

/// Files of one test: the token, what the steps saw, and their side effects.
struct Files {
    _dir: tempfile::TempDir,
    token: PathBuf,
    /// "STEP DRY_RUN" per step call, dry run or not.
    seen: PathBuf,
    /// "EPOCH STEP" per step call that is not a dry run: the side effect.
    effects: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    Files {
        seen: dir.path().join("seen.log"),
        effects: dir.path().join("effects.log"),
        token,
        _dir: dir,
    }
}

/// The fast fleet with a plan on the watch of site a: step "promote-b" (compensation
/// "demote-b") then "notify". Each call records what it saw and, unless it is a dry run,
/// appends its side effect. `slow`: promote-b takes a second. `with_token`: an [api] table.
fn fleet(octet: u8, f: &Files, slow: bool, with_token: bool) -> String {
    let text = fleet_text(octet);
    let cut = text.find("[[watch]]").expect("the fleet has watches");
    let script = |pause: &str| {
        format!(
            "{pause}echo \"$QUORATE_STEP $QUORATE_DRY_RUN\" >> {seen}; \
             [ \"$QUORATE_DRY_RUN\" = 1 ] || echo \"$QUORATE_EPOCH $QUORATE_STEP\" >> {effects}",
            seen = f.seen.display(),
            effects = f.effects.display()
        )
    };
    let api = if with_token {
        format!("\n[api]\ntoken_file = '{}'\n", f.token.display())
    } else {
        String::new()
    };
    format!(
        r#"{head}
[[watch]]
site = "a"
by = ["b", "c"]
takeover_delay_s = 0.5
self_fence_after_s = 0.2

[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", '{promote}']

[watch.pipeline.step.compensation]
name = "demote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", '{plain}']

[[watch.pipeline.step]]
name = "notify"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", '{plain}']

[[watch]]
site = "b"
by = ["a", "c"]
{api}"#,
        head = &text[..cut],
        promote = script(if slow { "sleep 1; " } else { "" }),
        plain = script(""),
    )
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Status and JSON body of a call with an optional bearer token and JSON body.
async fn call(
    method: Method,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut req = client.request(method, format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the node answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("a JSON body"))
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    call(Method::POST, addr, path, Some(TOKEN), Some(body)).await
}

/// Waits until `p` has at least `n` lines.
async fn wait_lines(p: &Path, n: usize) -> Vec<String> {
    eventually(&format!("{n} lines in {}", p.display()), || async move {
        let l = lines(p);
        if l.len() >= n {
            Ok(l)
        } else {
            Err(format!("{l:?}"))
        }
    })
    .await
}

/// The run `id` in the node's GET /v1/failovers once it is no longer running.
async fn finished_run(rest: &Rest, addr: SocketAddr, id: &str) -> Value {
    eventually(&format!("run {id} to finish"), || async move {
        let runs = rest.try_get(addr, "/v1/failovers").await?;
        let run = runs["failovers"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["id"] == id).cloned())
            .ok_or(format!("{runs}"))?;
        if run["state"] == "running" || run["state"] == "waiting" {
            Err(run.to_string())
        } else {
            Ok(run)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutating_calls_need_the_configured_bearer_token() {
    let fs = files();
    let f = LocalFleet::start(&fleet(71, &fs, false, true), None, true)
        .await
        .expect("fleet starts");
    let b1 = api(&f, "b1");
    let drill = json!({ "site": "a" });

    let (code, body) = call(Method::POST, b1, "/v1/drills", None, Some(drill.clone())).await;
    assert_eq!(code, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    let (code, body) = call(
        Method::POST,
        b1,
        "/v1/drills",
        Some("not-the-token"),
        Some(drill.clone()),
    )
    .await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = call(Method::DELETE, b1, "/v1/sites/a/maintenance", None, None).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = call(
        Method::POST,
        b1,
        "/v1/failovers",
        Some("wrong"),
        Some(json!({"site": "a", "reason": "x"})),
    )
    .await;
    assert_eq!(code, 401, "{body}");

    // With the token: the body and the site are checked.
    let (code, body) = post(b1, "/v1/drills", json!({ "site": "a", "force": true })).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("force"), "{body}");
    let (code, body) = post(b1, "/v1/drills", json!({ "site": "zz" })).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = post(
        b1,
        "/v1/sites/a/maintenance",
        json!({ "duration_s": 60, "until": "2030-01-01T00:00:00Z" }),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    // Nothing ran.
    assert!(lines(&fs.seen).is_empty());
    let runs = Rest::new().get(b1, "/v1/failovers").await;
    assert_eq!(runs["failovers"].as_array().unwrap().len(), 0, "{runs}");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_configured_token_mutating_calls_are_forbidden() {
    let fs = files();
    let f = LocalFleet::start(&fleet(72, &fs, false, false), None, true)
        .await
        .expect("fleet starts");
    let b1 = api(&f, "b1");
    for (method, path, body) in [
        (Method::POST, "/v1/drills", Some(json!({"site": "a"}))),
        (
            Method::POST,
            "/v1/failovers",
            Some(json!({"site": "a", "reason": "test"})),
        ),
        (Method::POST, "/v1/failbacks", Some(json!({"site": "a"}))),
        (
            Method::POST,
            "/v1/sites/a/maintenance",
            Some(json!({"duration_s": 60})),
        ),
        (Method::DELETE, "/v1/sites/a/maintenance", None),
    ] {
        let (code, answer) = call(method, b1, path, Some(TOKEN), body).await;
        assert_eq!(code, 403, "{path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("set [api] token_file"),
            "{answer}"
        );
    }
    assert!(lines(&fs.seen).is_empty());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drill_runs_every_step_as_a_dry_run_without_side_effects() {
    let fs = files();
    let f = LocalFleet::start(&fleet(73, &fs, false, true), None, true)
        .await
        .expect("fleet starts");
    let b1 = api(&f, "b1");
    let (code, report) = post(b1, "/v1/drills", json!({ "site": "a" })).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["dry_run"], true, "{report}");
    assert_eq!(report["state"], "succeeded", "{report}");
    let steps = report["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["promote-b", "notify"], "{report}");
    assert!(steps.iter().all(|s| s["ok"] == true), "{report}");
    assert_eq!(
        lines(&fs.seen),
        ["promote-b 1", "notify 1"],
        "every step ran once and saw QUORATE_DRY_RUN=1"
    );
    assert!(
        lines(&fs.effects).is_empty(),
        "a dry run has no side effect: {:?}",
        lines(&fs.effects)
    );
    // Not a failover run: nothing in GET /v1/failovers.
    let runs = Rest::new().get(b1, "/v1/failovers").await;
    assert_eq!(runs["failovers"].as_array().unwrap().len(), 0, "{runs}");
    // A site without plan has nothing to drill.
    let (code, body) = post(b1, "/v1/drills", json!({ "site": "b" })).await;
    assert_eq!(code, 422, "{body}");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_failover_runs_each_step_once_with_a_fresh_epoch() {
    let fs = files();
    let f = LocalFleet::start(&fleet(74, &fs, true, true), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;
    let mut highest = 0;
    for (_, addr) in &voters {
        let s = rest.site(*addr, "a").await;
        highest = highest.max(s["epoch"].as_u64().unwrap_or(0));
    }
    let b1 = api(&f, "b1");
    let (code, started) = post(
        b1,
        "/v1/failovers",
        json!({ "site": "a", "reason": "planned move to b" }),
    )
    .await;
    assert_eq!(code, 202, "{started}");
    let e = started["epoch"].as_u64().unwrap();
    assert!(e > highest, "epoch {e} above every verdict's ({highest})");
    assert_eq!(started["id"], format!("a-{e}"));
    assert_eq!(started["trigger"], "manual");

    // A second one while the first runs (promote-b takes a second) is refused.
    let (code, body) = post(
        b1,
        "/v1/failovers",
        json!({ "site": "a", "reason": "again" }),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    let (code, body) = post(b1, "/v1/failovers", json!({ "site": "b", "reason": "x" })).await;
    assert_eq!(code, 422, "a site without plan: {body}");

    let run = finished_run(&rest, b1, &format!("a-{e}")).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "manual", "{run}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        lines(&fs.effects),
        [format!("{e} promote-b"), format!("{e} notify")],
        "each step once, in order, with the fresh epoch"
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn during_maintenance_a_down_verdict_starts_no_failover() {
    let fs = files();
    let mut f = LocalFleet::start(&fleet(75, &fs, false, true), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;
    // Set at one node, the window reaches every node (whichever voter leads the verdict must
    // hold back) and survives a restart.
    let (code, body) = post(
        voters[0].1,
        "/v1/sites/a/maintenance",
        json!({ "duration_s": 600 }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let until = body["maintenance_until"].clone();
    assert!(until.is_string(), "{body}");
    let everywhere = |want: Value| {
        let rest = &rest;
        let voters = &voters;
        async move {
            eventually(
                &format!("every voter to show maintenance_until = {want}"),
                || {
                    let want = want.clone();
                    async move {
                        for (name, addr) in voters {
                            let shown = rest.try_site(*addr, "a").await?;
                            if shown["maintenance_until"] != want {
                                return Err(format!("{name}: {}", shown["maintenance_until"]));
                            }
                        }
                        Ok(())
                    }
                },
            )
            .await
        }
    };
    everywhere(until.clone()).await;
    f.stop_node(&n("b2")).await;
    f.start_node(&n("b2")).await.expect("b2 restarts");
    let shown = rest.site(api(&f, "b2"), "a").await;
    assert_eq!(shown["maintenance_until"], until, "kept across a restart");

    f.stop_site(&site("a")).await;
    let verdict = wait_verdict(&rest, &voters, "a", "down").await;
    // Well past the takeover delay (0.5 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        lines(&fs.effects).is_empty() && lines(&fs.seen).is_empty(),
        "no step ran: {:?}",
        lines(&fs.seen)
    );
    for (name, addr) in &voters {
        let runs = rest.get(*addr, "/v1/failovers").await;
        assert_eq!(
            runs["failovers"].as_array().unwrap().len(),
            0,
            "{name} (leader {}): {runs}",
            verdict.leader
        );
    }

    // Ended at another node: ended everywhere.
    let (code, body) = call(
        Method::DELETE,
        voters[3].1,
        "/v1/sites/a/maintenance",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["maintenance_until"].is_null(), "{body}");
    everywhere(Value::Null).await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failback_waits_for_the_up_verdict_and_runs_the_compensations_once() {
    let fs = files();
    let mut f = LocalFleet::start(&fleet(76, &fs, false, true), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;
    let stopped = f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    // The automatic failover runs both steps.
    wait_lines(&fs.effects, 2).await;

    let b1 = api(&f, "b1");
    let (code, body) = post(b1, "/v1/failbacks", json!({ "site": "a" })).await;
    assert_eq!(code, 409, "refused while a is down: {body}");

    for id in &stopped {
        f.start_node(id).await.expect("the node restarts");
    }
    let up = wait_verdict(&rest, &voters, "a", "up").await;
    assert!(up.epoch > down.epoch);
    let (code, started) = post(b1, "/v1/failbacks", json!({ "site": "a" })).await;
    assert_eq!(code, 202, "{started}");
    assert_eq!(started["trigger"], "failback");
    let e = started["epoch"].as_u64().unwrap();
    assert!(
        e > up.epoch,
        "epoch {e} above the UP verdict's {}",
        up.epoch
    );
    let run = finished_run(&rest, b1, &format!("a-{e}")).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "failback", "{run}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let effects = lines(&fs.effects);
    assert_eq!(effects.len(), 3, "{effects:?}");
    assert_eq!(
        effects[2],
        format!("{e} demote-b"),
        "the compensation ran once: {effects:?}"
    );
    f.shutdown().await;
}

#[test]
fn the_api_table_names_the_token_file_and_refuses_unknown_keys() {
    let fs = files();
    let with = quorate::config::Fleet::parse(&fleet(77, &fs, false, true)).expect("valid");
    assert_eq!(with.api.token_file.as_deref(), Some(fs.token.as_path()));
    assert_eq!(with.api.note(), None);
    let without = quorate::config::Fleet::parse(&fleet(77, &fs, false, false)).expect("valid");
    assert_eq!(without.api.token_file, None);
    assert!(without
        .api
        .note()
        .unwrap()
        .contains("mutating REST calls are disabled"));
    let bad = format!("{}\n[api]\ntoken = \"x\"\n", fleet_text(77));
    let e = quorate::config::Fleet::parse(&bad).unwrap_err().to_string();
    assert!(e.contains("token"), "{e}");
}
