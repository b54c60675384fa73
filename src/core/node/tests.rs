//! The node core driven by hand: exact inputs, exact time, and the actions it answers with.

use super::*;
use crate::core::replica::RunTrigger;
use crate::core::types::{Value, Verdict};
use crate::wire::{OpinionReport, VoteMsg};

/// The fast three-site fleet with a one-step plan and isolation steps on site a, and the
/// takeover delay `delay_s`.
pub(super) fn fleet(extra: &str) -> Arc<Fleet> {
    let text = crate::demo::THREE_SITES_FAST;
    let cut = text.find("[[watch]]").expect("the fleet has watches");
    let head = text[..cut].replacen("[timing]", "[timing]\nstatus_interval_ms = 100", 1);
    let text = format!(
        r#"{head}{extra}
[[watch]]
site = "a"
by = ["b", "c"]
takeover_delay_s = 2
self_fence_after_s = 0.5
[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/true"]
[[watch.isolation]]
name = "withdraw-a"
kind = "exec"
timeout_s = 5
argv = ["/bin/true"]

[[watch]]
site = "b"
by = ["a", "c"]
"#
    );
    Arc::new(Fleet::parse(&text).expect("the test fleet is valid"))
}

pub(super) fn at(ms: u64) -> Now {
    Now::at_micros(ms * 1000)
}

pub(super) fn core_of(fleet: &Arc<Fleet>, node: &str) -> NodeCore {
    NodeCore::new(
        fleet.clone(),
        &NodeId::from(node),
        Boot::default(),
        at(0),
        7,
    )
    .expect("the node is in the fleet")
}

pub(super) fn drain(c: &mut NodeCore) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

/// A status of `from` saying it sees site a as `opinion`.
pub(super) fn status(from: &str, opinion: Opinion) -> Input {
    let mut report = OpinionReport::unknown();
    report.opinion = opinion;
    Input::Message {
        from: NodeId::from(from),
        msg: Message::Status(PeerStatus {
            node: NodeId::from(from),
            fleet_hash: String::new(),
            opinions: vec![(SiteId::from("a"), report)],
            verdicts: vec![],
            maintenance: vec![],
        }),
    }
}

pub(super) fn steps_started(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartStep(s) => Some(s.name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reload_rebuilds_the_fence_electorate_so_a_replaced_voter_is_no_silent_member() {
    let old = fleet("");
    let mut a1 = core_of(&old, "a1");
    // c2 is replaced by c9; b2 and c1 go quiet (a partition): only b1 and c9 see a up. With the
    // old electorate (b1, b2, c1, c2) one member heard of four is below the blocking set of two;
    // with the new one (b1, b2, c1, c9) two are heard.
    let text = old
        .source
        .replace("\"c2\"", "\"c9\"")
        .replace("127.0.3.2", "127.0.3.9");
    let new = Arc::new(Fleet::parse(&text).expect("valid"));
    a1.handle(at(10), Input::Reload(new));
    let mut t = 10;
    while t < 3_000 {
        t += 100;
        a1.handle(at(t), status("b1", Opinion::Up));
        a1.handle(at(t), status("c9", Opinion::Up));
        a1.handle(at(t), Input::Tick);
    }
    let iso = a1.isolation().expect("site a fences");
    assert_eq!(iso.count, 0, "a healthy site fenced itself after a reload");
    assert_eq!(iso.fence.heard(at(t).mono), 2);
    assert!(steps_started(&drain(&mut a1)).is_empty());
}

#[test]
fn a_node_the_changed_fleet_no_longer_lists_stops_voting() {
    let old = fleet("");
    let mut c2 = core_of(&old, "c2");
    let text = old
        .source
        .replace("\"c2\"", "\"c9\"")
        .replace("127.0.3.2", "127.0.3.9");
    c2.handle(
        at(10),
        Input::Reload(Arc::new(Fleet::parse(&text).expect("valid"))),
    );
    assert!(c2
        .voting_disabled()
        .is_some_and(|w| w.contains("not in the fleet file")));
    // A Prepare from a peer gets no answer: nothing of this node's vote leaves it.
    drain(&mut c2);
    c2.handle(at(20), forged_down_commit("b1", "c2"));
    let after = drain(&mut c2);
    assert!(
        !after.iter().any(|a| matches!(a, Action::SaveRun(_))),
        "a retired node leads no run: {after:?}"
    );
}

fn forged_down_commit(from: &str, leader: &str) -> Input {
    Input::Message {
        from: NodeId::from(from),
        msg: Message::Vote(VoteMsg::Commit {
            verdict: Verdict {
                site: SiteId::from("a"),
                slot: 0,
                value: Value {
                    outcome: Outcome::Down,
                    epoch: 1,
                    leader: NodeId::from(leader),
                },
            },
        }),
    }
}

#[test]
fn a_down_verdict_naming_this_node_that_it_only_learned_starts_no_failover() {
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    b1.handle(at(10), status("c1", Opinion::Up));
    // A member of the electorate claims b1 committed a DOWN verdict of a: b1 shows it, but
    // only a round of its own makes it the run's leader. (Within one probe budget of the last
    // input: a longer silence would read as a stalled event loop and make the node abstain.)
    b1.handle(at(60), forged_down_commit("c1", "b1"));
    assert_eq!(
        b1.voter().verdict(&SiteId::from("a")).map(|v| v.epoch()),
        Some(1)
    );
    assert_eq!(b1.runs().waiting().count(), 0);
    let actions = drain(&mut b1);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::SaveRun(_))),
        "{actions:?}"
    );
}

