//! The operator lock driven through an in-memory network of four members, with seeded message
//! orders, losses and crashes.

use super::*;
use crate::core::replica::RunTrigger;

const MEMBERS: [&str; 4] = ["b1", "b2", "c1", "c2"];

fn n(id: &str) -> NodeId {
    NodeId::from(id)
}

fn site() -> SiteId {
    SiteId::from("a")
}

fn electorate() -> Electorate {
    Electorate::new(MEMBERS.iter().map(|m| n(m)))
}

fn config() -> LockConfig {
    LockConfig {
        round_timeout: Duration::from_millis(100),
        backoff: Duration::from_millis(100),
        bound: Duration::from_secs(3),
    }
}

fn value(run: u64, leader: &str, trigger: RunTrigger) -> LockValue {
    LockValue {
        run,
        leader: n(leader),
        trigger,
        forced: false,
        alarms: Vec::new(),
    }
}

fn ballot(epoch: u64, proposer: &str) -> Ballot {
    Ballot {
        epoch,
        proposer: n(proposer),
    }
}

fn ms(t: u64) -> Time {
    Time::from_micros(t * 1000)
}

/// Members exchanging lock messages; what each persisted, learned and how proposals ended.
struct Net {
    nodes: BTreeMap<NodeId, OpLock>,
    queue: Vec<(NodeId, NodeId, LockMsg)>,
    persisted: BTreeMap<NodeId, LockState>,
    learned: BTreeMap<NodeId, Vec<Decided>>,
    ended: Vec<(NodeId, u64, ProposalEnd)>,
    refused: Vec<(NodeId, Refusal)>,
    /// Every action in order, per node.
    log: BTreeMap<NodeId, Vec<LockAction>>,
    down: BTreeSet<NodeId>,
    now: Time,
}

impl Net {
    fn new(seed: u64) -> Net {
        let nodes = MEMBERS
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let lock = OpLock::new(n(m), config(), BTreeMap::new(), seed ^ i as u64);
                (n(m), lock)
            })
            .collect();
        Net {
            nodes,
            queue: Vec::new(),
            persisted: BTreeMap::new(),
            learned: BTreeMap::new(),
            ended: Vec::new(),
            refused: Vec::new(),
            log: BTreeMap::new(),
            down: BTreeSet::new(),
            now: Time::ZERO,
        }
    }

    fn drain(&mut self, who: &NodeId) {
        while let Some(a) = self.nodes.get_mut(who).unwrap().poll_action() {
            self.log.entry(who.clone()).or_default().push(a.clone());
            match a {
                LockAction::Persist { state, .. } => {
                    self.persisted.insert(who.clone(), state);
                }
                LockAction::Send { to, msg } => self.queue.push((who.clone(), to, msg)),
                LockAction::Learned { decided, .. } => {
                    self.learned.entry(who.clone()).or_default().push(decided)
                }
                LockAction::Ended { id, end, .. } => self.ended.push((who.clone(), id, end)),
                LockAction::Refused { from, why } => self.refused.push((from, why)),
            }
        }
    }

    fn propose(&mut self, who: &str, run: u64, trigger: RunTrigger) -> Result<u64, LockError> {
        let now = self.now;
        let r = self.nodes.get_mut(&n(who)).unwrap().propose(
            now,
            site(),
            electorate(),
            value(run, who, trigger),
            run,
        );
        self.drain(&n(who));
        r
    }

    /// Delivers one queued message (chosen by `pick`); false when none is left.
    fn deliver_one(&mut self, pick: usize) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let (from, to, msg) = self.queue.remove(pick % self.queue.len());
        if self.down.contains(&to) || self.down.contains(&from) {
            return true;
        }
        let e = electorate();
        let now = self.now;
        self.nodes
            .get_mut(&to)
            .unwrap()
            .handle(now, &from, msg, Some(&e));
        self.drain(&to);
        true
    }

    fn deliver_all(&mut self) {
        while self.deliver_one(0) {}
    }

    /// Advances time to the next timeout of any live node and fires it.
    fn tick(&mut self) -> bool {
        let next = self
            .nodes
            .iter()
            .filter(|(id, _)| !self.down.contains(*id))
            .filter_map(|(_, l)| l.poll_timeout())
            .min();
        let Some(t) = next else {
            return false;
        };
        self.now = self.now.max(t);
        let ids: Vec<NodeId> = self.nodes.keys().cloned().collect();
        for id in ids {
            if !self.down.contains(&id) {
                let now = self.now;
                self.nodes.get_mut(&id).unwrap().tick(now);
                self.drain(&id);
            }
        }
        true
    }

    fn decided_at(&self, who: &str) -> Option<&Decided> {
        self.nodes[&n(who)].decided(&site())
    }
}

