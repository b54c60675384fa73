use super::*;
use std::collections::BTreeSet;

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
pub(super) fn at(n_ms: u64) -> Time {
    Time::ZERO + ms(n_ms)
}
pub(super) fn n(s: &str) -> NodeId {
    NodeId::from(s)
}
pub(super) fn a() -> SiteId {
    SiteId("a".into())
}

pub(super) fn cfg() -> VoterConfig {
    VoterConfig {
        vote_timeout: ms(300),
        max_vote_rounds: 3,
        evidence_max_age: ms(600),
        revote_after: ms(3000),
        retry_after: ms(100),
        hold_down: ms(300_000),
        fast_round: true,
    }
}

/// A fixed opinion per site, as a Pinger would report it.
#[derive(Clone, Default)]
pub(super) struct Ops {
    reports: BTreeMap<SiteId, OpinionReport>,
}

impl Ops {
    pub(super) fn set(&mut self, op: Opinion, age_ms: u32) {
        let mut r = OpinionReport::unknown();
        r.opinion = op;
        r.evidence_age_ms = age_ms;
        self.reports.insert(a(), r);
    }
}

impl OpinionSource for Ops {
    fn report(&self, site: &SiteId, _now: Time) -> OpinionReport {
        self.reports
            .get(site)
            .cloned()
            .unwrap_or_else(OpinionReport::unknown)
    }
}

/// Voters judging site `a`, a FIFO network between them, and everything they emitted.
pub(super) struct World {
    pub(super) now: Time,
    pub(super) voters: BTreeMap<NodeId, Voter>,
    pub(super) ops: BTreeMap<NodeId, Ops>,
    pub(super) queue: VecDeque<(NodeId, NodeId, VoteMsg)>,
    pub(super) down: BTreeSet<NodeId>,
    pub(super) persisted: Vec<(NodeId, Durable)>,
    pub(super) committed: Vec<(NodeId, Verdict)>,
    pub(super) rounds: Vec<(NodeId, RoundRecord)>,
    pub(super) leads: Vec<(NodeId, Verdict)>,
}

