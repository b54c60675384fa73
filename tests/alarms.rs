//! Alarms on a loopback fleet: a fire alarm of site a, raised through the fire panel's own
//! hook at a voter of b, runs a's prestage steps exactly once, also when more alarms of the
//! episode come and when the run's leader is killed midway; clearing the last alarm runs the
//! compensation exactly once; callers not entitled to raise it change nothing; and
//! `on_alarm = "failover"` starts one failover run. Every step is an `exec` stand-in that
//! appends a line to a log (deduplicated on its idempotency key, as a real actuator is).

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "alarm-op-token-5c1";
const FIRE_TOKEN: &str = "fire-panel-token-77e";
const FIRE_B_TOKEN: &str = "fire-b-panel-token-0d2";

/// A stand-in step: once per idempotency key, append "LABEL EPOCH" to `log`, then sleep.
fn step(dir: &Path, label: &str, sleep_s: f64) -> String {
    format!(
        r#"k="{d}/keys/$(printf %s "$QUORATE_IDEMPOTENCY_KEY" | tr / _)"; mkdir "$k" 2>/dev/null || exit 0; echo "{label} $QUORATE_EPOCH" >> "{d}/steps.log"; touch "{d}/running-{label}"; sleep {sleep_s}"#,
        d = dir.display()
    )
}