#[test]
fn two_proposers_for_one_generation_decide_one_value_whatever_the_message_order() {
    let mut decided = 0;
    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = Net::new(seed);
        // Both knew the same epochs: they pick the same run epoch, as two nodes did before.
        net.propose("b1", 8, RunTrigger::Manual).unwrap();
        net.propose("c1", 8, RunTrigger::Manual).unwrap();
        let mut steps = 0;
        while net.ended.len() < 2 {
            steps += 1;
            assert!(steps < 10_000, "seed {seed}: no end");
            if !net.queue.is_empty() && rng.random_bool(0.9) {
                let pick = rng.random_range(0..net.queue.len());
                if rng.random_bool(0.05) {
                    net.queue.remove(pick); // lost
                } else {
                    net.deliver_one(pick);
                }
            } else if !net.tick() {
                break;
            }
        }
        net.deliver_all();
        let ends: Vec<&ProposalEnd> = net.ended.iter().map(|(_, _, e)| e).collect();
        let won: Vec<&Decided> = ends
            .iter()
            .filter_map(|e| match e {
                ProposalEnd::Won(d) => Some(d),
                _ => None,
            })
            .collect();
        let lost: Vec<&Decided> = ends
            .iter()
            .filter_map(|e| match e {
                ProposalEnd::Lost(d) => Some(d),
                _ => None,
            })
            .collect();
        assert!(won.len() <= 1, "seed {seed}: {ends:?}");
        decided += usize::from(won.len() == 1 && lost.len() == 1);
        if let Some(w) = won.first() {
            assert_eq!(w.gen, 1, "seed {seed}");
            for l in &lost {
                assert_eq!(*l, *w, "seed {seed}: the loser names the winner");
            }
        }
        // Whatever each member learned for generation 1 is one value.
        let values: BTreeSet<String> = net
            .learned
            .values()
            .flatten()
            .filter(|d| d.gen == 1)
            .map(|d| format!("{:?}", d.value))
            .collect();
        assert!(values.len() <= 1, "seed {seed}: {values:?}");
    }
    // Losses delay but rarely prevent a decision within the bound.
    assert!(decided >= 270, "only {decided} of 300 worlds decided");
}

#[test]
fn two_proposers_on_a_calm_network_end_with_one_winner_and_one_loser() {
    let mut net = Net::new(7);
    net.propose("b1", 8, RunTrigger::Manual).unwrap();
    net.propose("c1", 8, RunTrigger::Manual).unwrap();
    for _ in 0..200 {
        net.deliver_all();
        if net.ended.len() == 2 || !net.tick() {
            break;
        }
    }
    net.deliver_all();
    let mut won = None;
    let mut lost = None;
    for (who, _, e) in &net.ended {
        match e {
            ProposalEnd::Won(d) => won = Some((who.clone(), d.clone())),
            ProposalEnd::Lost(d) => lost = Some((who.clone(), d.clone())),
            other => panic!("{who}: {other:?}"),
        }
    }
    let (winner, w) = won.expect("a winner");
    let (loser, l) = lost.expect("a loser");
    assert_ne!(winner, loser);
    assert_eq!(w, l);
    assert_eq!(w.value.leader, winner);
    for m in MEMBERS {
        assert_eq!(net.decided_at(m), Some(&w), "{m} learned the commit");
    }
}

