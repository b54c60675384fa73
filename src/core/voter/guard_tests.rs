//! Who may tell a voter what: vote messages and verdicts from outside the electorate, out of
//! bounds, or ahead of what this voter knows are refused and change nothing.

use super::tests::{a, at, cfg, n, Ops};
use super::*;
use crate::core::trust::Refusal;

/// v1..v3 judge site a; `me` is one of them, or an outsider that only learns verdicts.
fn trusting(me: &str) -> Voter {
    let e = Electorate::new([n("v1"), n("v2"), n("v3")]);
    let judged = if e.contains(&n(me)) {
        vec![(a(), e.clone())]
    } else {
        vec![]
    };
    let mut v = Voter::new(cfg(), n(me), judged, BTreeMap::new(), vec![], 7);
    v.set_electorates(vec![(a(), e)]);
    v
}

fn verdict(slot: u64, epoch: u64, leader: &str) -> Verdict {
    Verdict {
        site: a(),
        slot,
        value: Value {
            outcome: Outcome::of_slot(slot),
            epoch,
            leader: n(leader),
        },
    }
}

fn actions(v: &mut Voter) -> Vec<VoterAction> {
    std::iter::from_fn(|| v.poll_action()).collect()
}

fn refused(from: &str, reason: Refusal) -> Vec<VoterAction> {
    vec![VoterAction::Refused {
        from: n(from),
        site: a(),
        reason,
    }]
}

fn commit(v: &mut Voter, from: &str, verdict: Verdict) -> Vec<VoterAction> {
    v.handle_message(
        at(1),
        &n(from),
        VoteMsg::Commit { verdict },
        &Ops::default(),
    );
    actions(v)
}

#[test]
fn a_commit_from_a_node_outside_the_electorate_is_refused_and_changes_nothing() {
    for me in ["v1", "outsider"] {
        let mut v = trusting(me);
        let got = commit(&mut v, "a1", verdict(0, 5, "v2"));
        assert_eq!(got, refused("a1", Refusal::NotInElectorate), "at {me}");
        assert_eq!(v.verdict(&a()), None);
        assert_eq!(v.hold_down_until(&a()), None);
    }
}

#[test]
fn a_status_verdict_from_a_node_outside_the_electorate_is_refused() {
    let mut v = trusting("v1");
    v.learn_from(at(1), &n("a1"), verdict(0, 5, "v2"));
    assert_eq!(actions(&mut v), refused("a1", Refusal::NotInElectorate));
    assert_eq!(v.verdict(&a()), None);
}

#[test]
fn a_verdict_two_slots_ahead_is_refused_until_a_majority_reports_it() {
    let mut v = trusting("v1");
    let ahead = verdict(2, 9, "v2");
    assert_eq!(
        commit(&mut v, "v2", ahead.clone()),
        refused("v2", Refusal::SlotTooFar)
    );
    assert_eq!(v.verdict(&a()), None);
    // A voter that missed slots catches up once a majority of the electorate (2 of 3)
    // reports the same verdict; one liar cannot skip the site's history.
    v.learn_from(at(2), &n("v3"), ahead.clone());
    assert_eq!(
        actions(&mut v),
        vec![VoterAction::Committed {
            verdict: ahead.clone(),
            by_me: false
        }]
    );
    assert_eq!(v.verdict(&a()), Some(&ahead));
}

#[test]
fn a_verdict_whose_leader_is_outside_the_electorate_is_refused() {
    let mut v = trusting("v1");
    let got = commit(&mut v, "v2", verdict(0, 5, "a1"));
    assert_eq!(got, refused("v2", Refusal::LeaderNotInElectorate));
    assert_eq!(v.verdict(&a()), None);
}