#[test]
fn a_wall_clock_leap_makes_the_node_abstain_and_refuse_operator_runs_for_a_cool_off() {
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    b1.handle(at(10), status("c1", Opinion::Up));
    drain(&mut b1);
    // The wall clock leaps an hour ahead; monotonic time moves 50 ms.
    let leap = Now::new(
        at(60).mono,
        at(60).wall + std::time::Duration::from_secs(3600),
    );
    b1.handle(leap, Input::Tick);
    assert!(b1.tilt().active(), "the node distrusts its clocks");
    let failover = Command::Failover {
        site: SiteId::from("a"),
        reason: "test".into(),
        force: false,
    };
    b1.handle(
        leap,
        Input::Command {
            id: 1,
            command: failover.clone(),
        },
    );
    let replies: Vec<CommandReply> = drain(&mut b1)
        .into_iter()
        .filter_map(|a| match a {
            Action::Reply { reply, .. } => Some(reply),
            _ => None,
        })
        .collect();
    assert!(
        matches!(replies.as_slice(), [Err(OperatorError::Tilted(_))]),
        "{replies:?}"
    );
    // After the cool-off (two probe budgets) the node trusts its clocks again.
    let mut later = leap;
    for _ in 0..200 {
        later = Now::new(
            later.mono + std::time::Duration::from_millis(10),
            later.wall + std::time::Duration::from_millis(10),
        );
        b1.handle(later, Input::Tick);
    }
    assert!(!b1.tilt().active());
    drain(&mut b1);
    b1.handle(
        later,
        Input::Command {
            id: 2,
            command: failover,
        },
    );
    // Trusted again, the call goes to the electorate for the site's operator lock.
    let actions = drain(&mut b1);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Reply { .. })),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Send {
                msg: Message::Lock(_),
                ..
            }
        )),
        "{actions:?}"
    );
}

/// The register of run `run` of site a led by `leader`, with journal `journal`.
fn register(run: u64, leader: &str, journal: Vec<crate::core::pipeline::JournalKind>) -> Input {
    use crate::core::pipeline::{JournalEntry, Phase, StepRef};
    use crate::core::replica::{RunMsg, RunRecord, RunTrigger};
    use crate::core::types::{Ballot, WallTime};
    let ballot = Ballot {
        epoch: run,
        proposer: NodeId::from(leader),
    };
    let journal: Vec<JournalEntry> = journal
        .into_iter()
        .map(|kind| JournalEntry {
            site: SiteId::from("a"),
            epoch: run,
            term: run,
            step: StepRef::new(Phase::Step, 0),
            name: "promote-b".into(),
            attempt: 1,
            at: WallTime(1_000),
            kind,
        })
        .collect();
    Input::Message {
        from: NodeId::from(leader),
        msg: Message::Run(RunMsg::Append {
            len: journal.len() as u32,
            record: RunRecord {
                site: SiteId::from("a"),
                run,
                trigger: RunTrigger::Verdict,
                promised: ballot.clone(),
                journal_ballot: ballot,
                journal,
                forced: false,
                start_at: WallTime(0),
            },
            from: 0,
        }),
    }
}

#[test]
fn an_automatic_run_holds_its_site_down_until_its_leader_drops_it() {
    use crate::core::pipeline::{JournalKind, RunOutcome};
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    let a = SiteId::from("a");
    // Heard of with an empty journal: it may have acted elsewhere, so it holds a down.
    b1.handle(at(10), register(1, "c1", vec![]));
    let held = Some(at(10).mono + std::time::Duration::from_secs(300));
    assert_eq!(b1.runs().hold_down_until(&a), held);
    // Its leader gave it up before its first step (its verdict changed): released.
    let dropped = JournalKind::RunFinished {
        outcome: RunOutcome::Dropped {
            detail: "the verdict changed during the takeover delay".into(),
        },
    };
    b1.handle(at(20), register(1, "c1", vec![dropped]));
    assert_eq!(b1.runs().hold_down_until(&a), None);
    // A run that started a step holds it down for hold_down_s from when it was heard of.
    b1.handle(at(30), register(5, "c1", vec![JournalKind::Started]));
    assert_eq!(
        b1.runs().hold_down_until(&a),
        Some(at(30).mono + std::time::Duration::from_secs(300))
    );
}

