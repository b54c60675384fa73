//! The fast round: one message delay from the majority-th opinion to the verdict, one value
//! per slot, acceptances counted only from their own senders, and the classic round as the
//! fallback that re-proposes whatever the fast round may have chosen.

use super::fast::{fast_leader, possibly_chosen};
use super::tests::{a, at, cfg, n, Ops, World, FOUR};
use super::*;

fn electorate(names: &[&str]) -> Electorate {
    Electorate::new(names.iter().map(|s| n(s)))
}

fn fast_value(names: &[&str], slot: u64, epoch: u64) -> Value {
    Value {
        outcome: Outcome::of_slot(slot),
        epoch,
        leader: fast_leader(&a(), slot, &electorate(names)).unwrap(),
    }
}

fn fast_ballot(epoch: u64) -> Ballot {
    Ballot {
        epoch,
        proposer: NodeId::default(),
    }
}

fn fast_accept(slot: u64, value: Value, age_ms: u32) -> VoteMsg {
    VoteMsg::FastAccept {
        site: a(),
        slot,
        value,
        opinion: Opinion::Down,
        evidence_age_ms: age_ms,
    }
}

fn voter(me: &str, names: &[&str]) -> Voter {
    Voter::new(
        cfg(),
        n(me),
        vec![(a(), electorate(names))],
        BTreeMap::new(),
        vec![],
        1,
    )
}

fn drain(v: &mut Voter) -> Vec<VoterAction> {
    std::iter::from_fn(|| v.poll_action()).collect()
}

fn down(age_ms: u32) -> Ops {
    let mut o = Ops::default();
    o.set(Opinion::Down, age_ms);
    o
}

#[test]
fn a_down_opinion_makes_the_fast_acceptance_durable_before_telling_every_member() {
    let mut v = voter("b1", &FOUR);
    v.on_opinion_changed(at(0), &a(), &down(10));
    let value = fast_value(&FOUR, 0, 1);
    let send = |to: &str| VoterAction::Send {
        to: n(to),
        msg: fast_accept(0, value.clone(), 10),
    };
    assert_eq!(
        drain(&mut v),
        vec![
            VoterAction::Persist {
                site: a(),
                durable: Durable {
                    promised: fast_ballot(1),
                    accepted: Some(Accepted {
                        slot: 0,
                        ballot: fast_ballot(1),
                        value: value.clone(),
                    }),
                },
            },
            VoterAction::RoundStarted {
                site: a(),
                slot: 0,
                target: Outcome::Down,
                epoch: 1,
                attempt: 0,
            },
            send("b2"),
            send("c1"),
            send("c2"),
        ],
        "no Prepare: the fast ballot is below every classic one"
    );
}

#[test]
fn a_majority_of_fast_acceptances_decides_in_one_message_delay_at_every_voter() {
    let mut w = World::new(&FOUR);
    for v in ["b1", "c1", "c2"] {
        w.opinion(v, Opinion::Down);
    }
    // One hop: every acceptance delivered once, nothing sent in answer but Commits.
    let hop: Vec<_> = w.queue.drain(..).collect();
    assert!(hop
        .iter()
        .all(|(_, _, m)| matches!(m, VoteMsg::FastAccept { .. })));
    w.queue.extend(hop);
    let expected = Verdict {
        site: a(),
        slot: 0,
        value: fast_value(&FOUR, 0, 1),
    };
    let mut delivered = 9;
    while delivered > 0 {
        assert!(w.deliver_one());
        delivered -= 1;
    }
    for v in FOUR {
        assert_eq!(w.verdict_of(v), Some(expected.clone()), "{v} after one hop");
    }
    assert_eq!(
        w.rounds.len(),
        4,
        "every voter reports the fast round it counted"
    );
    for (who, r) in &w.rounds {
        assert_eq!((r.attempt, r.outcome), (0, RoundOutcome::Majority), "{who}");
        let voters: Vec<&str> = r.answers.iter().map(|x| x.voter.as_str()).collect();
        assert_eq!(voters.len(), 3, "{who}: {voters:?}");
        assert!(!voters.contains(&"b2"), "{who}: b2 did not vote");
    }
    w.run_until(at(2000));
    assert_eq!(w.committed.len(), 4, "each voter learns it exactly once");
}

