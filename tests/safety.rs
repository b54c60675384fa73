//! The anycast rule at run time: a bgp step that would withdraw a declared prefix while no
//! other live site announces it is refused, with the rule's name, and never reaches the
//! router; an operator's forced run passes. Routers are stand-in `birdc` programs that log
//! each call and answer like BIRD.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;

const TOKEN: &str = "safety-token-7d2e";
const PREFIX: &str = "198.19.255.0/24";
const RULE: &str = "each anycast prefix stays announced by at least one site";

/// Sites a and b announce the prefix (a in normal operation); c's three voters judge both
/// (one site's voters alone: failovers wait for an operator, which is what this test does).
/// a's plan announces the prefix at b, then withdraws it at a.
fn fleet(octet: u8, dir: &Path) -> String {
    let birdc = dir.join("birdc");
    std::fs::write(
        &birdc,
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\necho 'BIRD 2 ready.'\necho 'Reconfigured'\n",
            log = dir.join("birdc.log").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&birdc, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let step = |name: &str, action: &str, site: &str| {
        format!(
            r#"name = "{name}"
kind = "bgp"
site = "{site}"
timeout_s = 5
backend = "bird"
action = "{action}"
prefixes = ["{PREFIX}"]
include_file = "{dir}/{site}-anycast.conf"
socket = "{dir}/{site}.ctl"
birdc = "{birdc}"
"#,
            dir = dir.display(),
            birdc = birdc.display()
        )
    };
    let node = |id: &str, site: &str, n: u8, roles: &str| {
        let s = match site {
            "a" => 1,
            "b" => 2,
            _ => 3,
        };
        format!(
            "[[node]]\nid = \"{id}\"\nsite = \"{site}\"\nroles = [{roles}]\nmesh = \"127.{octet}.{s}.{n}:7401\"\napi = \"127.{octet}.{s}.{n}:7501\"\n\n"
        )
    };
    let mut text = format!(
        "[timing]\nprobe_interval_ms = 20\nprobe_timeout_ms = 20\nretries = 5\nvote_timeout_ms = 100\nstatus_interval_ms = 100\nhold_down_s = 0\n\n[api]\ntoken_file = \"{}\"\n\n[[site]]\nid = \"a\"\nkind = \"primary\"\n[[site]]\nid = \"b\"\nkind = \"backup\"\n[[site]]\nid = \"c\"\nkind = \"witness\"\n\n",
        dir.join("token").display()
    );
    text += &node("a1", "a", 1, "\"indicator\"");
    text += &node("b1", "b", 1, "\"indicator\"");
    for i in 1..=3 {
        text += &node(&format!("c{i}"), "c", i, "\"pinger\", \"voter\"");
    }
    text += &format!(
        "[[anycast]]\nprefix = \"{PREFIX}\"\nsites = [\"a\", \"b\"]\nannounced_by = [\"a\"]\n\n\
         [[watch]]\nsite = \"a\"\nby = [\"c\"]\nsingle_vantage = \"manual\"\ntakeover_delay_s = 0.5\nself_fence_after_s = 0.2\n\n\
         [[watch.pipeline.step]]\n{}\n[[watch.pipeline.step]]\n{}\n\
         [[watch]]\nsite = \"b\"\nby = [\"c\"]\nsingle_vantage = \"manual\"\n",
        step("announce-b", "announce", "b"),
        step("withdraw-a", "withdraw", "a"),
    );
    text
}

async fn post(addr: SocketAddr, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/failovers"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the node answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn finished(rest: &Rest, addr: SocketAddr, id: String) -> Value {
    eventually(&format!("run {id} to finish"), || {
        let id = id.clone();
        async move {
            let runs = rest.try_get(addr, "/v1/failovers").await?;
            let run = runs["failovers"]
                .as_array()
                .and_then(|l| l.iter().find(|r| r["id"] == id.as_str()).cloned())
                .ok_or(format!("{runs}"))?;
            if matches!(run["state"].as_str(), Some("running" | "waiting")) {
                Err(run.to_string())
            } else {
                Ok(run)
            }
        }
    })
    .await
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdraw_that_would_leave_the_prefix_unannounced_is_refused_unless_forced() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut f = LocalFleet::start(&fleet(187, dir.path()), None, true)
        .await
        .expect("fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &["c1", "c2", "c3"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    wait_opinion(&rest, &voters, "b", "up").await;

    // b is lost: announcing there "succeeds" (its stand-in router answers), but no live site
    // would hold the prefix once a withdraws it.
    f.stop_site(&site("b")).await;
    wait_verdict(&rest, &voters, "b", "down").await;
    let c1 = api(&f, "c1");
    let (code, body) = post(c1, json!({"site": "a", "reason": "test: b is down"})).await;
    assert_eq!(code, 202, "{body}");
    let run = finished(&rest, c1, body["id"].as_str().unwrap().to_string()).await;
    let withdraw = step(&run, "withdraw-a");
    assert_eq!(withdraw["ok"], false, "{run}");
    let detail = withdraw["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(RULE) && detail.contains(PREFIX),
        "the refusal names the rule and the prefix: {detail}"
    );
    assert_eq!(run["state"], "aborted", "{run}");
    let calls = std::fs::read_to_string(dir.path().join("birdc.log")).unwrap_or_default();
    assert!(
        !calls.contains("a.ctl"),
        "a's router was never told to withdraw: {calls}"
    );
    assert!(calls.contains("b.ctl"), "b's announce did run: {calls}");

    // The operator forces it: the withdraw goes through.
    let (code, body) = post(
        c1,
        json!({"site": "a", "reason": "test: forced", "force": true}),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["force"], true);
    let run = finished(&rest, c1, body["id"].as_str().unwrap().to_string()).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let calls = std::fs::read_to_string(dir.path().join("birdc.log")).unwrap_or_default();
    assert!(calls.contains("a.ctl"), "the forced withdraw ran: {calls}");
    assert!(
        !std::fs::read_to_string(dir.path().join("a-anycast.conf"))
            .unwrap_or_default()
            .contains("198.19.255.0"),
        "a's include file no longer announces the prefix"
    );
    f.shutdown().await;
}
