//! The fence of the old primary on a loopback fleet, against a stand-in power controller on
//! loopback (`POST /power/off`, `GET /power` answering `{"PowerState": "On" | "Off"}`, like a
//! Redfish ComputerSystem): a fence whose confirmation reads "Off" lets the run go on; a
//! controller that never reports Off stops the run at the fence, the takeover step never
//! runs and the REST run says why; a forced run goes on past the unconfirmed fence.

mod common;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::*;
use quorate::localfleet::LocalFleet;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const TOKEN: &str = "fence-token-93a1";

/// The stand-in power controller: `obeys` whether `POST /power/off` turns the machine off.
#[derive(Default)]
struct Power {
    obeys: bool,
    off: AtomicBool,
    off_calls: AtomicUsize,
    reads: AtomicUsize,
}

async fn power_controller(obeys: bool) -> (SocketAddr, Arc<Power>) {
    let power = Arc::new(Power {
        obeys,
        ..Power::default()
    });
    let app = Router::new()
        .route(
            "/power",
            get(|State(p): State<Arc<Power>>| async move {
                p.reads.fetch_add(1, Ordering::SeqCst);
                let state = if p.off.load(Ordering::SeqCst) {
                    "Off"
                } else {
                    "On"
                };
                Json(json!({ "@odata.id": "/power", "PowerState": state }))
            }),
        )
        .route(
            "/power/off",
            post(|State(p): State<Arc<Power>>| async move {
                p.off_calls.fetch_add(1, Ordering::SeqCst);
                if p.obeys {
                    p.off.store(true, Ordering::SeqCst);
                }
                axum::http::StatusCode::NO_CONTENT
            }),
        )
        .with_state(power.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, power)
}