#[test]
fn a_later_proposer_learns_the_decided_value() {
    let mut net = Net::new(1);
    // c2 hears nothing of b1's generation.
    net.down.insert(n("c2"));
    net.propose("b1", 5, RunTrigger::Manual).unwrap();
    net.deliver_all();
    let first = net
        .decided_at("b1")
        .cloned()
        .expect("decided by three of four");
    assert_eq!(first.value, value(5, "b1", RunTrigger::Manual));
    net.down.clear();
    assert_eq!(net.decided_at("c2"), None);

    assert_eq!(net.propose("c2", 5, RunTrigger::Failback), Ok(1));
    net.deliver_all();
    assert_eq!(net.ended.len(), 2, "{:?}", net.ended);
    assert_eq!(
        net.ended[1],
        (n("c2"), 5, ProposalEnd::Lost(first.clone())),
        "c2 is told generation 1's run"
    );
    assert_eq!(net.decided_at("c2"), Some(&first));
    // Now that it knows, its next call proposes generation 2 and wins.
    assert_eq!(net.propose("c2", 6, RunTrigger::Failback), Ok(2));
    net.deliver_all();
    let (who, _, end) = net.ended.last().unwrap().clone();
    assert_eq!(who, n("c2"));
    assert!(
        matches!(&end, ProposalEnd::Won(d) if d.gen == 2 && d.value == value(6, "c2", RunTrigger::Failback)),
        "{end:?}"
    );
}

#[test]
fn an_accepted_value_forces_the_next_proposer_to_propose_it() {
    let mut net = Net::new(2);
    net.propose("b1", 5, RunTrigger::Manual).unwrap();
    // Phase 1 completes; b1's Accepts reach b2 and c1, then b1 crashes before any reply.
    net.deliver_all_but_replies_to("b1");
    assert!(net.decided_at("b2").is_none());
    for m in ["b2", "c1", "c2"] {
        let accepted = net.nodes[&n(m)].state(&site()).unwrap().accepted.clone();
        assert_eq!(
            accepted.map(|a| a.value),
            Some(value(5, "b1", RunTrigger::Manual)),
            "{m}"
        );
    }
    net.down.insert(n("b1"));
    net.queue.clear();

    net.propose("c2", 9, RunTrigger::Manual).unwrap();
    for _ in 0..50 {
        net.deliver_all();
        if net.ended.iter().any(|(w, _, _)| *w == n("c2")) || !net.tick() {
            break;
        }
    }
    let (_, _, end) = net.ended.iter().find(|(w, _, _)| *w == n("c2")).unwrap();
    assert_eq!(
        end,
        &ProposalEnd::Lost(Decided {
            gen: 1,
            value: value(5, "b1", RunTrigger::Manual)
        }),
        "b1's value may have been chosen: c2 completes it instead of its own"
    );
}

impl Net {
    /// Delivers everything except messages to `who`, which are dropped, after `who`'s own
    /// phase 1 completed (its promises reach it, its accepts go out).
    fn deliver_all_but_replies_to(&mut self, who: &str) {
        // Prepares out, promises back: phase 2 starts.
        self.deliver_all_n(MEMBERS.len() * 2 - 2);
        // The Accepts reach the others; their replies are lost.
        while let Some(i) = self.queue.iter().position(|(_, to, _)| *to != n(who)) {
            self.deliver_one(i);
        }
        self.queue.retain(|(_, to, _)| *to != n(who));
    }

    fn deliver_all_n(&mut self, k: usize) {
        for _ in 0..k {
            self.deliver_one(0);
        }
    }
}

#[test]
fn promises_and_acceptances_are_durable_before_the_answers() {
    let mut lock = OpLock::new(n("b2"), config(), BTreeMap::new(), 0);
    let e = electorate();
    lock.handle(
        ms(1),
        &n("b1"),
        LockMsg::Prepare {
            site: site(),
            gen: 1,
            ballot: ballot(4, "b1"),
            last: None,
        },
        Some(&e),
    );
    lock.handle(
        ms(2),
        &n("b1"),
        LockMsg::Accept {
            site: site(),
            gen: 1,
            ballot: ballot(4, "b1"),
            value: value(4, "b1", RunTrigger::Manual),
            last: None,
        },
        Some(&e),
    );
    let actions: Vec<LockAction> = std::iter::from_fn(|| lock.poll_action()).collect();
    assert_eq!(actions.len(), 4, "{actions:?}");
    assert!(
        matches!(&actions[0], LockAction::Persist { state, .. } if state.promised == ballot(4, "b1") && state.accepted.is_none())
    );
    assert!(matches!(
        &actions[1],
        LockAction::Send {
            msg: LockMsg::Promise { ok: true, .. },
            ..
        }
    ));
    assert!(
        matches!(&actions[2], LockAction::Persist { state, .. } if state.accepted.as_ref().is_some_and(|a| a.value.run == 4))
    );
    assert!(matches!(
        &actions[3],
        LockAction::Send {
            msg: LockMsg::AcceptReply { ok: true, .. },
            ..
        }
    ));
}

