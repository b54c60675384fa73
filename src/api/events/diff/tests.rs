use super::*;
use crate::node::snapshot::{AnswerView, FailoverStepView, PeerView, VerdictView};

fn site(id: &str) -> SiteView {
    SiteView {
        id: SiteId::from(id),
        opinion: "up",
        verdict: "none",
        epoch: None,
        slot: None,
        leader: None,
        decided_at: None,
        hold_down_until: None,
        maintenance_until: None,
        hold_down_until_unix_ms: None,
        maintenance_until_unix_ms: None,
        on_alarm: "notify",
        alarms: Vec::new(),
        failover: "automatic".into(),
        judge: "host",
        electorate: vec![],
        majority: 2,
        evidence: vec![],
        rounds: vec![],
    }
}

fn snap(sites: Vec<SiteView>) -> NodeSnapshot {
    NodeSnapshot {
        node: NodeId::from("b1"),
        fleet_hash: "h1".into(),
        sites,
        ..NodeSnapshot::default()
    }
}

fn round(slot: u64, attempt: u32, outcome: &'static str) -> RoundView {
    RoundView {
        slot,
        target: "down",
        epoch: slot,
        attempt,
        outcome,
        duration_ms: 12.5,
        ended_at: format!("2026-12-04T10:00:0{attempt}.000Z"),
        answers: vec![AnswerView {
            voter: NodeId::from("c1"),
            opinion: "down",
            suspect: false,
            evidence_age_ms: Some(40),
            promised: true,
        }],
    }
}

fn verdict(site: &str, verdict: &'static str, epoch: u64) -> VerdictView {
    VerdictView {
        site: SiteId::from(site),
        verdict,
        epoch,
        slot: epoch,
        leader: NodeId::from("b1"),
        decided_at: "2026-12-04T10:00:00.000Z".into(),
    }
}

fn kinds(changes: &[Change]) -> Vec<&'static str> {
    changes.iter().map(|c| c.kind).collect()
}

#[test]
fn an_unchanged_snapshot_is_no_event() {
    let mut s = snap(vec![site("a")]);
    s.sites[0].rounds = vec![round(1, 1, "decided")];
    s.history = vec![verdict("a", "down", 1)];
    assert!(diff(&s, &s.clone()).is_empty());
}

#[test]
fn new_verdicts_come_oldest_first_each_with_what_it_replaces() {
    let mut prev = snap(vec![site("a")]);
    prev.sites[0].verdict = "up";
    prev.sites[0].epoch = Some(1);
    prev.history = vec![verdict("a", "up", 1)];
    let mut next = prev.clone();
    // Newest first, two new ones since prev.
    next.history = vec![
        verdict("a", "up", 3),
        verdict("a", "down", 2),
        verdict("a", "up", 1),
    ];
    let c = diff(&prev, &next);
    assert_eq!(kinds(&c), ["verdict", "verdict"]);
    assert_eq!(c[0].data["verdict"], "down");
    assert_eq!(c[0].data["epoch"], 2);
    assert_eq!(
        c[0].data["replaces"],
        json!({ "verdict": "up", "epoch": 1 })
    );
    assert_eq!(c[1].data["verdict"], "up");
    assert_eq!(
        c[1].data["replaces"],
        json!({ "verdict": "down", "epoch": 2 })
    );
}

#[test]
fn a_first_verdict_replaces_nothing() {
    let prev = snap(vec![site("a")]);
    let mut next = prev.clone();
    next.history = vec![verdict("a", "down", 4)];
    let c = diff(&prev, &next);
    assert_eq!(c[0].data["replaces"], Value::Null);
    assert_eq!(c[0].data["leader"], "b1");
}

#[test]
fn rounds_that_ended_since_are_sent_oldest_first_with_every_answer() {
    let mut prev = snap(vec![site("a")]);
    prev.sites[0].rounds = vec![round(1, 1, "timeout")];
    let mut next = prev.clone();
    next.sites[0].rounds = vec![
        round(1, 3, "decided"),
        round(1, 2, "timeout"),
        round(1, 1, "timeout"),
    ];
    let c = diff(&prev, &next);
    assert_eq!(kinds(&c), ["round", "round"]);
    assert_eq!(c[0].data["attempt"], 2);
    assert_eq!(c[1].data["attempt"], 3);
    assert_eq!(c[1].data["outcome"], "decided");
    assert_eq!(c[1].data["site"], "a");
    assert_eq!(c[1].data["answers"][0]["voter"], "c1");
    assert_eq!(c[1].data["answers"][0]["opinion"], "down");
}

#[test]
fn when_more_rounds_ended_than_are_kept_every_kept_one_is_new() {
    let mut prev = snap(vec![site("a")]);
    prev.sites[0].rounds = vec![round(1, 1, "timeout")];
    let mut next = prev.clone();
    next.sites[0].rounds = (2..5).rev().map(|a| round(2, a, "timeout")).collect();
    assert_eq!(diff(&prev, &next).len(), 3);
}

#[test]
fn opinion_maintenance_and_hold_down_changes_are_events() {
    let prev = snap(vec![site("a")]);
    let mut next = prev.clone();
    next.sites[0].opinion = "down";
    next.sites[0].maintenance_until = Some("2030-01-01T00:00:00.000Z".into());
    next.sites[0].hold_down_until = Some("2026-12-04T11:00:00.000Z".into());
    let c = diff(&prev, &next);
    assert_eq!(kinds(&c), ["opinion", "maintenance", "hold_down"]);
    assert_eq!(
        c[0].data,
        json!({ "site": "a", "from": "up", "to": "down" })
    );
    assert_eq!(c[1].data["state"], "set");
    assert_eq!(c[1].data["until"], "2030-01-01T00:00:00.000Z");
    // And back.
    let c = diff(&next, &prev);
    assert_eq!(kinds(&c), ["opinion", "maintenance", "hold_down"]);
    assert_eq!(c[1].data["state"], "ended");
    assert_eq!(c[1].data["until"], Value::Null);
    assert_eq!(c[1].data["was_until"], "2030-01-01T00:00:00.000Z");
}