/// Ticks `c` every 20 ms from `from` to `to` (ms) and returns every action.
fn tick_through(c: &mut NodeCore, from: u64, to: u64) -> Vec<Action> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        t += 20;
        c.handle(at(t), Input::Tick);
        out.extend(drain(c));
    }
    out
}

/// The takeover Prepares `actions` send for run `run` of site a, as (to, term).
fn prepares(actions: &[Action], run: u64) -> Vec<(NodeId, u64)> {
    use crate::core::replica::RunMsg;
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                msg: Message::Run(RunMsg::Prepare { run: r, ballot, .. }),
            } if *r == run => Some((to.clone(), ballot.epoch)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_down_verdict_whose_leader_never_registers_its_run_is_taken_over_after_the_lease() {
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    let a = SiteId::from("a");
    b1.handle(at(10), status("c1", Opinion::Up));
    // Committed by the electorate, naming c1, which dies before its register leaves.
    b1.handle(at(60), forged_down_commit("c2", "c1"));
    let learned = drain(&mut b1);
    // Expected, not yet heard of: nothing stored, shown or held down.
    assert!(
        !learned.iter().any(|a| matches!(a, Action::SaveRun(_))),
        "{learned:?}"
    );
    assert!(b1.replicas().is_expected(&a, 1));
    assert_eq!(b1.replicas().records().count(), 0);
    assert_eq!(b1.runs().hold_down_until(&a), None);
    // Within the lease (600 ms): no campaign.
    let early = tick_through(&mut b1, 60, 600);
    assert!(prepares(&early, 1).is_empty(), "{early:?}");
    // Past it, b1 (first in rank after the silent leader) asks for term 2.
    let late = tick_through(&mut b1, 600, 1_000);
    let asked = prepares(&late, 1);
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked.iter().all(|(_, term)| *term == 2));
    // Its promise to itself is durable before any Prepare leaves, and the run now holds the
    // site down: a takeover may act.
    let first_save = late
        .iter()
        .position(|a| matches!(a, Action::SaveRun(r) if r.promised.epoch == 2))
        .expect("the promise is saved");
    let first_send = late
        .iter()
        .position(|a| {
            matches!(
                a,
                Action::Send {
                    msg: Message::Run(_),
                    ..
                }
            )
        })
        .expect("sent");
    assert!(first_save < first_send);
    assert!(b1.runs().hold_down_until(&a).is_some());
    assert!(!b1.replicas().is_expected(&a, 1));
}

#[test]
fn a_down_verdict_within_hold_down_of_an_earlier_run_is_not_expected() {
    use crate::core::pipeline::JournalKind;
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    let a = SiteId::from("a");
    b1.handle(at(10), status("c1", Opinion::Up));
    b1.handle(at(20), register(1, "c2", vec![JournalKind::Started]));
    drain(&mut b1);
    let mut commit = forged_down_commit("c2", "c1");
    if let Input::Message {
        msg: Message::Vote(VoteMsg::Commit { verdict }),
        ..
    } = &mut commit
    {
        verdict.value.epoch = 3;
    }
    b1.handle(at(40), commit);
    assert!(!b1.replicas().is_expected(&a, 3));
    let later = tick_through(&mut b1, 40, 2_000);
    assert!(prepares(&later, 3).is_empty(), "{later:?}");
}

#[test]
fn a_down_verdict_of_a_site_in_maintenance_is_not_expected() {
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    let a = SiteId::from("a");
    b1.handle(at(10), status("c1", Opinion::Up));
    let until = at(10).wall.as_millis() + 3_600_000;
    b1.handle(
        at(20),
        Input::Command {
            id: 1,
            command: Command::SetMaintenance {
                site: a.clone(),
                until_unix_ms: until,
            },
        },
    );
    drain(&mut b1);
    b1.handle(at(40), forged_down_commit("c2", "c1"));
    assert!(!b1.replicas().is_expected(&a, 1));
    let later = tick_through(&mut b1, 40, 2_000);
    assert!(prepares(&later, 1).is_empty(), "{later:?}");
}

const NOTIFIER: &str = "[[notify]]\nname = \"hook\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/hook\"\non = [\"verdict_changed\"]\n";