#[test]
fn the_next_slot_is_decided_fast_too_at_the_next_epoch() {
    let names = ["b1", "c1", "c2"];
    let mut w = World::new(&names);
    for v in names {
        w.opinion(v, Opinion::Down);
    }
    w.run_until(at(100));
    for v in names {
        w.opinion(v, Opinion::Up);
    }
    w.run_until(at(200));
    let up = Verdict {
        site: a(),
        slot: 1,
        value: fast_value(&names, 1, 3),
    };
    for v in names {
        assert_eq!(w.verdict_of(v), Some(up.clone()), "{v}");
    }
    assert!(
        w.rounds.iter().all(|(_, r)| r.attempt == 0),
        "no classic round ran"
    );
}

#[test]
fn a_fast_round_short_of_a_majority_falls_back_to_a_classic_round_that_keeps_its_value() {
    let mut w = World::new(&FOUR);
    w.down.insert(n("c2"));
    w.opinion("b1", Opinion::Down);
    w.opinion("b2", Opinion::Down);
    w.run_until(at(50));
    assert_eq!(w.verdict_of("b1"), None, "two of four is no majority");
    // c1 only now turns DOWN, after the acceptances of b1 and b2 had their vote timeout.
    w.run_until(at(299));
    assert!(w.rounds.is_empty(), "the fast round has its vote timeout");
    w.now = at(299);
    w.ops.get_mut(&n("c1")).unwrap().set(Opinion::Suspect, 10);
    w.run_until(at(2000));
    w.opinion("c1", Opinion::Down);
    w.run_until(at(4000));
    let v = w.verdict_of("b1").expect("the classic round decides");
    assert_eq!(
        v.value,
        fast_value(&FOUR, 0, 1),
        "the classic round re-proposes the value the fast ballot holds"
    );
    for x in ["b2", "c1"] {
        assert_eq!(w.verdict_of(x), Some(v.clone()), "{x}");
    }
    assert!(w.outcomes().contains(&RoundOutcome::Majority));
}

#[test]
fn one_down_voter_against_two_up_is_contradicted_after_its_fast_round() {
    let mut w = World::new(&["b1", "c1", "c2"]);
    w.opinion("c1", Opinion::Up);
    w.opinion("c2", Opinion::Up);
    w.opinion("b1", Opinion::Down);
    w.run_until(at(2000));
    assert_eq!(w.verdict_of("b1"), None);
    assert_eq!(w.verdict_of("c1"), None);
    assert_eq!(w.outcomes(), vec![RoundOutcome::Contradicted]);
    assert_eq!(
        w.rounds[0].1.started,
        at(300),
        "after the fast round's timeout"
    );
}

#[test]
fn acceptances_a_vote_timeout_apart_are_not_one_majority() {
    let mut v = voter("c2", &["b1", "c1", "c2"]);
    let value = fast_value(&["b1", "c1", "c2"], 0, 1);
    let up = Ops::default();
    v.handle_message(at(0), &n("b1"), fast_accept(0, value.clone(), 10), &up);
    v.handle_message(at(400), &n("c1"), fast_accept(0, value.clone(), 10), &up);
    assert_eq!(v.verdict(&a()), None, "b1's opinion is 400 ms old");
    v.handle_message(at(450), &n("b1"), fast_accept(0, value.clone(), 10), &up);
    assert_eq!(v.verdict(&a()).map(|x| &x.value), Some(&value));
}

#[test]
fn a_fast_acceptance_with_stale_evidence_counts_for_nothing() {
    let names = ["b1", "c1", "c2"];
    let mut v = voter("c2", &names);
    let value = fast_value(&names, 0, 1);
    let up = Ops::default();
    v.handle_message(at(0), &n("b1"), fast_accept(0, value.clone(), 5000), &up);
    v.handle_message(at(1), &n("c1"), fast_accept(0, value.clone(), 10), &up);
    assert_eq!(v.verdict(&a()), None);
}

