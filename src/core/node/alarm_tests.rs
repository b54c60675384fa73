//! Alarms at the node core, driven by hand: who may raise them, what a peer's alarm must be
//! to be learned, and what an accepted call sends.

use super::*;
use crate::config::Fleet;
use crate::core::node::{Boot, Command, Input, NodeCore};
use crate::core::types::Now;
use std::sync::Arc;

fn fleet() -> Arc<Fleet> {
    let text = crate::demo::THREE_SITES_FAST;
    let cut = text.find("[[watch]]").expect("the fleet has watches");
    let text = format!(
        r#"{head}
[[notify]]
name = "pager"
kind = "exec"
on = ["alarm_raised", "alarm_cleared"]
argv = ["/bin/true"]

[[alarm_source]]
name = "fire-b"
sites = ["b"]
kind = "http"
token_file = "/nonexistent"

[[watch]]
site = "a"
by = ["b", "c"]
takeover_delay_s = 2
self_fence_after_s = 0.5
on_alarm = "prestage"
[[watch.pipeline.prestage]]
name = "reserve"
kind = "exec"
timeout_s = 5
argv = ["/bin/true"]
[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/true"]

[[watch]]
site = "b"
by = ["a", "c"]
"#,
        head = &text[..cut]
    );
    Arc::new(Fleet::parse(&text).expect("the test fleet is valid"))
}

fn at(ms: u64) -> Now {
    Now::at_micros(ms * 1000)
}

fn core_of(f: &Arc<Fleet>, node: &str) -> NodeCore {
    NodeCore::new(f.clone(), &NodeId::from(node), Boot::default(), at(0), 7).expect("in the fleet")
}

fn drain(c: &mut NodeCore) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn alarm(by: &str, at_ms: i64) -> Alarm {
    Alarm {
        site: SiteId::from("a"),
        source: "fire-a".into(),
        severity: AlarmSeverity::Critical,
        reason: "smoke".into(),
        raised: true,
        set_at_unix_ms: at_ms,
        by: NodeId::from(by),
    }
}

fn from(peer: &str, alarms: Vec<Alarm>) -> Input {
    Input::Message {
        from: NodeId::from(peer),
        msg: Message::Alarms(alarms),
    }
}

fn saved(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::SaveAlarm(_)))
        .count()
}

