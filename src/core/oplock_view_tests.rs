//! What the members know beyond the lock, told in their Promises: the proposer's own value
//! goes above every epoch they know, an alarm reaction they know to be moot is dropped, and a
//! value that may have been chosen stays exactly as it was accepted.

use super::*;
use crate::core::types::EpochKind;

fn stamp(source: &str, at: i64, raised: bool) -> AlarmStamp {
    AlarmStamp {
        source: source.into(),
        set_at_unix_ms: at,
        raised,
    }
}

impl Net {
    fn tell(&mut self, who: &str, view: SiteView) {
        self.nodes.get_mut(&n(who)).unwrap().set_view(&site(), view);
    }

    fn propose_value(&mut self, who: &str, own: LockValue) {
        let now = self.now;
        let lock = self.nodes.get_mut(&n(who)).unwrap();
        lock.propose(now, site(), electorate(), own, 1).unwrap();
        self.drain(&n(who));
    }

    fn settle(&mut self) {
        for _ in 0..100 {
            self.deliver_all();
            if !self.tick() {
                break;
            }
        }
        self.deliver_all();
    }

    fn end_of(&self, who: &str) -> &ProposalEnd {
        let (_, _, end) = self.ended.iter().find(|(w, _, _)| *w == n(who)).unwrap();
        end
    }
}

#[test]
fn epochs_of_verdicts_are_odd_and_of_lock_runs_even() {
    assert_eq!(EpochKind::Verdict.above(0), Some(1));
    assert_eq!(EpochKind::Verdict.above(1), Some(3));
    assert_eq!(EpochKind::Verdict.above(2), Some(3));
    assert_eq!(EpochKind::LockRun.above(0), Some(2));
    assert_eq!(EpochKind::LockRun.above(2), Some(4));
    assert_eq!(EpochKind::LockRun.above(3), Some(4));
    // MAX_EPOCH is odd: no run epoch is left above MAX_EPOCH - 1, no verdict above it.
    assert_eq!(EpochKind::Verdict.above(MAX_EPOCH - 2), Some(MAX_EPOCH));
    assert_eq!(EpochKind::Verdict.above(MAX_EPOCH), None);
    assert_eq!(EpochKind::LockRun.above(MAX_EPOCH - 2), Some(MAX_EPOCH - 1));
    assert_eq!(EpochKind::LockRun.above(MAX_EPOCH - 1), None);
    assert_eq!(EpochKind::of(7), EpochKind::Verdict);
    assert_eq!(EpochKind::of(8), EpochKind::LockRun);
}

#[test]
fn the_proposers_own_run_goes_above_every_epoch_the_promisers_know() {
    let mut net = Net::new(3);
    // c1 accepted a DOWN verdict at epoch 9 that b1, just restarted, has not heard of.
    let view = SiteView {
        epoch: 9,
        down: None,
        alarms: Vec::new(),
    };
    net.tell("c1", view);
    net.propose("b1", 2, RunTrigger::Manual).unwrap();
    net.settle();
    let d = net.decided_at("b1").expect("decided").clone();
    assert_eq!(d.value.run, 10, "the next run epoch above 9");
    assert!(matches!(net.end_of("b1"), ProposalEnd::Won(w) if *w == d));
}

#[test]
fn an_alarm_reaction_is_dropped_when_a_promiser_knows_a_newer_down_verdict() {
    let mut net = Net::new(4);
    let view = SiteView {
        epoch: 7,
        down: Some(7),
        alarms: Vec::new(),
    };
    for m in ["b2", "c1", "c2"] {
        net.tell(m, view.clone());
    }
    net.propose("b1", 2, RunTrigger::Prestage).unwrap();
    net.settle();
    assert_eq!(net.end_of("b1"), &ProposalEnd::Outrun { verdict: 7 });
    assert_eq!(net.decided_at("b1"), None, "nothing was asked to accept");
    // An operator's run is not an alarm's reaction: it goes ahead, above the verdict.
    net.propose("b1", 2, RunTrigger::Manual).unwrap();
    net.settle();
    assert_eq!(net.decided_at("b1").map(|d| d.value.run), Some(8));
}

#[test]
fn an_unstage_is_dropped_while_a_promiser_knows_an_alarm_still_raised() {
    let mut net = Net::new(5);
    // b1 knows only that ups-a cleared; c1 and c2 also hold fire-a raised.
    let own = LockValue {
        alarms: vec![stamp("ups-a", 2_000, false)],
        ..value(2, "b1", RunTrigger::Unstage)
    };
    let view = SiteView {
        epoch: 0,
        down: None,
        alarms: vec![stamp("fire-a", 1_500, true), stamp("ups-a", 1_000, true)],
    };
    net.tell("c1", view.clone());
    net.tell("c2", view);
    net.down.insert(n("b2"));
    net.propose_value("b1", own.clone());
    net.settle();
    assert_eq!(net.end_of("b1"), &ProposalEnd::Outdated);
    assert_eq!(net.decided_at("c1"), None);

    // Once fire-a cleared too, the unstage goes ahead, on the newest calls of both.
    let mut net = Net::new(5);
    let view = SiteView {
        epoch: 0,
        down: None,
        alarms: vec![stamp("fire-a", 1_800, false), stamp("ups-a", 1_000, true)],
    };
    net.tell("c1", view.clone());
    net.tell("c2", view);
    net.down.insert(n("b2"));
    net.propose_value("b1", own);
    net.settle();
    let d = net.decided_at("c1").expect("decided").clone();
    assert_eq!(d.value.trigger, RunTrigger::Unstage);
    assert_eq!(
        d.value.alarms,
        vec![stamp("fire-a", 1_800, false), stamp("ups-a", 2_000, false)],
        "the basis is the newest call of each source any promiser knew"
    );
}

#[test]
fn a_value_that_may_have_been_chosen_keeps_its_run_whatever_the_promisers_know() {
    let mut net = Net::new(2);
    let prestage = LockValue {
        alarms: vec![stamp("fire-a", 1_000, true)],
        ..value(4, "b1", RunTrigger::Prestage)
    };
    net.propose_value("b1", prestage.clone());
    net.deliver_all_but_replies_to("b1");
    for m in ["b2", "c1", "c2"] {
        let accepted = net.nodes[&n(m)].state(&site()).unwrap().accepted.clone();
        assert_eq!(
            accepted.map(|a| a.value.run),
            Some(4),
            "{m}: {:?}",
            net.ended
        );
    }
    net.down.insert(n("b1"));
    net.queue.clear();
    // Since then, a DOWN verdict at epoch 9 reached the others.
    let view = SiteView {
        epoch: 9,
        down: Some(9),
        alarms: Vec::new(),
    };
    for m in ["b2", "c1", "c2"] {
        net.tell(m, view.clone());
    }
    net.propose("c2", 10, RunTrigger::Manual).unwrap();
    net.settle();
    assert_eq!(
        net.end_of("c2"),
        &ProposalEnd::Lost(Decided {
            gen: 1,
            value: prestage
        }),
        "b1's value may have been chosen: it is completed as it was accepted"
    );
}