#[test]
fn one_member_repeating_its_acceptance_is_one_vote_and_a_non_member_is_refused() {
    let names = ["b1", "c1", "c2"];
    let mut v = voter("c2", &names);
    let value = fast_value(&names, 0, 1);
    let up = Ops::default();
    for i in 0..5 {
        v.handle_message(at(i), &n("b1"), fast_accept(0, value.clone(), 10), &up);
    }
    assert_eq!(v.verdict(&a()), None, "one sender, one vote");
    v.handle_message(at(6), &n("a3"), fast_accept(0, value.clone(), 10), &up);
    let acts = drain(&mut v);
    assert!(
        acts.contains(&VoterAction::Refused {
            from: n("a3"),
            site: a(),
            reason: Refusal::NotInElectorate
        }),
        "{acts:?}"
    );
    assert_eq!(
        v.verdict(&a()),
        None,
        "an outsider's acceptance is not counted"
    );
    let outside = Value {
        leader: n("a3"),
        ..value.clone()
    };
    v.handle_message(at(7), &n("c1"), fast_accept(0, outside, 10), &up);
    assert!(drain(&mut v).contains(&VoterAction::Refused {
        from: n("c1"),
        site: a(),
        reason: Refusal::LeaderNotInElectorate
    }));
    assert_eq!(v.verdict(&a()), None);
    v.handle_message(at(8), &n("c1"), fast_accept(0, value.clone(), 10), &up);
    assert_eq!(v.verdict(&a()).map(|x| &x.value), Some(&value));
}

#[test]
fn an_acceptance_of_another_epoch_or_slot_is_not_counted() {
    let names = ["b1", "c1", "c2"];
    let mut v = voter("c2", &names);
    let up = Ops::default();
    let wrong_epoch = fast_value(&names, 0, 7);
    v.handle_message(
        at(0),
        &n("b1"),
        fast_accept(0, wrong_epoch.clone(), 10),
        &up,
    );
    v.handle_message(at(0), &n("c1"), fast_accept(0, wrong_epoch, 10), &up);
    let ahead = fast_value(&names, 2, 1);
    v.handle_message(at(0), &n("b1"), fast_accept(2, ahead.clone(), 10), &up);
    v.handle_message(at(0), &n("c1"), fast_accept(2, ahead, 10), &up);
    assert_eq!(v.verdict(&a()), None);
}

#[test]
fn a_voter_that_promised_a_classic_ballot_does_not_accept_fast_and_proposes_above_it() {
    let names = ["b1", "c1", "c2"];
    let mut durable = BTreeMap::new();
    durable.insert(
        a(),
        Durable {
            promised: Ballot {
                epoch: 3,
                proposer: n("c1"),
            },
            accepted: None,
        },
    );
    let mut v = Voter::new(
        cfg(),
        n("b1"),
        vec![(a(), electorate(&names))],
        durable,
        vec![],
        1,
    );
    v.on_opinion_changed(at(0), &a(), &down(10));
    let acts = drain(&mut v);
    assert!(!acts.iter().any(|x| matches!(
        x,
        VoterAction::Send {
            msg: VoteMsg::FastAccept { .. },
            ..
        }
    )));
    assert!(
        acts.contains(&VoterAction::RoundStarted {
            site: a(),
            slot: 0,
            target: Outcome::Down,
            epoch: 5,
            attempt: 1
        }),
        "{acts:?}"
    );
}

#[test]
fn a_later_run_term_keeps_the_voter_out_of_the_fast_round() {
    let mut v = voter("b1", &["b1", "c1", "c2"]);
    // A failover run's takeover reached term 5: a fast epoch of 1 would be below it; the
    // classic ballot takes the next verdict (odd) epoch above it.
    v.observe_epoch(&a(), 5);
    v.on_opinion_changed(at(0), &a(), &down(10));
    let epochs: Vec<u64> = drain(&mut v)
        .into_iter()
        .filter_map(|x| match x {
            VoterAction::RoundStarted { epoch, .. } => Some(epoch),
            _ => None,
        })
        .collect();
    assert_eq!(epochs, vec![7]);
}

#[test]
fn the_classic_round_waits_when_the_fast_ballot_holds_two_values_a_majority_may_have_chosen() {
    let e = electorate(&["b1", "c1", "c2"]);
    let v1 = fast_value(&["b1", "c1", "c2"], 0, 1);
    let v2 = Value {
        leader: n("c2"),
        ..v1.clone()
    };
    assert_ne!(v1, v2);
    // Two of three answered, one with each value: either may have been chosen with the third.
    assert_eq!(possibly_chosen([&v1, &v2].into_iter(), 2, &e).len(), 2);
    // All three answered: only the value accepted by two may have been chosen.
    assert_eq!(
        possibly_chosen([&v1, &v2, &v1].into_iter(), 3, &e),
        vec![v1.clone()]
    );
    // All answered, one acceptance: nothing was chosen; the proposer is free.
    assert!(possibly_chosen([&v2].into_iter(), 3, &e).is_empty());
    // Two answered and one of them accepted: the silent one could complete a majority.
    assert_eq!(possibly_chosen([&v2].into_iter(), 2, &e), vec![v2]);
}

