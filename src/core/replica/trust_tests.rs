//! Who may take part in a run: only members of the site's electorate, each speaking for
//! itself, with terms that fit `MAX_EPOCH`.

use super::*;
use crate::core::trust::{Refusal, MAX_EPOCH};

fn id(s: &str) -> NodeId {
    NodeId::from(s)
}

fn site() -> SiteId {
    SiteId("a".to_string())
}

fn t(ms: u64) -> Time {
    Time::from_micros(ms * 1000)
}

fn ballot(epoch: u64, proposer: &str) -> Ballot {
    Ballot {
        epoch,
        proposer: id(proposer),
    }
}

/// b1, b2 and c1 judge site a; a1 is an Indicator inside it.
fn electorate() -> Electorate {
    Electorate::new([id("b1"), id("b2"), id("c1")])
}

fn member() -> Replicas {
    Replicas::new(
        id("b2"),
        ReplicaConfig {
            lease: Duration::from_millis(1000),
            heartbeat: Duration::from_millis(250),
        },
    )
}

fn record(run: u64, leader: &str, term: u64) -> RunRecord {
    RunRecord {
        site: site(),
        run,
        trigger: RunTrigger::Verdict,
        promised: ballot(term, leader),
        journal_ballot: ballot(term, leader),
        journal: vec![],
        forced: false,
        start_at: WallTime(0),
    }
}

fn actions(r: &mut Replicas) -> Vec<ReplicaAction> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

fn refused(from: &str, reason: Refusal) -> Vec<ReplicaAction> {
    vec![ReplicaAction::Refused {
        from: id(from),
        site: site(),
        reason,
    }]
}

#[test]
fn an_append_from_an_indicator_outside_the_electorate_is_refused_and_changes_nothing() {
    let mut r = member();
    let msg = RunMsg::Append {
        record: record(7, "a1", 7),
        from: 0,
        len: 0,
    };
    r.handle(t(1), &id("a1"), msg, &electorate());
    assert_eq!(actions(&mut r), refused("a1", Refusal::NotInElectorate));
    assert_eq!(r.record(&site(), 7), None);
}

#[test]
fn a_heartbeat_from_outside_the_electorate_is_refused_and_renews_no_lease() {
    let mut r = member();
    r.handle(
        t(1),
        &id("b1"),
        RunMsg::Append {
            record: record(7, "b1", 7),
            from: 0,
            len: 0,
        },
        &electorate(),
    );
    actions(&mut r);
    let before = r.record(&site(), 7).cloned();
    let hb = RunMsg::Heartbeat {
        site: site(),
        run: 7,
        ballot: ballot(u64::MAX, "a1"),
        len: 0,
    };
    r.handle(t(2), &id("a1"), hb, &electorate());
    assert_eq!(actions(&mut r), refused("a1", Refusal::NotInElectorate));
    assert_eq!(r.record(&site(), 7).cloned(), before);
}

#[test]
fn a_term_above_the_bound_from_a_member_is_refused_never_promised() {
    let mut r = member();
    r.handle(
        t(1),
        &id("b1"),
        RunMsg::Append {
            record: record(7, "b1", 7),
            from: 0,
            len: 0,
        },
        &electorate(),
    );
    actions(&mut r);
    for epoch in [MAX_EPOCH + 1, u64::MAX] {
        let hb = RunMsg::Heartbeat {
            site: site(),
            run: 7,
            ballot: ballot(epoch, "b1"),
            len: 0,
        };
        r.handle(t(2), &id("b1"), hb, &electorate());
        assert_eq!(actions(&mut r), refused("b1", Refusal::NumberOutOfBounds));
        let append = RunMsg::Append {
            record: record(7, "b1", epoch),
            from: 0,
            len: 0,
        };
        r.handle(t(3), &id("b1"), append, &electorate());
        assert_eq!(actions(&mut r), refused("b1", Refusal::NumberOutOfBounds));
    }
    assert_eq!(r.record(&site(), 7).unwrap().promised, ballot(7, "b1"));
}

#[test]
fn an_append_naming_another_leader_is_refused() {
    let mut r = member();
    let msg = RunMsg::Append {
        record: record(7, "c1", 7),
        from: 0,
        len: 0,
    };
    r.handle(t(1), &id("b1"), msg, &electorate());
    assert_eq!(
        actions(&mut r),
        refused("b1", Refusal::ImpersonatesAnotherNode)
    );
    assert_eq!(r.record(&site(), 7), None);
}

#[test]
fn acks_from_outside_the_electorate_do_not_count_towards_the_majority() {
    let mut r = member();
    r.lead_new(
        t(0),
        site(),
        7,
        RunTrigger::Verdict,
        false,
        WallTime(0),
        electorate(),
        vec![],
    );
    actions(&mut r);
    let ack = RunMsg::Ack {
        site: site(),
        run: 7,
        ballot: ballot(7, "b2"),
        ok: true,
        promised: ballot(7, "b2"),
        len: 0,
    };
    r.handle(t(1), &id("a1"), ack.clone(), &electorate());
    assert_eq!(actions(&mut r), refused("a1", Refusal::NotInElectorate));
    assert!(!r.replicated(&site(), 7));
    r.handle(t(1), &id("c1"), ack, &electorate());
    assert!(r.replicated(&site(), 7), "a member's ack still counts");
}

#[test]
fn an_append_from_a_member_is_still_accepted() {
    let mut r = member();
    let rec = record(7, "b1", 7);
    r.handle(
        t(1),
        &id("b1"),
        RunMsg::Append {
            record: rec.clone(),
            from: 0,
            len: 0,
        },
        &electorate(),
    );
    let got = actions(&mut r);
    assert!(
        matches!(&got[0], ReplicaAction::Persist(p) if *p == rec),
        "{got:?}"
    );
    assert!(
        matches!(&got[1], ReplicaAction::Send { to, msg: RunMsg::Ack { ok: true, .. } } if *to == id("b1")),
        "{got:?}"
    );
}