/// The fast fleet whose watch of a fences a through the controller at `power` (three reads
/// 200 ms apart; a drill skips the power-off, which a BMC would not know to rehearse), then
/// runs "promote-b", which appends "EPOCH STEP" to `log`.
fn fleet(octet: u8, power: SocketAddr, log: &Path, token: &Path) -> String {
    let watch_a = format!(
        r#"takeover_delay_s = 0.5
self_fence_after_s = 0.2
[[watch.pipeline.fence]]
name = "power-off-a"
kind = "http"
timeout_s = 2
url = "http://{power}/power/off"
dry_run = "skip"
[watch.pipeline.fence.confirm]
kind = "http"
timeout_s = 1
retries = 2
interval_ms = 200
url = "http://{power}/power"
pointer = "/PowerState"
expect = "Off"
[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", 'echo "$QUORATE_EPOCH $QUORATE_STEP" >> {log}']
"#,
        log = log.display()
    );
    let api = format!("[api]\ntoken_file = '{}'\n", token.display());
    fleet_watching_a(octet, "", &watch_a, &api)
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The run `id` at `addr` once it is no longer waiting or running.
async fn finished_run(rest: &Rest, addr: SocketAddr, id: &str) -> Value {
    eventually(&format!("run {id} to finish"), || async move {
        let runs = rest.try_get(addr, "/v1/failovers").await?;
        let run = runs["failovers"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["id"] == id).cloned())
            .ok_or(format!("{runs}"))?;
        match run["state"].as_str() {
            Some("running" | "waiting") => Err(run.to_string()),
            _ => Ok(run),
        }
    })
    .await
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {run}"))
}

struct Setup {
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
    fleet: LocalFleet,
    power: Arc<Power>,
}

async fn setup(octet: u8, obeys: bool) -> Setup {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let token = dir.path().join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let (addr, power) = power_controller(obeys).await;
    let fleet = LocalFleet::start(&fleet(octet, addr, &log, &token), None, true)
        .await
        .expect("fleet starts");
    Setup {
        _dir: dir,
        log,
        fleet,
        power,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmed_fence_lets_the_run_go_on() {
    let mut s = setup(181, true).await;
    let rest = Rest::new();
    let voters = apis(&s.fleet, &["b1", "b2", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    s.fleet.stop_site(&site("a")).await;
    let shown = wait_verdict(&rest, &voters, "a", "down").await;
    let e = shown.epoch;
    let run = finished_run(&rest, api(&s.fleet, &shown.leader), &format!("a-{e}")).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let names: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["power-off-a", "power-off-a-confirm", "promote-b"],
        "the fence, its confirmation, then the takeover: {run}"
    );
    assert!(
        step(&run, "power-off-a-confirm")["detail"]
            .as_str()
            .unwrap()
            .contains("confirmed: /PowerState reads \"Off\""),
        "{run}"
    );
    assert_eq!(lines(&s.log), [format!("{e} promote-b")]);
    assert_eq!(s.power.off_calls.load(Ordering::SeqCst), 1, "one power-off");
    s.fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fence_that_is_never_confirmed_stops_the_run_before_the_takeover() {
    let mut s = setup(182, false).await;
    let rest = Rest::new();
    let voters = apis(&s.fleet, &["b1", "b2", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    s.fleet.stop_site(&site("a")).await;
    let shown = wait_verdict(&rest, &voters, "a", "down").await;
    let e = shown.epoch;
    let run = finished_run(&rest, api(&s.fleet, &shown.leader), &format!("a-{e}")).await;
    assert_eq!(run["state"], "aborted", "{run}");
    let summary = run["summary"].as_str().unwrap();
    assert!(
        summary.contains("stopped at the fence")
            && summary.contains("fence \"power-off-a\" not confirmed after 3 reads")
            && summary.contains("last read: /PowerState reads \"On\", not \"Off\""),
        "{summary}"
    );
    assert_eq!(step(&run, "power-off-a-confirm")["attempts"], 3, "{run}");
    assert!(
        run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != "promote-b"),
        "the takeover step never started: {run}"
    );
    // Give a late or second run every chance to show up.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        lines(&s.log).is_empty(),
        "promote-b ran: {:?}",
        lines(&s.log)
    );
    assert_eq!(s.power.reads.load(Ordering::SeqCst), 3);
    s.fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forced_run_goes_on_past_an_unconfirmed_fence_and_says_so() {
    let s = setup(183, false).await;
    let rest = Rest::new();
    let voters = apis(&s.fleet, &["b1", "b2", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    let b1 = api(&s.fleet, "b1");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .post(format!("http://{b1}/v1/failovers"))
        .bearer_auth(TOKEN)
        .json(&json!({"site": "a", "reason": "a's power controller is broken; a is off, checked on site", "force": true}))
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!((200..300).contains(&code), "{code} {body}");
    let id = body["id"].as_str().expect("the run's id").to_string();
    assert_eq!(body["force"], true, "{body}");
    let run = finished_run(&rest, b1, &id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(
        run["summary"]
            .as_str()
            .unwrap()
            .contains("failed but continued past: confirm/0"),
        "{run}"
    );
    let detail = step(&run, "power-off-a-confirm")["detail"]
        .as_str()
        .unwrap();
    assert!(
        detail.starts_with("not confirmed, and the run was forced, so it goes on past the unconfirmed fence; last read: /PowerState reads \"On\""),
        "{detail}"
    );
    let epoch = run["epoch"].as_u64().unwrap();
    assert_eq!(lines(&s.log), [format!("{epoch} promote-b")]);
    s.fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drill_reads_the_power_state_and_powers_nothing_off() {
    let s = setup(184, true).await;
    let rest = Rest::new();
    let voters = apis(&s.fleet, &["b1", "b2", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    let b1 = api(&s.fleet, "b1");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .post(format!("http://{b1}/v1/drills"))
        .bearer_auth(TOKEN)
        .json(&json!({"site": "a"}))
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let report: Value = resp.json().await.unwrap();
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        step(&report, "power-off-a")["detail"]
            .as_str()
            .unwrap()
            .contains("skipped"),
        "{report}"
    );
    assert!(
        step(&report, "power-off-a-confirm")["detail"]
            .as_str()
            .unwrap()
            .starts_with("dry run: /PowerState reads \"On\" (a run waits for \"Off\")"),
        "{report}"
    );
    assert_eq!(
        s.power.off_calls.load(Ordering::SeqCst),
        0,
        "nothing powered off"
    );
    assert_eq!(s.power.reads.load(Ordering::SeqCst), 1, "one read");
    s.fleet.shutdown().await;
}
