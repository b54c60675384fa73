//! A running fleet against members that lie. The certificate of a3, an Indicator inside the
//! very site a being judged, is as valid as any: with it, an impostor on the mesh sends a
//! forged DOWN Commit of the live site a (leader: a real voter), a Status with that verdict
//! and a maintenance window stamped at the end of time, a Prepare, and a run Append and
//! Heartbeat with the highest term. A real voter (b1's certificate) then sends what a member
//! may not either: numbers out of bounds, a slot two ahead, a leader outside the electorate.
//! Nothing of it is believed, every node stays healthy, `/metrics` counts the refusals, and a
//! real blackout of a still commits DOWN at every voter.

mod common;

use common::*;
use quorate::core::replica::{RunMsg, RunRecord, RunTrigger};
use quorate::core::types::{Ballot, Outcome, Value, Verdict, WallTime};
use quorate::localfleet::LocalFleet;
use quorate::net::{tls, CertPaths};
use quorate::wire::{self, MaintenanceWindow, Message, OpinionReport, PeerStatus, VoteMsg};
use std::net::SocketAddr;
use std::time::Duration;

/// A bare QUIC client holding `who`'s real certificate, connected to `to`'s mesh address.
async fn connect_as(f: &LocalFleet, who: &str, to: &str) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client");
    let paths = CertPaths::in_dir(&f.certs_dir, &n(who));
    endpoint.set_default_client_config(tls::client_config(&paths).expect("client config"));
    let mesh = f.fleet.node(&n(to)).expect("node in the fleet").mesh;
    let conn = tokio::time::timeout(WAIT, endpoint.connect(mesh, to).expect("connect"))
        .await
        .expect("connected in time")
        .expect("a fleet certificate is admitted");
    (endpoint, conn)
}

async fn send(conn: &quinn::Connection, msg: &Message) {
    let mut stream = conn.open_uni().await.expect("a stream");
    stream
        .write_all(&wire::encode_message(msg).expect("the forged message fits the limit"))
        .await
        .expect("sent");
    let _ = stream.finish();
}

fn ballot(epoch: u64, proposer: &str) -> Ballot {
    Ballot {
        epoch,
        proposer: n(proposer),
    }
}

fn down_of_a(slot: u64, epoch: u64, leader: &str) -> Verdict {
    Verdict {
        site: site("a"),
        slot,
        value: Value {
            outcome: Outcome::of_slot(slot),
            epoch,
            leader: n(leader),
        },
    }
}

fn commit(v: Verdict) -> Message {
    Message::Vote(VoteMsg::Commit { verdict: v })
}

fn run_with_term(term: u64, leader: &str) -> Vec<Message> {
    vec![
        Message::Run(RunMsg::Append {
            record: RunRecord {
                site: site("a"),
                run: 5,
                trigger: RunTrigger::Verdict,
                promised: ballot(term, leader),
                journal_ballot: ballot(term, leader),
                journal: vec![],
                forced: true,
                start_at: WallTime(0),
            },
            from: 0,
            len: 0,
        }),
        Message::Run(RunMsg::Heartbeat {
            site: site("a"),
            run: 5,
            ballot: ballot(term, leader),
            len: 0,
        }),
    ]
}

/// A Status of `node` carrying a DOWN verdict of a and a maintenance window that would
/// outrank every later call (`set_at = i64::MAX`) and last past year 9999.
fn forged_status(f: &LocalFleet, node: &str, verdict: Verdict) -> Message {
    let mut down = OpinionReport::unknown();
    down.opinion = quorate::core::types::Opinion::Down;
    Message::Status(PeerStatus {
        node: n(node),
        fleet_hash: f.fleet.hash.clone(),
        opinions: vec![(site("a"), down)],
        verdicts: vec![verdict],
        maintenance: vec![MaintenanceWindow {
            site: site("a"),
            until_unix_ms: i64::MAX,
            set_at_unix_ms: i64::MAX,
        }],
    })
}

fn refused(reason: &str) -> String {
    format!("quorate_refused_messages_total{{reason=\"{reason}\"}}")
}

