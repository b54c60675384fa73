//! `[[notify]]` on a loopback fleet, against a stand-in webhook receiver that records every
//! request with its `Idempotency-Key`: a blackout's DOWN verdict reaches it once per key, a
//! `single_vantage = "manual"` watch's DOWN verdict notifies, and a verdict whose leader is
//! stopped while its call hangs is still notified, by another voter with the same key; a
//! failed run and a maintenance call are each notified once.

mod common;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use common::*;
use quorate::localfleet::LocalFleet;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Seen {
    key: String,
    body: Value,
    /// Held without an answer (the first request of a key when `hold_first`).
    held: bool,
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    hold_first: bool,
}

impl Receiver {
    /// Serves on a loopback port; returns its URL.
    async fn start(hold_first: bool) -> (Receiver, String) {
        let r = Receiver {
            hold_first,
            ..Receiver::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, Json(body): Json<Value>| {
                let state = state.clone();
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let held = {
                        let mut seen = state.seen.lock().unwrap();
                        let held = state.hold_first && !seen.iter().any(|s| s.key == key);
                        seen.push(Seen { key, body, held });
                        held
                    };
                    if held {
                        // Longer than the test: the caller gives up by its own timeout.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (r, format!("http://{addr}/hook"))
    }

    fn with_key(&self, prefix: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.key.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn notifier(url: &str, timeout_ms: u64) -> String {
    format!(
        "\n[[notify]]\nname = \"hook\"\nkind = \"http\"\nurl = \"{url}\"\n\
         on = [\"verdict_changed\"]\ntimeout_ms = {timeout_ms}\nretries = 0\n"
    )
}

async fn start(text: &str) -> LocalFleet {
    LocalFleet::start(text, None, true)
        .await
        .expect("the fleet starts")
}

/// Waits for the first request whose key starts with `prefix`.
async fn first_request(r: &Receiver, prefix: &str) -> Seen {
    eventually(&format!("a notification {prefix}*"), || async {
        r.with_key(prefix)
            .into_iter()
            .next()
            .ok_or_else(|| format!("seen so far: {:?}", r.seen.lock().unwrap()))
    })
    .await
}

/// Long enough for every follower's takeover deadline (lease + stagger per rank) to pass.
const SETTLE: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackout_yields_one_verdict_notification_per_key() {
    init_tracing();
    let (receiver, url) = Receiver::start(false).await;
    let text = fleet_text(246) + &notifier(&url, 5000);
    let mut f = start(&text).await;
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    let key = format!("verdict/a/{}/down", down.epoch);
    let first = first_request(&receiver, &key).await;
    assert_eq!(first.body["kind"], "verdict_changed", "{:?}", first.body);
    assert_eq!(first.body["site"], "a");
    assert_eq!(first.body["detail"], "down");
    assert_eq!(first.body["idempotency_key"], key.as_str());
    tokio::time::sleep(SETTLE).await;
    let all = receiver.with_key("verdict/a/");
    assert_eq!(all.len(), 1, "one request per key: {all:?}");

    // The leader counted it; the voters that held it did not call.
    let sent: f64 = {
        let mut total = 0.0;
        for (_, addr) in &voters {
            total += rest
                .metric(*addr, "quorate_notifications_sent_total")
                .await
                .unwrap_or(0.0);
        }
        total
    };
    assert_eq!(sent, 1.0);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_watch_down_verdict_notifies() {
    init_tracing();
    let (receiver, url) = Receiver::start(false).await;
    // Site a watched from site c alone: quorate waits for an operator, and says so.
    let base = fleet_text(247);
    let cut = base.find("[[watch]]").expect("the fleet has watches");
    let text = format!(
        "{}[[node]]\nid = \"c3\"\nsite = \"c\"\nroles = [\"pinger\", \"voter\"]\n\
         mesh = \"127.247.3.3:7401\"\napi = \"127.247.3.3:7501\"\n\n\
         [[watch]]\nsite = \"a\"\nby = [\"c\"]\nsingle_vantage = \"manual\"\n{}",
        &base[..cut],
        notifier(&url, 5000)
    );
    let mut f = start(&text).await;
    let rest = Rest::new();
    let voters = apis(&f, &["c1", "c2", "c3"]);
    wait_opinion(&rest, &voters, "a", "up").await;
    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    let seen = first_request(&receiver, &format!("verdict/a/{}/down", down.epoch)).await;
    assert_eq!(seen.body["detail"], "down");
    assert!(
        seen.body["text"].as_str().unwrap_or("").contains("site a"),
        "{:?}",
        seen.body
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_whose_leader_is_lost_before_it_sent_is_notified_by_another_voter() {
    init_tracing();
    // The receiver holds the first request of every key unanswered: the leader's call hangs.
    let (receiver, url) = Receiver::start(true).await;
    let text = fleet_text(248) + &notifier(&url, 30_000);
    let mut f = start(&text).await;
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    let key = format!("verdict/a/{}/down", down.epoch);
    let held = first_request(&receiver, &key).await;
    assert!(held.held, "{held:?}");
    // The leader is lost with its call out.
    f.stop_node(&n(&down.leader)).await;

    let taken_over = eventually("another voter's call with the same key", || async {
        let seen = receiver.with_key(&key);
        seen.iter()
            .find(|s| !s.held)
            .cloned()
            .ok_or_else(|| format!("{seen:?}"))
    })
    .await;
    assert_eq!(taken_over.body["idempotency_key"], key.as_str());
    tokio::time::sleep(SETTLE).await;
    let all = receiver.with_key(&key);
    assert_eq!(
        all.len(),
        2,
        "the leader's held call and one takeover, the other voters told it was sent: {all:?}"
    );
    let mut took_over = 0.0;
    for (name, addr) in &voters {
        if *name == down.leader {
            continue;
        }
        took_over += rest
            .metric(*addr, "quorate_notifications_sent_total")
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(took_over, 1.0, "exactly one surviving voter sent it");
    let mut taken_over = 0.0;
    for (name, addr) in &voters {
        if *name != down.leader {
            taken_over += rest
                .metric(*addr, "quorate_notifications_taken_over_total")
                .await
                .unwrap_or(0.0);
        }
    }
    assert_eq!(
        taken_over, 1.0,
        "counted as a takeover by the voter that made it"
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_failover_run_is_notified_once_with_its_run_key() {
    init_tracing();
    let (receiver, url) = Receiver::start(false).await;
    let watch_a = "takeover_delay_s = 0.5\nself_fence_after_s = 0.2\n\
                   [[watch.pipeline.step]]\nname = \"promote-b\"\nkind = \"exec\"\n\
                   timeout_s = 5\nretries = 0\nargv = [\"/bin/false\"]\n";
    let notify = format!(
        "\n[[notify]]\nname = \"hook\"\nkind = \"http\"\nurl = \"{url}\"\n\
         on = [\"run_failed\", \"run_succeeded\"]\nretries = 0\n"
    );
    let text = fleet_watching_a(249, "", watch_a, &notify);
    let mut f = start(&text).await;
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;
    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    let key = format!("run/a-{}/failed", down.epoch);
    let seen = first_request(&receiver, &key).await;
    assert_eq!(seen.body["kind"], "run_failed", "{:?}", seen.body);
    tokio::time::sleep(SETTLE).await;
    let all = receiver.with_key("run/");
    assert_eq!(all.len(), 1, "one request per key: {all:?}");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_call_is_notified_once_by_the_node_that_took_it() {
    init_tracing();
    let (receiver, url) = Receiver::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "notify-token-5e1d\n").unwrap();
    let text = format!(
        "{}\n[api]\ntoken_file = \"{}\"\n\n[[notify]]\nname = \"hook\"\nkind = \"http\"\n\
         url = \"{url}\"\non = [\"maintenance_set\", \"maintenance_ended\"]\nretries = 0\n",
        fleet_text(250),
        token.display()
    );
    let f = start(&text).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let at = format!("http://{}/v1/sites/b/maintenance", api(&f, "c1"));
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let resp = client
            .request(method.clone(), &at)
            .bearer_auth("notify-token-5e1d")
            .json(&serde_json::json!({ "duration_s": 600 }))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("maintenance answers");
        assert_eq!(resp.status().as_u16(), 200, "{method}");
    }
    let set = first_request(&receiver, "maintenance/b/").await;
    assert_eq!(set.body["kind"], "maintenance_set", "{:?}", set.body);
    let ended = eventually("the end of the window", || async {
        receiver
            .with_key("maintenance/b/")
            .into_iter()
            .find(|s| s.key.ends_with("/ended"))
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(ended.body["kind"], "maintenance_ended");
    tokio::time::sleep(SETTLE).await;
    let all = receiver.with_key("maintenance/");
    assert_eq!(all.len(), 2, "one request per call: {all:?}");
    f.shutdown().await;
}