#[test]
fn the_leader_that_counted_the_majority_leads_and_a_learner_does_not() {
    let names = ["b1", "c1", "c2"];
    let value = fast_value(&names, 0, 1);
    let leader = value.leader.clone();
    let other = names.iter().map(|s| n(s)).find(|x| *x != leader).unwrap();
    for me in [leader.clone(), other] {
        let mut v = voter(me.as_str(), &names);
        let senders: Vec<NodeId> = names.iter().map(|s| n(s)).filter(|x| *x != me).collect();
        for s in &senders {
            v.handle_message(at(0), s, fast_accept(0, value.clone(), 10), &Ops::default());
        }
        let acts = drain(&mut v);
        let by_me = acts.iter().find_map(|x| match x {
            VoterAction::Committed { by_me, .. } => Some(*by_me),
            _ => None,
        });
        assert_eq!(by_me, Some(true), "{me}: counted here");
        assert!(!acts.iter().any(|x| matches!(x, VoterAction::Lead { .. })));
        assert!(acts.contains(&VoterAction::Broadcast {
            msg: VoteMsg::Commit {
                verdict: Verdict {
                    site: a(),
                    slot: 0,
                    value: value.clone()
                }
            }
        }));
    }
}

#[test]
fn a_leader_that_only_heard_the_commit_leads_once_its_own_opinion_is_down() {
    let names = ["b1", "c1", "c2"];
    let value = fast_value(&names, 0, 1);
    let leader = value.leader.clone();
    let peer = names.iter().map(|s| n(s)).find(|x| *x != leader).unwrap();
    let mut v = voter(leader.as_str(), &names);
    let verdict = Verdict {
        site: a(),
        slot: 0,
        value,
    };
    let mut ops = Ops::default();
    ops.set(Opinion::Up, 10);
    let commit = VoteMsg::Commit {
        verdict: verdict.clone(),
    };
    v.handle_message(at(0), &peer, commit, &ops);
    let acts = drain(&mut v);
    assert!(acts.contains(&VoterAction::Committed {
        verdict: verdict.clone(),
        by_me: false
    }));
    assert!(
        !acts.iter().any(|x| matches!(x, VoterAction::Lead { .. })),
        "this node still sees the site up: a Commit alone starts nothing"
    );
    v.handle_timeout(at(50), &ops);
    let leads = |acts: Vec<VoterAction>| -> Vec<VoterAction> {
        acts.into_iter()
            .filter(|x| matches!(x, VoterAction::Lead { .. }))
            .collect()
    };
    assert!(leads(drain(&mut v)).is_empty());
    ops.set(Opinion::Down, 10);
    v.on_opinion_changed(at(100), &a(), &ops);
    let acts = drain(&mut v);
    assert!(
        acts.contains(&VoterAction::Send {
            to: peer.clone(),
            msg: VoteMsg::FastAccept {
                site: a(),
                slot: 1,
                value: fast_value(&names, 1, 3),
                opinion: Opinion::Down,
                evidence_age_ms: 10,
            },
        }),
        "its UP acceptance for slot 1 no longer counts: {acts:?}"
    );
    assert_eq!(leads(acts), vec![VoterAction::Lead { verdict }]);
    v.on_opinion_changed(at(200), &a(), &ops);
    assert!(
        !drain(&mut v)
            .iter()
            .any(|x| matches!(x, VoterAction::Lead { .. })),
        "led once"
    );
}

#[test]
fn a_fast_round_with_the_leader_dead_still_decides_and_the_leader_leads_when_back() {
    let mut w = World::new(&FOUR);
    let leader = fast_value(&FOUR, 0, 1).leader;
    w.down.insert(leader.clone());
    for v in FOUR.iter().filter(|v| n(v) != leader) {
        w.opinion(v, Opinion::Down);
    }
    w.run_until(at(100));
    let peer = FOUR.iter().map(|v| n(v)).find(|v| *v != leader).unwrap();
    let verdict = w
        .verdict_of(peer.as_str())
        .expect("three of four decide without the leader");
    w.down.remove(&leader);
    w.ops.get_mut(&leader).unwrap().set(Opinion::Down, 10);
    let ops = w.ops[&leader].clone();
    let lv = w.voters.get_mut(&leader).unwrap();
    lv.learn_from(at(200), &peer, verdict.clone());
    lv.on_opinion_changed(at(200), &a(), &ops);
    w.collect(&leader);
    assert_eq!(w.leads, vec![(leader, verdict)]);
}