/// Ticks `c` every 50 ms from `from_ms` to `to_ms`, returning the notifier calls it asks for.
fn notify_calls(c: &mut NodeCore, from_ms: u64, to_ms: u64) -> Vec<NotifyCall> {
    let mut calls = Vec::new();
    for ms in (from_ms..=to_ms).step_by(50) {
        c.handle(at(ms), Input::Tick);
        calls.extend(drain(c).into_iter().filter_map(|a| match a {
            Action::Notify(call) => Some(call),
            _ => None,
        }));
    }
    calls
}

fn notified(from: &str, key: &str) -> Input {
    Input::Message {
        from: NodeId::from(from),
        msg: Message::Notified(crate::wire::NotifiedMsg {
            site: SiteId::from("a"),
            key: key.to_string(),
            notifier: "hook".to_string(),
        }),
    }
}

#[test]
fn a_voter_takes_over_a_verdicts_notification_unless_a_voter_says_it_was_sent() {
    let f = fleet(NOTIFIER);
    // c1 learns a DOWN verdict of a led by b1; a3 (site a, no voter of a) forges a note.
    let mut c1 = core_of(&f, "c1");
    c1.handle(at(10), status("b2", Opinion::Up));
    c1.handle(at(60), forged_down_commit("b2", "b1"));
    assert!(notify_calls(&mut c1, 60, 60).is_empty(), "b1 sends first");
    c1.handle(at(100), notified("a3", "verdict/a/1/down"));
    assert_eq!(c1.refusals().count(Refusal::NotInElectorate), 1);
    // Lease 600 ms, then one heartbeat (150 ms) per rank: c1 is second after b2.
    assert!(notify_calls(&mut c1, 150, 800).is_empty());
    let calls = notify_calls(&mut c1, 850, 900);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].event.idempotency_key, "verdict/a/1/down");
    assert_eq!(calls[0].notifier, "hook");

    // The same, but b1 says it sent it: nothing to take over.
    let mut c2 = core_of(&f, "c2");
    c2.handle(at(10), status("b2", Opinion::Up));
    c2.handle(at(60), forged_down_commit("b2", "b1"));
    c2.handle(at(100), notified("b1", "verdict/a/1/down"));
    assert!(notify_calls(&mut c2, 150, 1500).is_empty());
    assert_eq!(c2.notifications().pending(), 0);
}

/// A Commit of the operator lock from `from` deciding generation `gen`: run `run` of site a
/// led by `leader`.
fn lock_commit(from: &str, gen: u64, run: u64, leader: &str) -> Input {
    use crate::core::oplock::{Decided, LockMsg, LockValue};
    Input::Message {
        from: NodeId::from(from),
        msg: Message::Lock(LockMsg::Commit {
            site: SiteId::from("a"),
            decided: Decided {
                gen,
                value: LockValue {
                    run,
                    leader: NodeId::from(leader),
                    trigger: RunTrigger::Manual,
                    forced: false,
                    alarms: Vec::new(),
                },
            },
        }),
    }
}

#[test]
fn a_locked_run_whose_leader_never_registers_it_is_taken_over_after_the_lease() {
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    let a = SiteId::from("a");
    b1.handle(at(10), status("c1", Opinion::Up));
    // The lock decided a manual run of a led by c1, which dies before its register leaves.
    b1.handle(at(60), lock_commit("c2", 1, 5, "c1"));
    let learned = drain(&mut b1);
    assert!(
        !learned.iter().any(|a| matches!(a, Action::SaveRun(_))),
        "{learned:?}"
    );
    assert!(b1.replicas().is_expected(&a, 5));
    assert_eq!(b1.replicas().records().count(), 0);
    // Within the lease: no campaign; past it, b1 asks for a term above the run's first.
    let early = tick_through(&mut b1, 60, 600);
    assert!(prepares(&early, 5).is_empty(), "{early:?}");
    let late = tick_through(&mut b1, 600, 1_000);
    let asked = prepares(&late, 5);
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked.iter().all(|(_, term)| *term == 6), "{asked:?}");
    let saved = late.iter().find_map(|a| match a {
        Action::SaveRun(r) if r.run == 5 => Some(r.trigger),
        _ => None,
    });
    assert_eq!(saved, Some(RunTrigger::Manual), "{late:?}");
}

#[test]
fn a_locked_run_replaced_by_a_newer_decision_is_forgotten_unsent() {
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    let a = SiteId::from("a");
    b1.handle(at(10), status("c1", Opinion::Up));
    b1.handle(at(60), lock_commit("c2", 1, 5, "c1"));
    drain(&mut b1);
    assert!(b1.replicas().is_expected(&a, 5));
    // The next generation names b1 itself: the first run is no longer due here.
    b1.handle(at(100), lock_commit("c2", 2, 6, "b1"));
    let late = tick_through(&mut b1, 100, 1_000);
    assert!(prepares(&late, 5).is_empty(), "{late:?}");
    assert!(!b1.replicas().is_expected(&a, 5));
}