/// The fast fleet with site a's plan (`on_alarm` given), its prestage step and compensation,
/// the operator token and two fire panels: fire-a for site a, fire-b for site b only.
fn fleet(octet: u8, dir: &Path, on_alarm: &str, prestage_sleep_s: f64) -> String {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    for (file, token) in [
        ("op", TOKEN),
        ("fire-a", FIRE_TOKEN),
        ("fire-b", FIRE_B_TOKEN),
    ] {
        std::fs::write(dir.join(file), format!("{token}\n")).unwrap();
    }
    let watch_a = format!(
        r#"takeover_delay_s = 0.5
self_fence_after_s = 0.2
on_alarm = "{on_alarm}"

[[watch.pipeline.prestage]]
name = "reserve"
kind = "exec"
timeout_s = 20
argv = ["/bin/sh", "-c", {reserve:?}]
[watch.pipeline.prestage.compensation]
name = "release"
kind = "exec"
timeout_s = 20
argv = ["/bin/sh", "-c", {release:?}]

[[watch.pipeline.step]]
name = "promote"
kind = "exec"
timeout_s = 20
argv = ["/bin/sh", "-c", {promote:?}]"#,
        reserve = step(dir, "reserve", prestage_sleep_s),
        release = step(dir, "release", 0.0),
        promote = step(dir, "promote", 0.0),
    );
    let tail = format!(
        r#"
[api]
token_file = '{d}/op'

[[alarm_source]]
name = "fire-a"
sites = ["a"]
kind = "http"
token_file = '{d}/fire-a'

[[alarm_source]]
name = "fire-b"
sites = ["b"]
kind = "http"
token_file = '{d}/fire-b'
"#,
        d = dir.display()
    );
    fleet_watching_a(octet, "status_interval_ms = 100", &watch_a, &tail)
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("steps.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(dir: &Path, label: &str) -> usize {
    lines(dir)
        .iter()
        .filter(|l| l.split(' ').next() == Some(label))
        .count()
}

async fn call(
    method: Method,
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut req = client
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(token);
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("the node answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn fire(addr: SocketAddr, state: &str) -> (u16, Value) {
    let body = json!({"site": "a", "state": state, "reason": "smoke in hall 2"});
    call(
        Method::POST,
        addr,
        "/v1/alarms/hooks/fire-a",
        FIRE_TOKEN,
        body,
    )
    .await
}

/// The runs of `trigger` for site a that `addr` leads or led.
async fn runs_of(rest: &Rest, addr: SocketAddr, trigger: &str) -> Vec<Value> {
    let Ok(body) = rest.try_get(addr, "/v1/failovers").await else {
        return Vec::new();
    };
    body["failovers"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|r| r["site"] == "a" && r["trigger"] == trigger)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until some voter of a's electorate shows a succeeded run of `trigger`.
async fn succeeded(rest: &Rest, voters: &[(&str, SocketAddr)], trigger: &str) -> Value {
    eventually(&format!("a succeeded {trigger} run of a"), || async move {
        for (_, addr) in voters {
            for r in runs_of(rest, *addr, trigger).await {
                if r["state"] == "succeeded" {
                    return Ok(r);
                }
            }
        }
        Err("none yet".to_string())
    })
    .await
}

async fn alarms_at(rest: &Rest, addr: SocketAddr) -> Vec<Value> {
    rest.get(addr, "/v1/alarms").await["alarms"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_alarm_prestages_once_and_its_clearing_unstages_once() {
    init_tracing();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let f = LocalFleet::start(&fleet(121, dir, "prestage", 0.0), None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;
    let (b1, c1, a1) = (api(&f, "b1"), api(&f, "c1"), api(&f, "a1"));

    // Not entitled: a wrong token, a panel entitled for b only, an Indicator host inside a.
    let (code, body) = call(
        Method::POST,
        b1,
        "/v1/alarms/hooks/fire-a",
        "guess",
        json!({"site": "a", "state": "raised"}),
    )
    .await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = call(
        Method::POST,
        b1,
        "/v1/alarms/hooks/fire-a",
        FIRE_B_TOKEN,
        json!({"site": "a", "state": "raised"}),
    )
    .await;
    assert_eq!(code, 401, "fire-b's token is not fire-a's: {body}");
    let (code, body) = call(
        Method::POST,
        b1,
        "/v1/alarms/hooks/fire-b",
        FIRE_B_TOKEN,
        json!({"site": "a", "state": "raised"}),
    )
    .await;
    assert_eq!(code, 403, "fire-b speaks for b only: {body}");
    let raise = json!({"site": "a", "source": "ops", "severity": "critical", "reason": "drill"});
    let (code, body) = call(Method::POST, a1, "/v1/alarms", TOKEN, raise.clone()).await;
    assert_eq!(code, 403, "a1 is inside a: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("electorate"),
        "{body}"
    );
    let (code, body) = call(Method::POST, b1, "/v1/alarms", "guess", raise).await;
    assert_eq!(code, 401, "{body}");
    let bad = json!({"site": "a", "source": "no spaces", "severity": "critical"});
    let (code, body) = call(Method::POST, b1, "/v1/alarms", TOKEN, bad).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("source"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, addr) in &voters {
        assert!(
            alarms_at(&rest, *addr).await.is_empty(),
            "{name} holds no alarm"
        );
    }
    assert!(lines(dir).is_empty(), "nothing ran: {:?}", lines(dir));

    // The fire panel raises its alarm at b1: the prestage runs once.
    let (code, body) = fire(b1, "raised").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "raised");
    assert_eq!(body["by"], "b1");
    let run = succeeded(&rest, &voters, "prestage").await;
    assert_eq!(run["steps"].as_array().map(Vec::len), Some(1), "{run}");
    // Every voter of a's electorate holds the alarm, and shows it on the site.
    for (name, addr) in &voters {
        let rest = &rest;
        let shown = eventually(&format!("{name} to hold the alarm"), || async move {
            let site = rest.try_site(*addr, "a").await?;
            match site["alarms"].as_array() {
                Some(l) if l.len() == 1 => Ok(site),
                _ => Err(site.to_string()),
            }
        })
        .await;
        assert_eq!(shown["on_alarm"], "prestage");
        assert_eq!(shown["alarms"][0]["source"], "fire-a");
    }
    let active = rest.metric(c1, "quorate_alarms_active{site=\"a\"}").await;
    assert_eq!(active, Some(1.0));

    // A second source raises an alarm of the same episode at another voter: nothing more.
    let more = json!({"site": "a", "source": "power-a", "severity": "warning", "reason": "on UPS"});
    let (code, body) = call(Method::POST, c1, "/v1/alarms", TOKEN, more).await;
    assert_eq!(code, 200, "{body}");
    // Clearing one of two alarms ends nothing.
    let (code, body) = call(
        Method::DELETE,
        c1,
        "/v1/alarms/a/power-a",
        TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "cleared");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(count(dir, "reserve"), 1, "{:?}", lines(dir));
    assert_eq!(count(dir, "release"), 0, "{:?}", lines(dir));

    // The last alarm cleared: the compensation runs once.
    let (code, body) = fire(b1, "cleared").await;
    assert_eq!(code, 200, "{body}");
    succeeded(&rest, &voters, "unstage").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(count(dir, "reserve"), 1, "{:?}", lines(dir));
    assert_eq!(count(dir, "release"), 1, "{:?}", lines(dir));
    assert_eq!(
        count(dir, "promote"),
        0,
        "a prestage never cuts over: {:?}",
        lines(dir)
    );
    let active = rest.metric(c1, "quorate_alarms_active{site=\"a\"}").await;
    assert_eq!(active, Some(0.0));

    // The CLI raises, lists and clears like the REST calls (a prestage again, then unstage).
    let (c1_text, op_token) = (c1.to_string(), dir.join("op").display().to_string());
    let env = [
        ("QUORATE_API", c1_text.as_str()),
        ("QUORATE_TOKEN_FILE", op_token.as_str()),
    ];
    let raised = quorate(
        &[
            "alarm", "raise", "a", "--source", "ops", "--reason", "drill",
        ],
        &env,
    )
    .await;
    assert!(raised.contains("raised"), "{raised}");
    let listed = quorate(&["alarm", "list"], &env).await;
    let row = listed
        .lines()
        .find(|l| l.contains("ops"))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("raised") && row.contains("critical") && row.contains("c1"),
        "{listed}"
    );
    let status = quorate(&["status"], &env).await;
    assert!(status.contains("a: critical alarm from ops"), "{status}");
    let cleared = quorate(&["alarm", "clear", "a", "--source", "ops"], &env).await;
    assert!(cleared.contains("cleared"), "{cleared}");
    eventually("the second episode's unstage", || async {
        match (count(dir, "reserve"), count(dir, "release")) {
            (2, 2) => Ok(()),
            other => Err(format!("{other:?}: {:?}", lines(dir))),
        }
    })
    .await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_alarm_failover_starts_one_failover_run() {
    init_tracing();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let f = LocalFleet::start(&fleet(123, dir, "failover", 0.0), None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;
    let (code, body) = fire(api(&f, "b2"), "raised").await;
    assert_eq!(code, 200, "{body}");
    let more =
        json!({"site": "a", "source": "power-a", "severity": "critical", "reason": "mains lost"});
    let (code, body) = call(Method::POST, api(&f, "c2"), "/v1/alarms", TOKEN, more).await;
    assert_eq!(code, 200, "{body}");
    let run = succeeded(&rest, &voters, "alarm").await;
    assert_eq!(run["steps"][0]["name"], "promote", "{run}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(count(dir, "promote"), 1, "{:?}", lines(dir));
    assert_eq!(count(dir, "reserve"), 0, "{:?}", lines(dir));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prestage_whose_leader_is_killed_midway_runs_once_at_another_voter() {
    init_tracing();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut f = LocalFleet::prepare(&fleet(124, dir, "prestage", 2.0), None, true).expect("fleet");
    start_all_but(&mut f, &A_VOTERS).await;
    let mut children: Vec<(String, ChildGuard)> = A_VOTERS
        .iter()
        .map(|v| (v.to_string(), spawn_node(&f, v, &[])))
        .collect();
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    let (code, body) = fire(api(&f, "b1"), "raised").await;
    assert_eq!(code, 200, "{body}");
    // The slow step has begun: its leader is the voter showing the run as running.
    let marker = dir.join("running-reserve");
    let leader = eventually("the prestage step to run", || {
        let (rest, voters, marker) = (&rest, &voters, &marker);
        async move {
            if !marker.exists() {
                return Err("not started".to_string());
            }
            for (name, addr) in voters {
                if runs_of(rest, *addr, "prestage")
                    .await
                    .iter()
                    .any(|r| r["state"] == "running")
                {
                    return Ok(name.to_string());
                }
            }
            Err("no voter shows it running".to_string())
        }
    })
    .await;
    children
        .iter_mut()
        .find(|(id, _)| *id == leader)
        .expect("the leader is a voter")
        .1
        .kill();
    let survivors: Vec<_> = voters
        .iter()
        .filter(|(id, _)| *id != leader)
        .cloned()
        .collect();
    let run = succeeded(&rest, &survivors, "prestage").await;
    assert_ne!(run["leader"], leader.as_str(), "{run}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(dir, "reserve"),
        1,
        "the step ran once in all: {:?}",
        lines(dir)
    );
    drop(children);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_poller_raises_and_clears_by_its_exit_code_and_a_failed_poll_changes_nothing() {
    init_tracing();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let state = dir.join("ups-state");
    std::fs::write(&state, "0").unwrap();
    let poller = format!(
        "\n[[alarm_source]]\nname = \"ups-a\"\nsites = [\"a\"]\nkind = \"exec\"\nnodes = [\"b1\"]\n\
         interval_s = 0.2\ntimeout_s = 0.2\nargv = [\"/bin/sh\", \"-c\", {:?}]\n",
        format!("echo \"on battery since $(date +%s) for $QUORATE_ALARM_SITES\"; exit $(cat {})", state.display())
    );
    let text = fleet(125, dir, "notify", 0.0) + &poller;
    let f = LocalFleet::start(&text, None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    let c2 = api(&f, "c2");
    let ups = |want: &'static str| {
        let rest = &rest;
        async move {
            let l = rest.try_get(c2, "/v1/alarms").await?;
            let a = l["alarms"]
                .as_array()
                .and_then(|l| l.iter().find(|a| a["source"] == "ups-a").cloned());
            match a {
                Some(a) if a["state"] == want => Ok(a),
                other => Err(format!("{other:?}")),
            }
        }
    };
    std::fs::write(&state, "1").unwrap();
    let a = eventually("the poller's alarm raised, at c2", || ups("raised")).await;
    assert_eq!(a["by"], "b1", "{a}");
    assert_eq!(a["severity"], "critical", "{a}");
    assert!(a["reason"].as_str().unwrap().ends_with("for a"), "{a}");
    // A failed poll (exit 7) is no reading: the alarm stays raised.
    std::fs::write(&state, "7").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    ups("raised")
        .await
        .expect("still raised after failed polls");
    std::fs::write(&state, "0").unwrap();
    eventually("the poller's alarm cleared, at c2", || ups("cleared")).await;
    f.shutdown().await;
}