#[test]
fn a_verdict_whose_outcome_is_not_its_slots_is_refused() {
    let mut v = trusting("v1");
    let mut up_in_a_down_slot = verdict(0, 5, "v2");
    up_in_a_down_slot.value.outcome = Outcome::Up;
    let got = commit(&mut v, "v2", up_in_a_down_slot);
    assert_eq!(got, refused("v2", Refusal::OutcomeOfSlot));
    assert_eq!(v.verdict(&a()), None);
}

#[test]
fn an_epoch_of_u64_max_is_refused_and_never_adopted() {
    let mut v = trusting("v1");
    let got = commit(&mut v, "v2", verdict(0, u64::MAX, "v2"));
    assert_eq!(got, refused("v2", Refusal::NumberOutOfBounds));
    let huge = Ballot {
        epoch: u64::MAX,
        proposer: n("v2"),
    };
    let prepare = VoteMsg::Prepare {
        site: a(),
        slot: 0,
        ballot: huge,
        round: 1,
        wait_ms: 0,
        last: None,
    };
    v.handle_message(at(1), &n("v2"), prepare, &Ops::default());
    assert_eq!(
        actions(&mut v),
        refused("v2", Refusal::NumberOutOfBounds),
        "no promise, nothing persisted"
    );
    assert_eq!(v.durable(&a()).unwrap().promised, Ballot::zero());
    assert_eq!(v.verdict(&a()), None);
}

#[test]
fn a_voter_at_the_epoch_bound_starts_no_round_rather_than_wrap() {
    let mut v = trusting("v1");
    let top = Ballot {
        epoch: crate::core::trust::MAX_EPOCH,
        proposer: n("v2"),
    };
    let prepare = VoteMsg::Prepare {
        site: a(),
        slot: 0,
        ballot: top.clone(),
        round: 1,
        wait_ms: 0,
        last: None,
    };
    let mut ops = Ops::default();
    ops.set(Opinion::Up, 10);
    v.handle_message(at(1), &n("v2"), prepare, &ops);
    actions(&mut v);
    assert_eq!(v.durable(&a()).unwrap().promised, top);
    ops.set(Opinion::Down, 10);
    v.on_opinion_changed(at(2_000), &a(), &ops);
    let started = actions(&mut v)
        .into_iter()
        .any(|x| matches!(x, VoterAction::RoundStarted { .. }));
    assert!(!started);
}

#[test]
fn a_prepare_naming_another_proposer_is_refused() {
    let mut v = trusting("v1");
    let msg = VoteMsg::Prepare {
        site: a(),
        slot: 0,
        ballot: Ballot {
            epoch: 3,
            proposer: n("v3"),
        },
        round: 1,
        wait_ms: 0,
        last: Some(verdict(0, 2, "v3")),
    };
    v.handle_message(at(1), &n("v2"), msg, &Ops::default());
    assert_eq!(
        actions(&mut v),
        refused("v2", Refusal::ImpersonatesAnotherNode)
    );
    assert_eq!(
        v.verdict(&a()),
        None,
        "its piggybacked verdict is not looked at"
    );
}

#[test]
fn a_valid_commit_from_a_member_is_still_learned_also_by_a_node_that_does_not_judge() {
    for me in ["v1", "outsider"] {
        let mut v = trusting(me);
        let down = verdict(0, 5, "v2");
        let got = commit(&mut v, "v3", down.clone());
        assert_eq!(
            got,
            vec![VoterAction::Committed {
                verdict: down.clone(),
                by_me: false
            }],
            "at {me}"
        );
        assert_eq!(v.verdict(&a()), Some(&down));
        // The same verdict in a stranger's status is no news, and no refusal either.
        v.learn_from(at(2), &n("a1"), down.clone());
        assert_eq!(actions(&mut v), vec![]);
    }
}

#[test]
fn a_verdict_of_a_site_without_known_electorate_is_refused() {
    let mut v = Voter::new(cfg(), n("x"), vec![], BTreeMap::new(), vec![], 1);
    let got = commit(&mut v, "v2", verdict(0, 5, "v2"));
    assert_eq!(got, refused("v2", Refusal::UnknownSite));
}