#[test]
fn a_voter_whose_opinion_leaves_down_withdraws_its_acceptance_from_the_count() {
    let names = ["b1", "c1", "c2"];
    let mut w = World::new(&names);
    w.opinion("b1", Opinion::Down);
    w.deliver_all();
    w.opinion("b1", Opinion::Up);
    w.deliver_all();
    w.opinion("c1", Opinion::Down);
    w.deliver_all();
    assert_eq!(
        w.verdict_of("c2"),
        None,
        "b1 is UP again: one DOWN of three"
    );
    assert_eq!(w.verdict_of("c1"), None);
    w.opinion("b1", Opinion::Down);
    w.deliver_all();
    let expected = fast_value(&names, 0, 1);
    for v in names {
        assert_eq!(
            w.verdict_of(v).map(|x| x.value),
            Some(expected.clone()),
            "{v}"
        );
    }
    let fast: Vec<_> = w.rounds.iter().filter(|(_, r)| r.attempt == 0).collect();
    assert_eq!(fast.len(), 3, "decided in the fast round everywhere");
}

#[test]
fn the_fast_leader_is_the_same_on_every_node_and_rotates_with_the_slot() {
    // Every voter of a fleet must compute the same leader, whatever it was built with: these
    // values are part of the protocol (changing them is a wire change).
    let e = electorate(&FOUR);
    let leaders: Vec<String> = (0..4)
        .map(|slot| fast_leader(&a(), slot, &e).unwrap().to_string())
        .collect();
    assert_eq!(leaders, ["b1", "b2", "c1", "c2"]);
    let other = fast_leader(&SiteId::from("b"), 0, &e).unwrap();
    assert_eq!(other.as_str(), "b2", "another site starts elsewhere");
    assert_eq!(fast_leader(&a(), 0, &Electorate::new([])), None);
}

#[test]
fn a_voter_back_at_down_after_its_vote_timeout_accepts_fast_again_instead_of_going_classic() {
    // b1's Pinger still sees the site DOWN for a moment after the others decided it UP, so it
    // accepts the next slot's fast value at once, then its opinion turns UP within the vote
    // timeout. When the site is really lost, much later, b1 is one of the three DOWN voters
    // a majority needs (c2 is dead): a classic round from it would cost two round trips more.
    let mut w = World::new(&FOUR);
    w.down.insert(n("c2"));
    for x in ["b2", "c1"] {
        w.opinion(x, Opinion::Up);
    }
    w.opinion("b1", Opinion::Down);
    w.deliver_all();
    w.now = at(20);
    w.opinion("b1", Opinion::Up);
    w.run_until(at(2000));
    assert!(w.rounds.is_empty(), "a lone DOWN decides nothing");
    w.now = at(5000);
    for x in ["b1", "b2", "c1"] {
        w.opinion(x, Opinion::Down);
    }
    w.run_until(at(5100));
    let expected = fast_value(&FOUR, 0, 1);
    for x in ["b1", "b2", "c1"] {
        assert_eq!(
            w.verdict_of(x).map(|v| v.value),
            Some(expected.clone()),
            "{x}"
        );
    }
    assert!(
        w.rounds.iter().all(|(_, r)| r.attempt == 0),
        "decided in the fast round, no classic attempt: {:?}",
        w.rounds
            .iter()
            .map(|(x, r)| (x, r.attempt))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_voter_that_held_down_through_its_vote_timeout_still_falls_back_to_the_classic_round() {
    let mut w = World::new(&["b1", "c1", "c2"]);
    for x in ["c1", "c2"] {
        w.opinion(x, Opinion::Up);
    }
    w.opinion("b1", Opinion::Down);
    w.run_until(at(2000));
    assert_eq!(
        w.outcomes(),
        vec![RoundOutcome::Contradicted],
        "the classic round follows the vote timeout"
    );
    // Its opinion leaves DOWN and comes back: it promised its own classic ballot, so it stays
    // out of the fast round and proposes classically again.
    w.now = at(3000);
    w.opinion("b1", Opinion::Up);
    w.opinion("b1", Opinion::Down);
    let started = w
        .queue
        .iter()
        .any(|(_, _, m)| matches!(m, VoteMsg::Prepare { .. }));
    let fast = w
        .queue
        .iter()
        .any(|(_, _, m)| matches!(m, VoteMsg::FastAccept { .. }));
    assert!(started && !fast, "a classic round, no fast acceptance");
}
