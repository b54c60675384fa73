//! The REST API of running nodes: JSON everywhere, errors included; the status page; and the
//! fleet file changing under running nodes (picked up, compared with the peers', refused
//! when invalid without stopping anything).

mod common;

use common::*;
use quorate::config::Fleet;
use quorate::localfleet::LocalFleet;
use quorate::node::{self, NodeSpec};
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// The string `field` of each object in the JSON array `list`.
fn field_of_each<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"));
    items
        .iter()
        .map(|item| {
            item[field]
                .as_str()
                .unwrap_or_else(|| panic!("no {field} in {item}"))
        })
        .collect()
}

/// Asserts a JSON error answer with status `code` and a non-empty "error".
async fn expect_error(rest: &Rest, method: Method, addr: SocketAddr, path: &str, code: u16) {
    let (got, body) = rest
        .call(method.clone(), addr, path)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(got, code, "{method} {path}: {body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "{method} {path}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_json_and_errors_have_fitting_codes() {
    init_tracing();
    let f = start_fleet(251).await;
    let rest = Rest::new();
    let b1 = api(&f, "b1");

    let (code, body) = rest
        .call(Method::GET, b1, "/healthz")
        .await
        .expect("healthz");
    assert_eq!(
        (code, &body["status"], &body["node"]),
        (200, &json!("ok"), &json!("b1"))
    );

    expect_error(&rest, Method::GET, b1, "/v1/sites/zz", 404).await;
    expect_error(&rest, Method::GET, b1, "/no/such/path", 404).await;
    expect_error(&rest, Method::GET, b1, "/v1/verdicts?limit=abc", 400).await;
    expect_error(&rest, Method::GET, b1, "/v1/verdicts?limit=0", 400).await;
    expect_error(&rest, Method::GET, b1, "/v1/verdicts?colour=red", 400).await;
    expect_error(&rest, Method::GET, b1, "/v1/verdicts?site=zz", 404).await;
    expect_error(&rest, Method::POST, b1, "/v1/status", 405).await;
    expect_error(&rest, Method::DELETE, b1, "/v1/sites/a", 405).await;
    let ok = rest.get(b1, "/v1/verdicts?site=a&limit=5").await;
    assert_eq!(ok["verdicts"], json!([]));

    // The status page, once every peer has reported.
    let status = eventually("b1 to hear from every peer", || {
        let rest = &rest;
        async move {
            let s = rest.try_get(b1, "/v1/status").await?;
            let peers = s["peers"].as_array().cloned().unwrap_or_default();
            if peers.len() == 7 && peers.iter().all(|p| p["reachable"] == true) {
                Ok(s)
            } else {
                Err(s["peers"].to_string())
            }
        }
    })
    .await;
    assert_eq!(status["node"], "b1");
    assert_eq!(status["site"], "b");
    assert_eq!(status["roles"], json!(["indicator", "pinger", "voter"]));
    assert_eq!(status["fleet_hash"], f.fleet.hash.as_str());
    assert_eq!(status["fleet_error"], Value::Null);
    assert_eq!(status["fleet_mismatch"], json!([]));
    for p in status["peers"].as_array().expect("peers") {
        assert!(p["node"].is_string(), "{p}");
        assert_eq!(p["reachable"], true, "{p}");
        assert_eq!(p["fleet_hash"], f.fleet.hash.as_str(), "{p}");
    }
    assert_eq!(field_of_each(&status["sites"], "id"), ["a", "b"]);

    let a3 = rest.get(api(&f, "a3"), "/v1/status").await;
    assert_eq!(
        (&a3["node"], &a3["roles"]),
        (&json!("a3"), &json!(["indicator"]))
    );
    // An Indicator-only node talks with the Pingers and voters only: b3 is not its peer.
    assert_eq!(
        field_of_each(&a3["peers"], "node"),
        ["a1", "a2", "b1", "b2", "c1", "c2"],
        "{a3}"
    );

    let a = rest.get(b1, "/v1/sites/a").await;
    assert_eq!(a["electorate"], json!(["b1", "b2", "c1", "c2"]));
    assert_eq!(a["majority"], 3);
    assert_eq!(a["verdict"], "none");
    assert!(
        a["evidence"].as_array().is_some_and(|e| !e.is_empty()),
        "{a}"
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_fleet_file_is_picked_up_and_an_invalid_one_reported() {
    init_tracing();
    let text = fleet_text(252);
    let mut f = LocalFleet::prepare(&text, None, true).expect("the fleet is prepared");
    // b3 and c2 read a copy of the file that will not change.
    let old_path = f.dir.join("old-fleet.toml");
    std::fs::write(&old_path, &text).expect("copy");
    let mut stale = Vec::new();
    for node in f.fleet.nodes.clone() {
        if ["b3", "c2"].contains(&node.id.as_str()) {
            let spec = NodeSpec {
                fleet: f.fleet.clone(),
                fleet_path: Some(old_path.clone()),
                node: node.id.clone(),
                certs_dir: f.certs_dir.clone(),
                data_dir: f.data_dir(&node.id),
                retention: Default::default(),
                serve_api: true,
                events: None,
            };
            stale.push(node::spawn(spec).await.expect("node starts"));
        } else {
            f.start_node(&node.id).await.expect("node starts");
        }
    }
    let rest = Rest::new();
    let b1 = api(&f, "b1");
    let status_where = |what: &'static str, pred: fn(&Value) -> bool| {
        let rest = rest.clone();
        async move {
            eventually(what, || {
                let rest = rest.clone();
                async move {
                    let s = rest.try_get(b1, "/v1/status").await?;
                    if pred(&s) {
                        Ok(s)
                    } else {
                        Err(s.to_string())
                    }
                }
            })
            .await
        }
    };
    status_where("b1 to hear from every peer", |s| {
        s["peers"].as_array().is_some_and(|p| {
            p.iter()
                .all(|p| p["reachable"] == true && p["fleet_hash"].is_string())
        })
    })
    .await;

    // A comment is a change: new hash, picked up by every node reading the file.
    let changed = format!("{text}\n# reviewed\n");
    let new_hash = Fleet::parse(&changed).expect("still valid").hash;
    assert_ne!(new_hash, f.fleet.hash);
    std::fs::write(&f.fleet_path, &changed).expect("edit");
    let s = eventually("b1 to load the changed file", || {
        let rest = rest.clone();
        let new_hash = new_hash.clone();
        async move {
            let s = rest.try_get(b1, "/v1/status").await?;
            if s["fleet_hash"] == new_hash.as_str() && s["fleet_mismatch"] == json!(["b3", "c2"]) {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        }
    })
    .await;
    assert_eq!(s["fleet_error"], Value::Null);
    assert_eq!(
        rest.metric(b1, "quorate_fleet_reloads_total").await,
        Some(1.0)
    );
    let c2 = rest.get(api(&f, "c2"), "/v1/status").await;
    assert_eq!(c2["fleet_hash"], f.fleet.hash.as_str(), "c2 keeps its file");

    // An invalid edit is reported; the node keeps the running fleet and keeps working.
    std::fs::write(&f.fleet_path, "[timing\nprobe_interval_ms = ").expect("edit");
    let s = status_where("b1 to report the invalid file", |s| {
        s["fleet_error"].is_string()
    })
    .await;
    assert_eq!(s["fleet_hash"], new_hash.as_str());
    assert!(!s["fleet_error"].as_str().unwrap_or_default().is_empty());
    let (code, _) = rest
        .call(Method::GET, b1, "/healthz")
        .await
        .expect("healthz");
    assert_eq!(code, 200);
    assert!(rest.metric(b1, "quorate_fleet_reload_errors_total").await >= Some(1.0));
    let voters = apis(&f, &["b1", "b2", "c1"]);
    wait_opinion(&rest, &voters, "a", "up").await;

    // Put back the running version: the error is gone.
    std::fs::write(&f.fleet_path, &changed).expect("edit");
    let s = status_where("b1 to clear the error", |s| s["fleet_error"].is_null()).await;
    assert_eq!(s["fleet_hash"], new_hash.as_str());

    // And the fleet still decides: a blackout is declared by the voters.
    f.stop_site(&site("a")).await;
    let mut all = voters.clone();
    all.push(("c2", api(&f, "c2")));
    wait_verdict(&rest, &all, "a", "down").await;
    for h in stale {
        h.shutdown().await;
    }
    f.shutdown().await;
}

/// A crashed Indicator-only node (no close on the wire) keeps its connections alive at its
/// peers until their idle timeout (30 s), but a node whose Pinger probes it lists it
/// unreachable as soon as it misses its probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_indicator_only_node_is_unreachable_where_it_is_probed_before_its_connections_time_out(
) {
    init_tracing();
    let mut f = LocalFleet::prepare(&fleet_text(239), None, true).expect("the fleet is prepared");
    start_all_but(&mut f, &["a3"]).await;
    let mut a3 = spawn_node(&f, "a3", &[]);
    let rest = Rest::new();
    // b1 probes a (its site is watched by b and c).
    let b1 = api(&f, "b1");
    wait_peer(&rest, b1, "a3", true).await;
    a3.kill();
    let killed = std::time::Instant::now();
    wait_peer(&rest, b1, "a3", false).await;
    let took = killed.elapsed();
    assert!(
        took < std::time::Duration::from_secs(15),
        "b1 listed a3 unreachable only {took:?} after its kill: by its connection's idle \
         timeout, not by its missed probes"
    );
    f.shutdown().await;
}