fn reply(actions: &[Action]) -> CommandReply {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Reply { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .expect("the command is answered")
}

use super::super::CommandReply;

#[test]
fn a_peer_alarm_is_learned_only_from_the_electorate_and_within_bounds() {
    let f = fleet();
    let mut c1 = core_of(&f, "c1");
    drain(&mut c1);
    // An Indicator host inside a, with as valid a certificate as any.
    c1.handle(at(10), from("a3", vec![alarm("a3", 0)]));
    // A member passing on a call it says an outsider accepted.
    c1.handle(at(20), from("b1", vec![alarm("a1", 0)]));
    // Stamped far ahead of c1's clock (the wall clock starts at 0 here).
    c1.handle(at(30), from("b1", vec![alarm("b1", 3_600_000)]));
    let actions = drain(&mut c1);
    assert_eq!(saved(&actions), 0, "{actions:?}");
    assert!(!c1.alarms().is_raised(&SiteId::from("a")));
    assert_eq!(c1.refusals().count(Refusal::NotOperatorNode), 2);
    assert_eq!(c1.refusals().count(Refusal::FromTheFuture), 1);

    // A member's call within bounds is stored, then in effect; the same again is no news.
    c1.handle(at(40), from("b1", vec![alarm("b1", 0)]));
    assert_eq!(saved(&drain(&mut c1)), 1);
    assert!(c1.alarms().is_raised(&SiteId::from("a")));
    c1.handle(at(50), from("b2", vec![alarm("b1", 0)]));
    assert_eq!(saved(&drain(&mut c1)), 0);
}

#[test]
fn only_a_voter_of_the_electorate_and_an_entitled_source_raise_alarms() {
    let f = fleet();
    let call = |via: Option<&str>, source: &str| {
        Command::Alarm(AlarmCall {
            site: SiteId::from("a"),
            source: source.into(),
            severity: AlarmSeverity::Critical,
            reason: "smoke".into(),
            raised: true,
            via: via.map(str::to_string),
        })
    };
    let mut a1 = core_of(&f, "a1");
    drain(&mut a1);
    a1.handle(
        at(10),
        Input::Command {
            id: 1,
            command: call(None, "ops"),
        },
    );
    assert!(matches!(
        reply(&drain(&mut a1)),
        Err(OperatorError::NotEntitled { .. })
    ));

    let mut b1 = core_of(&f, "b1");
    drain(&mut b1);
    b1.handle(
        at(10),
        Input::Command {
            id: 1,
            command: call(Some("fire-b"), "fire-b"),
        },
    );
    let actions = drain(&mut b1);
    assert!(matches!(
        reply(&actions),
        Err(OperatorError::SourceNotEntitled { .. })
    ));
    assert_eq!(saved(&actions), 0);

    // Nothing to clear: refused, and no source slot is used up.
    let clear = Command::Alarm(AlarmCall {
        raised: false,
        ..match call(None, "typo") {
            Command::Alarm(c) => c,
            _ => unreachable!(),
        }
    });
    b1.handle(
        at(15),
        Input::Command {
            id: 9,
            command: clear,
        },
    );
    assert!(matches!(
        reply(&drain(&mut b1)),
        Err(OperatorError::NoSuchAlarm { .. })
    ));

    // The operator's call: stored, sent to the other members of a's electorate, and the
    // prestage asked of the operator lock at once.
    b1.handle(
        at(20),
        Input::Command {
            id: 2,
            command: call(None, "fire-a"),
        },
    );
    let actions = drain(&mut b1);
    assert!(
        matches!(reply(&actions), Ok(CommandOk::Alarm(a)) if a.raised && a.by == NodeId::from("b1"))
    );
    assert_eq!(saved(&actions), 1);
    let mut sent: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                msg: Message::Alarms(_),
            } => Some(to.to_string()),
            _ => None,
        })
        .collect();
    sent.sort();
    assert_eq!(sent, ["b2", "c1", "c2"]);
    let locks = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Send {
                    msg: Message::Lock(_),
                    ..
                }
            )
        })
        .count();
    assert!(
        locks >= 3,
        "the lock is asked of the electorate: {actions:?}"
    );
    assert!(b1.oplock().proposing(&SiteId::from("a")));
    // The voter that accepted the call notifies it.
    let notes: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify(call) => Some(call.event.idempotency_key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 1, "{actions:?}");
    assert!(
        notes[0].starts_with("alarm/a/fire-a/") && notes[0].ends_with("/raised"),
        "{notes:?}"
    );
}