#[test]
fn a_lower_ballot_is_refused_and_changes_nothing() {
    let stored = LockState {
        promised: ballot(9, "c1"),
        accepted: None,
        decided: None,
    };
    let mut lock = OpLock::new(
        n("b2"),
        config(),
        BTreeMap::from([(site(), stored.clone())]),
        0,
    );
    let e = electorate();
    for msg in [
        LockMsg::Prepare {
            site: site(),
            gen: 1,
            ballot: ballot(8, "b1"),
            last: None,
        },
        LockMsg::Accept {
            site: site(),
            gen: 1,
            ballot: ballot(9, "b1"),
            value: value(9, "b1", RunTrigger::Manual),
            last: None,
        },
    ] {
        lock.handle(ms(1), &n("b1"), msg, Some(&e));
    }
    let actions: Vec<LockAction> = std::iter::from_fn(|| lock.poll_action()).collect();
    assert_eq!(
        actions.len(),
        2,
        "two refusals, nothing persisted: {actions:?}"
    );
    for a in &actions {
        match a {
            LockAction::Send {
                msg: LockMsg::Promise { ok, promised, .. },
                ..
            }
            | LockAction::Send {
                msg: LockMsg::AcceptReply { ok, promised, .. },
                ..
            } => {
                assert!(!ok);
                assert_eq!(promised, &ballot(9, "c1"), "the refusal names the promise");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(lock.state(&site()), Some(&stored));
}

#[test]
fn messages_from_non_members_or_out_of_bounds_are_refused_unanswered() {
    let mut lock = OpLock::new(n("b2"), config(), BTreeMap::new(), 0);
    let e = electorate();
    let prepare = |gen, b: Ballot| LockMsg::Prepare {
        site: site(),
        gen,
        ballot: b,
        last: None,
    };
    let cases = [
        (
            n("a1"),
            prepare(1, ballot(4, "a1")),
            Refusal::NotInElectorate,
        ),
        (
            n("b1"),
            prepare(1, ballot(4, "c1")),
            Refusal::ImpersonatesAnotherNode,
        ),
        (
            n("b1"),
            prepare(1, ballot(MAX_EPOCH + 1, "b1")),
            Refusal::NumberOutOfBounds,
        ),
        (
            n("b1"),
            prepare(0, ballot(4, "b1")),
            Refusal::NumberOutOfBounds,
        ),
        (n("b1"), prepare(3, ballot(4, "b1")), Refusal::SlotTooFar),
        (
            n("b1"),
            LockMsg::Accept {
                site: site(),
                gen: 1,
                ballot: ballot(4, "b1"),
                value: value(4, "a1", RunTrigger::Manual),
                last: None,
            },
            Refusal::LeaderNotInElectorate,
        ),
        (
            n("a1"),
            LockMsg::Commit {
                site: site(),
                decided: Decided {
                    gen: 1,
                    value: value(4, "b1", RunTrigger::Manual),
                },
            },
            Refusal::NotInElectorate,
        ),
    ];
    for (from, msg, why) in cases {
        lock.handle(ms(1), &from, msg.clone(), Some(&e));
        let actions: Vec<LockAction> = std::iter::from_fn(|| lock.poll_action()).collect();
        assert_eq!(
            actions,
            vec![LockAction::Refused {
                from: from.clone(),
                why
            }],
            "{msg:?}"
        );
    }
    lock.handle(ms(1), &n("b1"), prepare(1, ballot(4, "b1")), None);
    assert_eq!(
        lock.poll_action(),
        Some(LockAction::Refused {
            from: n("b1"),
            why: Refusal::UnknownSite
        })
    );
    assert_eq!(lock.state(&site()), None, "nothing was promised");
}

#[test]
fn a_proposal_without_a_majority_ends_undecided_at_its_bound() {
    let mut net = Net::new(3);
    for m in ["b2", "c1", "c2"] {
        net.down.insert(n(m));
    }
    net.propose("b1", 5, RunTrigger::Manual).unwrap();
    while net.ended.is_empty() {
        net.deliver_all();
        assert!(net.tick(), "a timeout is always pending while proposing");
    }
    assert_eq!(
        net.ended,
        vec![(
            n("b1"),
            5,
            ProposalEnd::Undecided {
                bound: Duration::from_secs(3)
            }
        )]
    );
    assert!(net.now >= ms(3000) && net.now < ms(3200), "{:?}", net.now);
}

#[test]
fn a_second_proposal_for_a_site_waits_for_the_first() {
    let mut net = Net::new(4);
    net.propose("b1", 5, RunTrigger::Manual).unwrap();
    assert_eq!(
        net.propose("b1", 6, RunTrigger::Manual),
        Err(LockError::Busy(site()))
    );
    let mut outsider = OpLock::new(n("a1"), config(), BTreeMap::new(), 0);
    assert_eq!(
        outsider.propose(
            Time::ZERO,
            site(),
            electorate(),
            value(5, "a1", RunTrigger::Manual),
            1
        ),
        Err(LockError::NotInElectorate(site()))
    );
}

#[test]
fn a_restarted_member_proposes_after_the_generation_it_stored() {
    let mut net = Net::new(5);
    net.propose("b1", 5, RunTrigger::Manual).unwrap();
    net.deliver_all();
    let stored = net.persisted[&n("c1")].clone();
    assert_eq!(stored.decided.as_ref().map(|d| d.gen), Some(1));
    let mut again = OpLock::new(n("c1"), config(), BTreeMap::from([(site(), stored)]), 9);
    assert_eq!(again.known_epoch(&site()), 5);
    let gen = again
        .propose(
            Time::ZERO,
            site(),
            electorate(),
            value(6, "c1", RunTrigger::Failback),
            1,
        )
        .unwrap();
    assert_eq!(gen, 2);
}

#[test]
fn a_lock_message_stays_small() {
    let bare = LockMsg::Promise {
        site: site(),
        gen: 1,
        ballot: ballot(1, "b1"),
        ok: true,
        promised: ballot(1, "b1"),
        accepted: None,
        decided: None,
        view: SiteView::default(),
    };
    let bytes = crate::wire::encode_message(&crate::wire::Message::Lock(bare)).unwrap();
    assert!(bytes.len() < 64, "{} bytes", bytes.len());
    // The most an alarm basis and a view may hold: every source of a site, names at their
    // longest, in the accepted value, the decided one and the view.
    let alarms: Vec<AlarmStamp> = (0..crate::core::alarm::MAX_SOURCES_PER_SITE)
        .map(|i| AlarmStamp {
            source: format!(
                "{i:02}{}",
                "s".repeat(crate::core::alarm::MAX_SOURCE_LEN - 2)
            ),
            set_at_unix_ms: i64::MAX,
            raised: true,
        })
        .collect();
    let full = |v: LockValue| LockValue {
        alarms: alarms.clone(),
        ..v
    };
    let msg = crate::wire::Message::Lock(LockMsg::Promise {
        site: site(),
        gen: MAX_EPOCH,
        ballot: ballot(MAX_EPOCH, "some-voter-with-a-long-name"),
        ok: true,
        promised: ballot(MAX_EPOCH, "some-voter-with-a-long-name"),
        accepted: Some(LockAccepted {
            gen: MAX_EPOCH,
            ballot: ballot(MAX_EPOCH, "some-voter-with-a-long-name"),
            value: full(value(
                MAX_EPOCH,
                "some-voter-with-a-long-name",
                RunTrigger::Failback,
            )),
        }),
        decided: Some(Decided {
            gen: MAX_EPOCH,
            value: full(value(
                MAX_EPOCH,
                "some-voter-with-a-long-name",
                RunTrigger::Failback,
            )),
        }),
        view: SiteView {
            epoch: MAX_EPOCH,
            down: Some(MAX_EPOCH),
            alarms: alarms.clone(),
        },
    });
    let bytes = crate::wire::encode_message(&msg).expect("a lock message fits");
    assert!(bytes.len() < 8 * 1024, "{} bytes", bytes.len());
    assert_eq!(crate::wire::decode_message(&bytes).unwrap(), msg);
}

#[path = "oplock_view_tests.rs"]
mod view;
