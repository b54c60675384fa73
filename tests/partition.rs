//! A cut between two sites is not a disaster: when b cannot reach a but c can, b's voters
//! see a DOWN, the electorate contradicts them (an internal false positive) and no verdict is
//! committed. a's and b's nodes sit behind a UDP relay that cuts them off from each other,
//! both ways (a pair of nodes shares one connection, which either side may have dialed).

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use quorate::relay::Relay;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_between_two_sites_is_an_internal_false_positive_not_a_verdict() {
    init_tracing();
    let (text, routes) = behind_relay(&fleet_text(221), &["a1", "a2", "a3", "b1", "b2", "b3"]);
    let relay = Relay::start(routes).await.expect("the relay binds");
    let f = LocalFleet::start(&text, None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    let mesh = |ids: [&str; 3]| -> Vec<SocketAddr> {
        ids.iter()
            .map(|id| f.fleet.node(&n(id)).expect("a node of the fleet").mesh)
            .collect()
    };
    let (a_public, b_public) = (mesh(["a1", "a2", "a3"]), mesh(["b1", "b2", "b3"]));
    let ips = |addrs: &[SocketAddr]| -> Vec<IpAddr> { addrs.iter().map(|a| a.ip()).collect() };
    relay.block(&ips(&b_public), &a_public);
    relay.block(&ips(&a_public), &b_public);

    let (b1, b2, c1) = (api(&f, "b1"), api(&f, "b2"), api(&f, "c1"));
    wait_opinion(&rest, &apis(&f, &["b1", "b2"]), "a", "down").await;
    let false_positives = eventually("a vote round on b's side to be contradicted", || {
        let rest = &rest;
        async move {
            let mut total = 0.0;
            for addr in [b1, b2] {
                let text = rest.try_metrics(addr).await?;
                let rounds = metric(
                    &text,
                    r#"quorate_vote_rounds_total{outcome="false_positive"}"#,
                );
                let internal = metric(&text, "quorate_false_positives_internal_total");
                total += rounds.unwrap_or(0.0).max(internal.unwrap_or(0.0));
            }
            if total > 0.0 {
                Ok(total)
            } else {
                Err("no false positive yet".to_string())
            }
        }
    })
    .await;
    assert!(false_positives > 0.0);
    // Keep the cut a while longer: rounds are retried, none may commit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, addr) in &voters {
        let s = rest.site(*addr, "a").await;
        assert_eq!(s["verdict"], "none", "{name}: {s}");
    }
    assert_eq!(rest.site(c1, "a").await["opinion"], "up");
    let detail = rest.get(b1, "/v1/sites/a").await;
    let rounds = detail["rounds"].as_array().expect("rounds").clone();
    let contradicted = rounds
        .iter()
        .find(|r| r["outcome"] == "false_positive")
        .unwrap_or_else(|| panic!("b1 shows no contradicted round, or b2 ran them: {detail}"));
    // The UP answers came from c's voters.
    let ups: Vec<_> = contradicted["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .filter(|a| a["opinion"] == "up")
        .map(|a| a["voter"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        ups.iter().all(|v| v.starts_with('c')) && !ups.is_empty(),
        "{contradicted}"
    );
    assert!(relay.stats().dropped > 0);

    // The cut heals: b sees a UP again, no verdict was ever committed, peers are reachable.
    relay.unblock_all();
    wait_opinion(&rest, &voters, "a", "up").await;
    let a1 = api(&f, "a1");
    wait_peer(&rest, a1, "b1", true).await;
    for (name, addr) in &voters {
        let s = rest.site(*addr, "a").await;
        assert_eq!(s["verdict"], "none", "{name}: {s}");
        let v = rest.get(*addr, "/v1/verdicts").await;
        assert_eq!(v["verdicts"], serde_json::json!([]), "{name}");
    }
    f.shutdown().await;
    relay.shutdown().await;
}
