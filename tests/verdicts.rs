//! Verdicts of a whole fleet on loopback (real QUIC, real SQLite, in-process nodes): a site
//! blackout is declared DOWN once by the electorate and UP again after recovery; a partial
//! outage, a missing voter and concurrent proposers do what the design says.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use quorate::node::EventKind;
use quorate::relay::{LinkFaults, Relay};
use std::collections::BTreeSet;
use std::time::Duration;

/// The verdicts GET /v1/verdicts?site=`site` lists on a node, newest first, as
/// (verdict, epoch, slot, leader).
async fn history(
    rest: &Rest,
    addr: std::net::SocketAddr,
    site: &str,
) -> Vec<(String, u64, u64, String)> {
    let body = rest.get(addr, &format!("/v1/verdicts?site={site}")).await;
    body["verdicts"]
        .as_array()
        .expect("a verdict list")
        .iter()
        .map(|v| {
            assert_eq!(v["site"], site, "{v}");
            (
                v["verdict"].as_str().expect("verdict").to_string(),
                v["epoch"].as_u64().expect("epoch"),
                v["slot"].as_u64().expect("slot"),
                v["leader"].as_str().expect("leader").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackout_is_declared_down_once_by_every_surviving_voter_and_up_after_recovery() {
    init_tracing();
    let mut f = start_fleet(211).await;
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    assert!(A_VOTERS.contains(&down.leader.as_str()), "{down:?}");
    // A voter may learn the verdict before its own Pinger has seen the site DOWN.
    wait_opinion(&rest, &voters, "a", "down").await;
    for (name, addr) in &voters {
        assert_eq!(
            history(&rest, *addr, "a").await,
            vec![("down".to_string(), down.epoch, 0, down.leader.clone())],
            "{name}'s /v1/verdicts"
        );
        let text = rest.metrics(*addr).await;
        assert_eq!(
            metric(&text, r#"quorate_verdicts_total{site="a",verdict="down"}"#),
            Some(1.0),
            "{name}'s /metrics:\n{text}"
        );
        let detections = metric(&text, "quorate_detection_delay_seconds_count").unwrap_or(0.0);
        assert!(detections >= 1.0, "{name}'s /metrics:\n{text}");
        let s = rest.site(*addr, "a").await;
        assert!(s["hold_down_until"].is_string(), "{name}: {s}");
    }

    // Recovery: the Indicators answer again and the electorate commits UP in the next slot.
    for id in ["a1", "a2", "a3"] {
        f.start_node(&n(id)).await.expect("a's node restarts");
    }
    let up = wait_verdict(&rest, &voters, "a", "up").await;
    assert!(up.epoch > down.epoch, "UP at {up:?} after DOWN at {down:?}");
    for (name, addr) in &voters {
        let detail = rest.get(*addr, "/v1/sites/a").await;
        assert_eq!(detail["slot"], 1, "{name}: {detail}");
        let h = history(&rest, *addr, "a").await;
        assert_eq!(
            h,
            vec![
                ("up".to_string(), up.epoch, 1, up.leader.clone()),
                ("down".to_string(), down.epoch, 0, down.leader.clone()),
            ],
            "{name}'s /v1/verdicts"
        );
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_live_indicator_keeps_its_site_up() {
    init_tracing();
    let mut f = start_fleet(212).await;
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    // a1 and a2 (Indicators, and voters of b) stop; a3 goes on answering.
    f.stop_node(&n("a1")).await;
    f.stop_node(&n("a2")).await;
    let b1 = api(&f, "b1");
    eventually("b1 to see a1 and a2 unreachable and a3 reachable", || {
        let rest = &rest;
        async move {
            let s = rest.get(b1, "/v1/sites/a").await;
            let mine = s["evidence"]
                .as_array()
                .and_then(|e| e.iter().find(|p| p["pinger"] == "b1").cloned())
                .ok_or(format!("no own evidence in {s}"))?;
            let reach = |id: &str| {
                mine["indicators"]
                    .as_array()
                    .and_then(|l| l.iter().find(|i| i["node"] == id))
                    .map(|i| i["reachable"].clone())
            };
            let want = serde_json::json!(false);
            if reach("a1") == Some(want.clone())
                && reach("a2") == Some(want)
                && reach("a3") == Some(serde_json::json!(true))
            {
                Ok(())
            } else {
                Err(mine.to_string())
            }
        }
    })
    .await;
    // Several probe budgets (80 ms each) more: still no verdict anywhere.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, addr) in &voters {
        let s = rest.site(*addr, "a").await;
        assert_eq!(s["verdict"], "none", "{name}: {s}");
        assert_eq!(s["opinion"], "up", "{name}: {s}");
        let text = rest.metrics(*addr).await;
        assert_eq!(
            metric(&text, r#"quorate_vote_rounds_total{outcome="down"}"#),
            Some(0.0),
            "{name}"
        );
    }
    assert_eq!(rest.site(b1, "a").await["opinion"], "up");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_four_voters_still_reach_the_verdict() {
    init_tracing();
    let mut f = start_fleet(213).await;
    let rest = Rest::new();
    let voters = apis(&f, &["b1", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;

    f.stop_node(&n("b2")).await;
    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    assert_ne!(down.leader, "b2");
    for (name, addr) in &voters {
        let s = rest.get(*addr, "/v1/sites/a").await;
        assert_eq!(s["majority"], 3, "{name}: {s}");
    }
    f.shutdown().await;
}

/// The voters of a reach each other through a relay that delays every packet between them by
/// 30 ms (not their probes of a's Indicators, which a pair's one connection may carry
/// through the relay too when the Indicator dialed it), so
/// the Prepare of the first voter to see the blackout arrives after the others saw it too:
/// several voters propose for the same slot at once. Exactly one value must be committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposers_commit_exactly_one_epoch() {
    init_tracing();
    let (text, routes) = behind_relay(&fleet_text(214), &A_VOTERS);
    let relay = Relay::start(routes).await.expect("the relay binds");
    // The relay's public addresses are the voters' (each voter's mesh IP is its own).
    let voter_ips: Vec<std::net::IpAddr> = relay.public_addrs().iter().map(|a| a.ip()).collect();
    let between_voters = LinkFaults {
        delay: Duration::from_millis(30),
        loss_percent: 0,
    };
    relay.set_link(&voter_ips, relay.public_addrs(), between_voters);
    let mut f = LocalFleet::start(&text, None, true)
        .await
        .expect("the fleet starts");
    let mut events = f.take_events().expect("events");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    let mut slot = 0;
    let mut duels = 0;
    let mut last = None;
    // Up to three blackouts until one had two proposers or more at once (the first nearly
    // always has); every one must end with one epoch everywhere.
    for cycle in 0..3 {
        while events.try_recv().is_ok() {}
        f.stop_site(&site("a")).await;
        let down = wait_verdict(&rest, &voters, "a", "down").await;
        let mut proposers = BTreeSet::new();
        while let Ok(ev) = events.try_recv() {
            if let EventKind::RoundStarted {
                site: s, target, ..
            } = &ev.kind
            {
                if s.as_str() == "a" && target.as_api_str() == "down" {
                    proposers.insert(ev.node.to_string());
                }
            }
        }
        println!("blackout {cycle}: proposers {proposers:?}, verdict {down:?}");
        for (name, addr) in &voters {
            let downs: Vec<_> = history(&rest, *addr, "a")
                .await
                .into_iter()
                .filter(|(v, ..)| v == "down")
                .collect();
            assert_eq!(downs.len(), cycle + 1, "{name}: {downs:?}");
            assert_eq!(
                downs[0],
                ("down".to_string(), down.epoch, slot, down.leader.clone()),
                "{name}"
            );
        }
        last = Some(down.clone());
        if proposers.len() >= 2 {
            duels += 1;
            break;
        }
        for id in ["a1", "a2", "a3"] {
            f.start_node(&n(id)).await.expect("a's node restarts");
        }
        let up = wait_verdict(&rest, &voters, "a", "up").await;
        assert!(up.epoch > down.epoch);
        slot += 2;
    }
    assert!(duels > 0, "no blackout had two proposers at once");
    // Nothing changes afterwards: no late second value for the slot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = wait_verdict(&rest, &voters, "a", "down").await;
    let detail = rest.get(voters[0].1, "/v1/sites/a").await;
    assert_eq!(detail["slot"], slot, "{detail}");
    assert_eq!(Some(again), last);
    f.shutdown().await;
    relay.shutdown().await;
}