fn run(state: &'static str, steps: Vec<FailoverStepView>) -> FailoverView {
    FailoverView {
        id: "a-2".into(),
        site: SiteId::from("a"),
        epoch: 2,
        term: 2,
        leader: NodeId::from("b1"),
        trigger: "verdict",
        state,
        summary: None,
        steps,
    }
}

fn step(attempts: u32, finished: bool) -> FailoverStepView {
    FailoverStepView {
        step: "step:0".into(),
        name: "move-vip".into(),
        attempts,
        ok: finished,
        detail: "secret output".into(),
        started_at: "2026-12-04T10:00:00.000Z".into(),
        finished_at: finished.then(|| "2026-12-04T10:00:01.000Z".into()),
        duration_ms: finished.then_some(1000.0),
    }
}

#[test]
fn runs_and_steps_are_events_as_they_start_and_move_on_without_step_output() {
    let prev = snap(vec![site("a")]);
    let mut waiting = prev.clone();
    waiting.failovers = vec![run("waiting", vec![])];
    let c = diff(&prev, &waiting);
    assert_eq!(kinds(&c), ["run"]);
    assert_eq!(c[0].data["state"], "waiting");
    assert_eq!(c[0].data["was_state"], Value::Null);

    let mut running = waiting.clone();
    running.failovers = vec![run("running", vec![step(1, false)])];
    let c = diff(&waiting, &running);
    assert_eq!(kinds(&c), ["run", "step"]);
    assert_eq!(c[0].data["was_state"], "waiting");
    assert_eq!(c[1].data["attempts"], 1);
    assert_eq!(c[1].data["finished_at"], Value::Null);
    assert!(c[1].data.get("detail").is_none(), "{}", c[1].data);

    let mut done = running.clone();
    done.failovers = vec![run("succeeded", vec![step(2, true)])];
    let c = diff(&running, &done);
    assert_eq!(kinds(&c), ["run", "step"]);
    assert_eq!(c[1].data["attempts"], 2);
    assert_eq!(c[1].data["ok"], true);
    assert_eq!(c[1].data["duration_ms"], 1000.0);
}

fn peer(node: &str, hash: Option<&str>, reachable: bool) -> PeerView {
    PeerView {
        node: NodeId::from(node),
        site: SiteId::from("c"),
        reachable,
        fleet_hash: hash.map(str::to_string),
        last_seen_ms_ago: Some(10),
    }
}

#[test]
fn fleet_hash_mismatches_appear_and_clear_and_peers_come_and_go() {
    let mut prev = snap(vec![]);
    prev.peers = vec![peer("c1", Some("h1"), true), peer("c2", None, true)];
    let mut next = prev.clone();
    next.peers = vec![peer("c1", Some("h2"), true), peer("c2", None, false)];
    let c = diff(&prev, &next);
    assert_eq!(kinds(&c), ["fleet_mismatch", "peer"]);
    assert_eq!(c[0].data["peer"], "c1");
    assert_eq!(c[0].data["state"], "appeared");
    assert_eq!(c[0].data["peer_hash"], "h2");
    assert_eq!(
        c[1].data,
        json!({ "peer": "c2", "site": "c", "reachable": false })
    );
    let c = diff(&next, &prev);
    assert_eq!(kinds(&c), ["fleet_mismatch", "peer"]);
    assert_eq!(c[0].data["state"], "cleared");
}

#[test]
fn every_kind_diff_sends_is_listed() {
    let mut prev = snap(vec![site("a")]);
    prev.peers = vec![peer("c1", Some("h1"), true)];
    let mut next = prev.clone();
    next.history = vec![verdict("a", "down", 1)];
    next.sites[0].opinion = "down";
    next.sites[0].rounds = vec![round(1, 1, "decided")];
    next.sites[0].maintenance_until = Some("x".into());
    next.sites[0].hold_down_until = Some("y".into());
    next.failovers = vec![run("running", vec![step(1, false)])];
    next.peers = vec![peer("c1", Some("h9"), false)];
    let c = diff(&prev, &next);
    assert_eq!(c.len(), 9, "{:?}", kinds(&c));
    for k in kinds(&c) {
        assert!(KINDS.contains(&k), "{k} is not in KINDS");
    }
}

#[test]
fn an_end_time_that_only_wobbles_is_no_change_but_a_moved_one_is() {
    let mut prev = snap(vec![site("a")]);
    prev.sites[0].hold_down_until = Some("2026-12-04T17:46:51.740Z".into());
    prev.sites[0].hold_down_until_unix_ms = Some(1_796_406_411_740);
    let mut next = prev.clone();
    next.sites[0].hold_down_until = Some("2026-12-04T17:46:51.741Z".into());
    next.sites[0].hold_down_until_unix_ms = Some(1_796_406_411_741);
    assert!(diff(&prev, &next).is_empty());
    next.sites[0].hold_down_until = Some("2026-12-04T17:51:51.741Z".into());
    next.sites[0].hold_down_until_unix_ms = Some(1_796_406_711_741);
    let c = diff(&prev, &next);
    assert_eq!(kinds(&c), ["hold_down"]);
    assert_eq!(c[0].data["state"], "set");
}