/// Waits until node `addr` counts at least one refusal for each of `reasons`.
async fn wait_refusals(rest: &Rest, name: &str, addr: SocketAddr, reasons: &[&str]) {
    eventually(&format!("{name} to count {reasons:?}"), || async move {
        let text = rest.try_metrics(addr).await?;
        let missing: Vec<_> = reasons
            .iter()
            .filter(|r| metric(&text, &refused(r)).unwrap_or(0.0) < 1.0)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("none yet for {missing:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_verdicts_maintenance_and_run_messages_are_refused_and_a_real_blackout_still_fails_over(
) {
    init_tracing();
    let mut f = start_fleet(237).await;
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    let everyone = apis(&f, &["a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2"]);
    wait_opinion(&rest, &voters, "a", "up").await;

    // Every series is there from the start, zero included.
    let text = rest.metrics(api(&f, "b1")).await;
    assert_eq!(metric(&text, &refused("not_in_electorate")), Some(0.0));
    assert_eq!(metric(&text, &refused("too_large")), Some(0.0));

    // a3, an Indicator inside site a, to every voter of a's electorate.
    let forged = down_of_a(0, 1_000, "b1");
    let mut impostors = Vec::new();
    for (name, _) in &voters {
        let (endpoint, conn) = connect_as(&f, "a3", name).await;
        send(&conn, &commit(forged.clone())).await;
        send(&conn, &forged_status(&f, "a3", forged.clone())).await;
        let prepare = VoteMsg::Prepare {
            site: site("a"),
            slot: 0,
            ballot: ballot(u64::MAX, "a3"),
            round: 1,
            wait_ms: 0,
            last: Some(forged.clone()),
        };
        send(&conn, &Message::Vote(prepare)).await;
        for m in run_with_term(u64::MAX, "a3") {
            send(&conn, &m).await;
        }
        impostors.push((endpoint, conn));
    }
    for (name, addr) in &voters {
        wait_refusals(
            &rest,
            name,
            *addr,
            &["not_in_electorate", "not_operator_node"],
        )
        .await;
    }

    // b1, a real voter of a, to c1: what no member may claim either. (A pair of nodes keeps
    // one connection, and one dialed by the higher id never replaces one dialed by the
    // lower: the impostor speaks for the lower id of its pair, as a3 does above.)
    let (endpoint, conn) = connect_as(&f, "b1", "c1").await;
    let mut up_in_a_down_slot = down_of_a(0, 7, "b1");
    up_in_a_down_slot.value.outcome = Outcome::Up;
    for m in [
        commit(down_of_a(0, u64::MAX, "b1")),
        commit(down_of_a(2, 7, "b1")),
        commit(down_of_a(0, 7, "a3")),
        commit(up_in_a_down_slot),
        forged_status(&f, "b1", down_of_a(0, u64::MAX, "b1")),
    ]
    .into_iter()
    .chain(run_with_term(u64::MAX, "b1"))
    {
        send(&conn, &m).await;
    }
    impostors.push((endpoint, conn));
    wait_refusals(
        &rest,
        "c1",
        api(&f, "c1"),
        &[
            "number_out_of_bounds",
            "slot_too_far",
            "leader_not_in_electorate",
            "outcome_of_slot",
            "from_the_future",
        ],
    )
    .await;

    // Give the forged state every chance to spread through the real nodes' statuses.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, addr) in &everyone {
        let health = rest.get(*addr, "/healthz").await;
        assert_eq!(health["status"], "ok", "{name}: {health}");
        let a = rest.site(*addr, "a").await;
        assert_eq!(
            a["verdict"], "none",
            "{name} believed a forged verdict: {a}"
        );
        assert!(a["maintenance_until"].is_null(), "{name}: {a}");
        let verdicts = rest.get(*addr, "/v1/verdicts?site=a").await;
        assert_eq!(verdicts["verdicts"], serde_json::json!([]), "{name}");
        let runs = rest.get(*addr, "/v1/failovers").await;
        assert_eq!(runs["failovers"], serde_json::json!([]), "{name}: {runs}");
    }
    for (endpoint, conn) in impostors {
        conn.close(0u32.into(), b"");
        endpoint.wait_idle().await;
    }

    // A real blackout still fails over: every voter of a's electorate commits DOWN.
    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    assert!(A_VOTERS.contains(&down.leader.as_str()), "{down:?}");
    assert!(down.epoch < 1_000, "not the forged epoch: {down:?}");
    for (name, addr) in &voters {
        let health = rest.get(*addr, "/healthz").await;
        assert_eq!(health["status"], "ok", "{name}: {health}");
    }
    f.shutdown().await;
}