/// A prestage the lock decided, whose run this member has not seen end (its leader died as
/// the lock decided it; the takeover is still to come), is not unstaged when the last alarm
/// clears: the unstage would compensate what has not acted yet, and the prestage, taken over
/// later, would then stand with nothing left to undo it. Once the run's end is known here,
/// the clearing unstages.
#[test]
fn the_last_clear_unstages_only_a_prestage_whose_run_has_ended() {
    use crate::core::oplock::{Decided, LockState, LockValue};
    use crate::core::pipeline::{JournalEntry, JournalKind, Phase, RunOutcome, StepRef};
    use crate::core::replica::{RunRecord, RunTrigger};
    use crate::core::types::{Ballot, WallTime};
    let f = fleet();
    let (site, c1) = (SiteId::from("a"), NodeId::from("c1"));
    let ballot = Ballot {
        epoch: 1,
        proposer: c1.clone(),
    };
    let lock = LockState {
        promised: ballot.clone(),
        accepted: None,
        decided: Some(Decided {
            gen: 1,
            value: LockValue {
                run: 1,
                leader: c1.clone(),
                trigger: RunTrigger::Prestage,
                forced: false,
                alarms: Vec::new(),
            },
        }),
    };
    let mut cleared = alarm("b1", 1_000);
    cleared.raised = false;
    let asks_the_lock = |runs: Vec<RunRecord>, verdicts: Vec<crate::core::types::Verdict>| {
        let boot = Boot {
            locks: [(site.clone(), lock.clone())].into(),
            alarms: vec![cleared.clone()],
            runs,
            verdicts,
            ..Boot::default()
        };
        let mut b1 = NodeCore::new(f.clone(), &NodeId::from("b1"), boot, at(2_000), 7)
            .expect("in the fleet");
        drain(&mut b1);
        b1.handle(at(2_010), Input::Tick);
        let actions = drain(&mut b1);
        actions.iter().any(|a| {
            matches!(
                a,
                Action::Send {
                    msg: Message::Lock(_),
                    ..
                }
            )
        })
    };
    assert!(
        !asks_the_lock(Vec::new(), Vec::new()),
        "an unstage was asked for while the prestage it undoes has not run"
    );
    let finished = RunRecord {
        site: site.clone(),
        run: 1,
        trigger: RunTrigger::Prestage,
        promised: ballot.clone(),
        journal_ballot: ballot,
        journal: vec![JournalEntry {
            site: site.clone(),
            epoch: 1,
            term: 1,
            step: StepRef::new(Phase::Step, 0),
            name: "reserve".into(),
            attempt: 1,
            at: WallTime::from_micros(1_500_000),
            kind: JournalKind::RunFinished {
                outcome: RunOutcome::Succeeded {
                    continued: Vec::new(),
                    post_failed: Vec::new(),
                },
            },
        }],
        forced: false,
        start_at: WallTime::from_micros(1_000_000),
    };
    assert!(
        asks_the_lock(vec![finished.clone()], Vec::new()),
        "the clearing unstages a prestage whose run has ended"
    );
    // The site was judged DOWN since (epoch 2, after the prestage's run 1): its failover is
    // due, even before this member holds its run's register, and relies on the prestage.
    let down = crate::core::types::Verdict {
        site: site.clone(),
        slot: 0,
        value: crate::core::types::Value {
            outcome: crate::core::types::Outcome::Down,
            epoch: 2,
            leader: c1.clone(),
        },
    };
    assert!(
        !asks_the_lock(vec![finished], vec![down]),
        "an unstage was asked for although a DOWN verdict of the site came after the prestage"
    );
}

#[test]
fn a_member_that_missed_the_call_a_decision_was_made_on_waits_until_it_learns_it() {
    use crate::core::oplock::{AlarmStamp, Decided, LockState, LockValue};
    use crate::core::replica::RunTrigger;
    use crate::core::types::Ballot;
    let f = fleet();
    let (site, c1) = (SiteId::from("a"), NodeId::from("c1"));
    // The lock's newest decision unstaged site a on fire-a's clear stamped 1 500, which c1
    // took and b1 has not learned: b1 still holds fire-a raised at 1 000.
    let lock = LockState {
        promised: Ballot {
            epoch: 2,
            proposer: c1.clone(),
        },
        accepted: None,
        decided: Some(Decided {
            gen: 2,
            value: LockValue {
                run: 2,
                leader: c1.clone(),
                trigger: RunTrigger::Unstage,
                forced: false,
                alarms: vec![AlarmStamp {
                    source: "fire-a".into(),
                    set_at_unix_ms: 1_500,
                    raised: false,
                }],
            },
        }),
    };
    let asks_the_lock = |held: Alarm, learned: Option<Alarm>| {
        let boot = Boot {
            locks: [(site.clone(), lock.clone())].into(),
            alarms: vec![held],
            ..Boot::default()
        };
        let mut b1 = NodeCore::new(f.clone(), &NodeId::from("b1"), boot, at(2_000), 7)
            .expect("in the fleet");
        if let Some(a) = learned {
            b1.handle(at(2_000), from("c1", vec![a]));
        }
        drain(&mut b1);
        b1.handle(at(2_010), Input::Tick);
        drain(&mut b1).iter().any(|a| {
            matches!(
                a,
                Action::Send {
                    msg: Message::Lock(_),
                    ..
                }
            )
        })
    };
    assert!(
        !asks_the_lock(alarm("b1", 1_000), None),
        "a prestage was asked for on an alarm the decision already saw cleared"
    );
    let mut clear = alarm("c1", 1_500);
    clear.raised = false;
    assert!(
        !asks_the_lock(alarm("b1", 1_000), Some(clear)),
        "once it learns the clear, nothing is due"
    );
    assert!(
        asks_the_lock(alarm("b1", 1_900), None),
        "a raise newer than the decision's basis begins a new episode"
    );
}