impl World {
    pub(super) fn new(names: &[&str]) -> World {
        let electorate = Electorate::new(names.iter().map(|s| n(s)));
        let mut voters = BTreeMap::new();
        let mut ops = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let v = Voter::new(
                cfg(),
                n(name),
                vec![(a(), electorate.clone())],
                BTreeMap::new(),
                vec![],
                i as u64,
            );
            voters.insert(n(name), v);
            ops.insert(n(name), Ops::default());
        }
        World {
            now: Time::ZERO,
            voters,
            ops,
            queue: VecDeque::new(),
            down: BTreeSet::new(),
            persisted: vec![],
            committed: vec![],
            rounds: vec![],
            leads: vec![],
        }
    }

    /// The same voters with the fast round off: every slot goes through the classic round.
    pub(super) fn classic(mut self) -> World {
        for v in self.voters.values_mut() {
            v.set_config(VoterConfig {
                fast_round: false,
                ..cfg()
            });
        }
        self
    }

    /// Sets `who`'s opinion of a and tells its voter, as the driver does on a change.
    pub(super) fn opinion(&mut self, who: &str, op: Opinion) {
        self.ops.get_mut(&n(who)).unwrap().set(op, 10);
        let ops = self.ops[&n(who)].clone();
        self.voters
            .get_mut(&n(who))
            .unwrap()
            .on_opinion_changed(self.now, &a(), &ops);
        self.collect(&n(who));
    }

    pub(super) fn collect(&mut self, who: &NodeId) {
        let names: Vec<NodeId> = self.voters.keys().cloned().collect();
        while let Some(act) = self.voters.get_mut(who).unwrap().poll_action() {
            match act {
                VoterAction::Send { to, msg } => self.queue.push_back((who.clone(), to, msg)),
                VoterAction::Broadcast { msg } => {
                    for to in names.iter().filter(|x| *x != who) {
                        self.queue.push_back((who.clone(), to.clone(), msg.clone()));
                    }
                }
                VoterAction::Persist { durable, .. } => self.persisted.push((who.clone(), durable)),
                VoterAction::Committed { verdict, .. } => {
                    self.committed.push((who.clone(), verdict))
                }
                VoterAction::RoundEnded(r) => self.rounds.push((who.clone(), r)),
                VoterAction::Lead { verdict } => self.leads.push((who.clone(), verdict)),
                VoterAction::RoundStarted { .. } | VoterAction::Refused { .. } => {}
            }
        }
    }

    pub(super) fn deliver_one(&mut self) -> bool {
        let Some((from, to, msg)) = self.queue.pop_front() else {
            return false;
        };
        if self.down.contains(&from) || self.down.contains(&to) {
            return true;
        }
        let ops = self.ops[&to].clone();
        self.voters
            .get_mut(&to)
            .unwrap()
            .handle_message(self.now, &from, msg, &ops);
        self.collect(&to);
        true
    }

    pub(super) fn deliver_all(&mut self) {
        while self.deliver_one() {}
    }

    /// Advances time to `until`, firing timers and delivering messages instantly.
    pub(super) fn run_until(&mut self, until: Time) {
        loop {
            self.deliver_all();
            let next = self
                .voters
                .iter()
                .filter(|(k, _)| !self.down.contains(*k))
                .filter_map(|(_, v)| v.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let names: Vec<NodeId> = self.voters.keys().cloned().collect();
                    for name in names {
                        if self.down.contains(&name) {
                            continue;
                        }
                        if self.voters[&name]
                            .poll_timeout()
                            .is_some_and(|t| t <= self.now)
                        {
                            let ops = self.ops[&name].clone();
                            self.voters
                                .get_mut(&name)
                                .unwrap()
                                .handle_timeout(self.now, &ops);
                            self.collect(&name);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = until;
    }

    pub(super) fn verdict_of(&self, who: &str) -> Option<Verdict> {
        self.voters[&n(who)].verdict(&a()).cloned()
    }

    pub(super) fn outcomes(&self) -> Vec<RoundOutcome> {
        self.rounds.iter().map(|(_, r)| r.outcome).collect()
    }
}

pub(super) const FOUR: [&str; 4] = ["b1", "b2", "c1", "c2"];

#[test]
fn a_down_opinion_starts_a_round_with_exact_actions() {
    let mut w = World::new(&FOUR).classic();
    w.ops.get_mut(&n("b1")).unwrap().set(Opinion::Down, 10);
    let ops = w.ops[&n("b1")].clone();
    let v = w.voters.get_mut(&n("b1")).unwrap();
    v.on_opinion_changed(at(0), &a(), &ops);
    let ballot = Ballot {
        epoch: 1,
        proposer: n("b1"),
    };
    let mut acts: Vec<VoterAction> = std::iter::from_fn(|| v.poll_action()).collect();
    let prepare = |to: &str| VoterAction::Send {
        to: n(to),
        msg: VoteMsg::Prepare {
            site: a(),
            slot: 0,
            ballot: ballot.clone(),
            round: 1,
            wait_ms: 200,
            last: None,
        },
    };
    assert_eq!(
        std::mem::take(&mut acts),
        vec![
            VoterAction::Persist {
                site: a(),
                durable: Durable {
                    promised: ballot.clone(),
                    accepted: None
                }
            },
            VoterAction::RoundStarted {
                site: a(),
                slot: 0,
                target: Outcome::Down,
                epoch: 1,
                attempt: 1
            },
            prepare("b2"),
            prepare("c1"),
            prepare("c2"),
        ]
    );
}

#[test]
fn a_majority_of_down_opinions_commits_one_verdict_that_every_voter_learns() {
    let mut w = World::new(&FOUR).classic();
    for v in ["b2", "c1", "c2"] {
        w.opinion(v, Opinion::Down);
        w.run_until(w.now);
    }
    // Only b2 proposed; the others deferred to its round while it ran.
    w.run_until(at(1000));
    let expected = Verdict {
        site: a(),
        slot: 0,
        value: Value {
            outcome: Outcome::Down,
            epoch: 1,
            leader: n("b2"),
        },
    };
    for v in FOUR {
        assert_eq!(w.verdict_of(v), Some(expected.clone()), "{v}");
    }
    assert_eq!(
        w.committed.len(),
        4,
        "each voter learns the verdict exactly once"
    );
}

#[test]
fn a_voter_that_contradicts_is_counted_and_two_contradictions_of_four_end_the_round_as_a_false_positive(
) {
    let mut w = World::new(&FOUR);
    w.opinion("c1", Opinion::Up);
    w.opinion("c2", Opinion::Up);
    w.opinion("b2", Opinion::Down);
    w.opinion("b1", Opinion::Down);
    w.run_until(at(2000));
    assert_eq!(w.verdict_of("b1"), None);
    let fp = w
        .rounds
        .iter()
        .filter(|(_, r)| r.outcome == RoundOutcome::Contradicted)
        .count();
    assert!(fp >= 1, "{:?}", w.outcomes());
    assert!(w
        .outcomes()
        .iter()
        .all(|o| *o == RoundOutcome::Contradicted || *o == RoundOutcome::Conflict));
    let labels: Vec<_> = w
        .rounds
        .iter()
        .map(|(_, r)| r.outcome.label(r.target))
        .collect();
    assert!(labels.contains(&"false_positive"));
}

#[test]
fn a_false_positive_round_is_not_repeated_before_revote_after() {
    let mut w = World::new(&["b1", "c1", "c2"]).classic();
    w.opinion("c1", Opinion::Up);
    w.opinion("c2", Opinion::Up);
    w.opinion("b1", Opinion::Down);
    w.run_until(at(2999));
    assert_eq!(w.rounds.len(), 1);
    w.run_until(at(3001));
    assert_eq!(w.rounds.len(), 2, "asks again once revote_after has passed");
}

#[test]
fn one_dead_voter_of_four_does_not_stop_the_verdict() {
    let mut w = World::new(&FOUR);
    w.down.insert(n("b2"));
    for v in ["b1", "c1", "c2"] {
        w.opinion(v, Opinion::Down);
    }
    w.run_until(at(2000));
    for v in ["b1", "c1", "c2"] {
        assert_eq!(
            w.verdict_of(v).map(|v| v.outcome()),
            Some(Outcome::Down),
            "{v}"
        );
    }
}

#[test]
fn two_down_of_four_with_two_silent_is_undecided_and_retried_up_to_max_vote_rounds() {
    let mut w = World::new(&FOUR);
    w.down.insert(n("c1"));
    w.down.insert(n("c2"));
    w.opinion("b1", Opinion::Down);
    w.opinion("b2", Opinion::Down);
    w.run_until(at(2500));
    assert_eq!(w.verdict_of("b1"), None);
    for v in ["b1", "b2"] {
        let undecided = w
            .rounds
            .iter()
            .filter(|(who, r)| who == &n(v) && r.outcome == RoundOutcome::Undecided)
            .count();
        assert!(
            undecided <= 3,
            "{v}: max_vote_rounds undecided rounds, then a pause: {:?}",
            w.outcomes()
        );
    }
    let undecided = w
        .rounds
        .iter()
        .filter(|(_, r)| r.outcome == RoundOutcome::Undecided)
        .count();
    assert!(undecided >= 3, "{:?}", w.outcomes());
    // After the pause (revote_after), rounds start again.
    let before = w.rounds.len();
    w.run_until(at(6000));
    assert!(w.rounds.len() > before);
}

#[test]
fn two_proposers_starting_at_the_same_moment_commit_exactly_one_epoch() {
    for order in 0..4u64 {
        let mut w = World::new(&FOUR);
        for v in FOUR {
            w.ops.get_mut(&n(v)).unwrap().set(Opinion::Down, 10);
        }
        // b1 and c1 start before either hears from the other.
        for v in ["b1", "c1"] {
            let ops = w.ops[&n(v)].clone();
            w.voters
                .get_mut(&n(v))
                .unwrap()
                .on_opinion_changed(w.now, &a(), &ops);
            w.collect(&n(v));
        }
        // Interleave deliveries differently per run.
        let mut q: Vec<_> = w.queue.drain(..).collect();
        let len = q.len();
        q.rotate_left(order as usize % len);
        w.queue.extend(q);
        w.run_until(at(5000));
        let mut verdicts: Vec<_> = FOUR.iter().map(|v| w.verdict_of(v)).collect();
        verdicts.dedup();
        assert_eq!(verdicts.len(), 1, "order {order}: {verdicts:?}");
        let v = verdicts.into_iter().next().unwrap().expect("a verdict");
        assert_eq!(v.slot, 0);
        let epochs: BTreeSet<u64> = w.committed.iter().map(|(_, v)| v.epoch()).collect();
        assert_eq!(epochs.len(), 1, "order {order}: one committed epoch");
    }
}

#[test]
fn a_prepare_below_the_promised_ballot_is_refused_with_the_promise() {
    let mut w = World::new(&["b1", "c1", "c2"]);
    let mut durable = BTreeMap::new();
    durable.insert(
        a(),
        Durable {
            promised: Ballot {
                epoch: 5,
                proposer: n("c2"),
            },
            accepted: None,
        },
    );
    let electorate = Electorate::new(["b1", "c1", "c2"].map(n));
    let mut v = Voter::new(cfg(), n("c1"), vec![(a(), electorate)], durable, vec![], 1);
    let low = Ballot {
        epoch: 3,
        proposer: n("b1"),
    };
    let msg = VoteMsg::Prepare {
        site: a(),
        slot: 0,
        ballot: low.clone(),
        round: 9,
        wait_ms: 0,
        last: None,
    };
    v.handle_message(at(0), &n("b1"), msg, &w.ops[&n("c1")]);
    let acts: Vec<_> = std::iter::from_fn(|| v.poll_action()).collect();
    assert_eq!(
        acts,
        vec![VoterAction::Send {
            to: n("b1"),
            msg: VoteMsg::Promise {
                site: a(),
                slot: 0,
                round: 9,
                ballot: low,
                ok: false,
                promised: Ballot {
                    epoch: 5,
                    proposer: n("c2")
                },
                accepted: None,
                opinion: OpinionReport::unknown(),
                decided: None,
            },
        }]
    );
    w.deliver_all();
}

#[test]
fn an_accept_below_the_promised_ballot_is_refused_and_nothing_is_persisted() {
    let electorate = Electorate::new(["b1", "c1", "c2"].map(n));
    let mut durable = BTreeMap::new();
    durable.insert(
        a(),
        Durable {
            promised: Ballot {
                epoch: 5,
                proposer: n("c2"),
            },
            accepted: None,
        },
    );
    let mut v = Voter::new(cfg(), n("c1"), vec![(a(), electorate)], durable, vec![], 1);
    let low = Ballot {
        epoch: 4,
        proposer: n("b1"),
    };
    let value = Value {
        outcome: Outcome::Down,
        epoch: 4,
        leader: n("b1"),
    };
    v.handle_message(
        at(0),
        &n("b1"),
        VoteMsg::Accept {
            site: a(),
            slot: 0,
            ballot: low,
            value,
        },
        &Ops::default(),
    );
    let acts: Vec<_> = std::iter::from_fn(|| v.poll_action()).collect();
    assert_eq!(acts.len(), 1);
    assert!(matches!(
        &acts[0],
        VoterAction::Send {
            msg: VoteMsg::AcceptReply { ok: false, .. },
            ..
        }
    ));
    assert_eq!(v.durable(&a()).unwrap().promised.epoch, 5);
}

#[test]
fn a_restarted_voter_proposes_above_its_durable_promise() {
    let electorate = Electorate::new(["b1", "c1", "c2"].map(n));
    let mut durable = BTreeMap::new();
    durable.insert(
        a(),
        Durable {
            promised: Ballot {
                epoch: 7,
                proposer: n("c2"),
            },
            accepted: None,
        },
    );
    let mut v = Voter::new(cfg(), n("b1"), vec![(a(), electorate)], durable, vec![], 1);
    let mut ops = Ops::default();
    ops.set(Opinion::Down, 10);
    v.on_opinion_changed(at(0), &a(), &ops);
    let started = std::iter::from_fn(|| v.poll_action())
        .find_map(|x| match x {
            VoterAction::RoundStarted { epoch, .. } => Some(epoch),
            _ => None,
        })
        .unwrap();
    // Verdict epochs are odd (`EpochKind`): the next one above the promise of 7.
    assert_eq!(started, 9);
}

#[test]
fn a_suspecting_voter_holds_its_answer_until_its_own_opinion_settles() {
    let mut w = World::new(&["b1", "c1", "c2"]).classic();
    w.opinion("c1", Opinion::Suspect);
    w.opinion("c2", Opinion::Suspect);
    w.opinion("b1", Opinion::Down);
    w.deliver_all();
    assert!(w.queue.is_empty(), "the Promises are held");
    w.now = at(50);
    w.opinion("c1", Opinion::Down);
    w.deliver_all();
    assert_eq!(
        w.verdict_of("b1").map(|v| v.epoch()),
        Some(1),
        "b1 + c1 are a majority of three"
    );
    assert_eq!(w.outcomes(), vec![RoundOutcome::Majority]);
}

#[test]
fn stale_evidence_does_not_count_as_a_down_vote() {
    let mut w = World::new(&["b1", "c1", "c2"]).classic();
    w.ops.get_mut(&n("c1")).unwrap().set(Opinion::Down, 5000);
    w.ops.get_mut(&n("c2")).unwrap().set(Opinion::Down, 5000);
    w.opinion("b1", Opinion::Down);
    w.run_until(at(400));
    assert_eq!(w.verdict_of("b1"), None);
    assert_eq!(w.rounds[0].1.outcome, RoundOutcome::Undecided);
}

#[test]
fn after_a_down_verdict_a_majority_of_up_opinions_commits_recovery_at_a_higher_epoch() {
    let mut w = World::new(&["b1", "c1", "c2"]);
    for v in ["b1", "c1", "c2"] {
        w.opinion(v, Opinion::Down);
    }
    w.run_until(at(1000));
    let down = w.verdict_of("c2").unwrap();
    for v in ["c2", "b1", "c1"] {
        w.opinion(v, Opinion::Up);
    }
    w.run_until(at(2000));
    let up = w.verdict_of("b1").unwrap();
    assert_eq!((up.slot, up.outcome()), (1, Outcome::Up));
    assert!(up.epoch() > down.epoch());
    assert_eq!(w.verdict_of("c1"), Some(up));
}

#[test]
fn a_late_proposer_learns_the_decided_verdict_instead_of_committing_another() {
    let mut w = World::new(&["b1", "c1", "c2"]);
    for v in ["b1", "c1"] {
        w.opinion(v, Opinion::Down);
    }
    w.run_until(at(1000));
    let first = w.verdict_of("b1").unwrap();
    // c2 missed every message (it was down), comes back DOWN and proposes.
    w.down.insert(n("c2"));
    w.down.remove(&n("c2"));
    let electorate = Electorate::new(["b1", "c1", "c2"].map(n));
    w.voters.insert(
        n("c2"),
        Voter::new(
            cfg(),
            n("c2"),
            vec![(a(), electorate)],
            BTreeMap::new(),
            vec![],
            9,
        ),
    );
    w.opinion("c2", Opinion::Down);
    w.run_until(at(3000));
    assert_eq!(w.verdict_of("c2"), Some(first));
    let slots: BTreeSet<u64> = w.committed.iter().map(|(_, v)| v.slot).collect();
    assert_eq!(slots, BTreeSet::from([0]));
}

#[test]
fn hold_down_runs_from_the_down_verdict() {
    let mut w = World::new(&["b1", "c1", "c2"]);
    for v in ["b1", "c1", "c2"] {
        w.opinion(v, Opinion::Down);
    }
    w.run_until(at(10));
    assert_eq!(w.voters[&n("c1")].hold_down_until(&a()), Some(at(300_000)));
}
