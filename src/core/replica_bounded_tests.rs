//! Bounds of run replication: message sizes under the wire limit for journals of any length,
//! batches adopted only when whole, and numbers above the epoch bound dropped unread.

use super::*;

fn heartbeat(epoch: u64, from: &str, len: u32) -> RunMsg {
    RunMsg::Heartbeat {
        site: site(),
        run: 7,
        ballot: ballot(epoch, from),
        len,
    }
}

#[test]
fn a_heartbeat_with_the_largest_epoch_neither_stops_the_run_nor_wraps_the_term() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    c.append("b1", entry(7, 0, JournalKind::Started));
    let e = c.electorate.clone();
    let now = c.now;
    for n in ["b1", "b2"] {
        c.node(n)
            .handle(now, &id("c1"), heartbeat(u64::MAX, "c1", 1), &e);
    }
    c.settle();
    assert!(c.yields.is_empty(), "{:?}", c.yields);
    assert!(c.node("b1").is_leader(&site(), 7));
    assert_eq!(c.node("b2").record(&site(), 7).unwrap().term(), 7);
    // The leader goes silent: the takeover's term is the next one, not a wrapped zero.
    c.down.push(id("b1"));
    c.run_for(Duration::from_secs(5));
    assert_eq!(c.leads.len(), 1, "{:?}", c.leads);
    assert_eq!(c.leads[0].1, 8);
}

#[test]
fn a_run_at_the_largest_term_is_not_taken_over_past_it() {
    let mut c = Cluster::new();
    let top = crate::core::trust::MAX_EPOCH;
    c.start("b1", top);
    let mut first = entry(top, 0, JournalKind::Started);
    first.term = top;
    c.append("b1", first);
    assert!(c.node("b1").replicated(&site(), top));
    c.down.push(id("b1"));
    c.run_for(Duration::from_secs(5));
    assert!(c.leads.is_empty(), "{:?}", c.leads);
    for n in ["b2", "c1"] {
        assert_eq!(c.node(n).record(&site(), top).unwrap().term(), top);
    }
}

#[test]
fn messages_with_numbers_above_the_epoch_bound_are_refused_unread() {
    let above = crate::core::trust::MAX_EPOCH + 1;
    assert!(!heartbeat(above, "c1", 0).in_bounds());
    assert!(heartbeat(above - 1, "c1", 0).in_bounds());
    let mut rec = record(7, "c1");
    rec.journal_ballot = ballot(above, "c1");
    let append = RunMsg::Append {
        record: rec,
        from: 0,
        len: 0,
    };
    assert!(!append.in_bounds());
    let past_the_end = RunMsg::Append {
        record: record(7, "c1"),
        from: 3,
        len: 1,
    };
    assert!(!past_the_end.in_bounds());
    let e = Cluster::new().electorate;
    let mut b2 = Replicas::new(id("b2"), CONFIG);
    b2.handle(ms(0), &id("c1"), heartbeat(above, "c1", 0), &e);
    b2.handle(ms(0), &id("c1"), append, &e);
    let actions: Vec<ReplicaAction> = std::iter::from_fn(|| b2.poll_action()).collect();
    assert!(
        actions.len() == 2
            && actions.iter().all(|a| matches!(
                a,
                ReplicaAction::Refused {
                    reason: crate::core::trust::Refusal::NumberOutOfBounds,
                    ..
                }
            )),
        "nothing answered or adopted, both refused and counted: {actions:?}"
    );
    assert!(b2.record(&site(), 7).is_none());
}

#[test]
fn a_journal_of_two_hundred_noisy_failed_attempts_replicates_in_messages_under_the_limit() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    // Only the leader holds the journal while it grows; then the members come back and catch
    // up from nothing.
    c.down = vec![id("b2"), id("c1")];
    for attempt in 1..=200 {
        let mut started = entry(7, 0, JournalKind::Started);
        started.attempt = attempt;
        c.append("b1", started);
        c.append("b1", noisy(7, attempt));
    }
    let journal = &c.node("b1").record(&site(), 7).unwrap().journal;
    assert_eq!(journal.len(), 400);
    let whole: usize = journal.iter().map(entry_size_bound).sum();
    assert!(
        whole > crate::wire::MAX_MESSAGE,
        "the whole journal ({whole} B) would not fit one message"
    );
    c.down.clear();
    c.run_for(Duration::from_secs(2));
    assert!(c.node("b1").replicated(&site(), 7));
    for n in ["b2", "c1"] {
        let copy = c.node(n).record(&site(), 7).unwrap();
        assert_eq!(copy.journal.len(), 400, "{n} holds all of it");
        assert_eq!(copy.journal_ballot, ballot(7, "b1"));
    }
    let (largest, appends) = (c.largest, c.appends);
    assert!(
        largest <= APPEND_BATCH_BYTES + 4096,
        "largest message {largest} B"
    );
    assert!(
        appends >= 2 * (whole / APPEND_BATCH_BYTES),
        "{whole} B in batches of 64 KiB to two members: {appends} appends"
    );
}

#[test]
fn a_newer_leaders_journal_is_adopted_only_once_it_is_whole() {
    // b2 holds 3 entries of ballot 7; the new leader c1 (ballot 8) has 400 noisy ones. A batch
    // of them must not make b2's copy a short copy of ballot 8.
    let e = Cluster::new().electorate;
    let mut b2 = Replicas::new(id("b2"), CONFIG);
    let mut old = record(7, "b1");
    old.journal = (0..3).map(|i| entry(7, i, JournalKind::Started)).collect();
    b2.load(ms(0), old, e.clone());
    let mut new = record(7, "c1");
    new.promised = ballot(8, "c1");
    new.journal_ballot = ballot(8, "c1");
    new.journal = (1..=400).map(|a| noisy(7, a)).collect();
    let mut leader = Replica::follower(new, e.clone(), None);
    leader.role = Role::Leader {
        acked: BTreeMap::new(),
        sent: BTreeMap::new(),
        next_heartbeat: ms(0),
    };
    let mut at = 0;
    let mut batches = 0;
    loop {
        let (msg, _) = leader.append_from(at);
        b2.handle(ms(10), &id("c1"), msg, &e);
        let acked = std::iter::from_fn(|| b2.poll_action())
            .find_map(|a| match a {
                ReplicaAction::Send {
                    msg: RunMsg::Ack { len, ok: true, .. },
                    ..
                } => Some(len as usize),
                _ => None,
            })
            .expect("acknowledged");
        batches += 1;
        let copy = b2.record(&site(), 7).unwrap();
        if acked < 400 {
            assert_eq!(copy.journal_ballot, ballot(7, "b1"), "after {acked}");
            assert_eq!(copy.journal.len(), 3);
            assert!(acked > at, "progress");
            at = acked;
        } else {
            assert_eq!(copy.journal_ballot, ballot(8, "c1"));
            assert_eq!(copy.journal.len(), 400);
            break;
        }
    }
    assert!(batches > 1);
}

#[test]
fn a_batch_past_the_end_of_the_copy_is_answered_with_zero() {
    let e = Cluster::new().electorate;
    let mut b2 = Replicas::new(id("b2"), CONFIG);
    let mut rec = record(7, "b1");
    rec.journal = vec![entry(7, 5, JournalKind::Started)];
    let gap = RunMsg::Append {
        record: rec,
        from: 5,
        len: 6,
    };
    b2.handle(ms(0), &id("b1"), gap, &e);
    let acked = std::iter::from_fn(|| b2.poll_action()).find_map(|a| match a {
        ReplicaAction::Send {
            msg: RunMsg::Ack { len, ok, .. },
            ..
        } => Some((ok, len)),
        _ => None,
    });
    assert_eq!(acked, Some((true, 0)));
    assert!(b2.record(&site(), 7).unwrap().journal.is_empty());
}

#[test]
fn the_size_bound_of_an_entry_is_never_below_its_encoded_size() {
    let cfg = bincode::config::standard();
    let huge = JournalEntry {
        epoch: u64::MAX,
        term: u64::MAX,
        step: StepRef::new(Phase::Compensation, usize::MAX),
        attempt: u32::MAX,
        at: WallTime(u64::MAX),
        ..entry(7, 0, JournalKind::Started)
    };
    let entries = [
        huge,
        noisy(7, u32::MAX),
        entry(
            7,
            3,
            JournalKind::RunFinished {
                outcome: RunOutcome::Compensated {
                    step: crate::core::pipeline::StepRef::new(
                        crate::core::pipeline::Phase::Step,
                        9,
                    ),
                    detail: "é".repeat(700),
                    compensation_failed: vec![
                        crate::core::pipeline::StepRef::new(
                            crate::core::pipeline::Phase::Compensation,
                            usize::MAX
                        );
                        5
                    ],
                },
            },
        ),
    ];
    for e in &entries {
        let real = bincode::serde::encode_to_vec(e, cfg).unwrap().len();
        assert!(entry_size_bound(e) >= real, "{e:?}");
    }
}

#[test]
fn a_long_detail_keeps_its_head_and_tail_under_the_cap() {
    use crate::core::pipeline::{cap_detail, MAX_DETAIL_BYTES};
    let short = "fine".to_string();
    assert_eq!(cap_detail(short.clone()), short);
    let long = format!("HEAD{}é{}TAIL", "x".repeat(5000), "y".repeat(5000));
    let capped = cap_detail(long);
    assert!(capped.len() <= MAX_DETAIL_BYTES, "{}", capped.len());
    assert!(capped.starts_with("HEAD") && capped.ends_with("TAIL"));
    assert!(capped.contains("bytes cut"));
    let multibyte = "é".repeat(3000);
    assert!(cap_detail(multibyte).len() <= MAX_DETAIL_BYTES);
}

#[test]
fn a_candidate_lacking_most_of_a_long_journal_fetches_it_in_bounded_promises_before_it_leads() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    // c1 misses the whole noisy journal; b1 and b2 hold it.
    c.down = vec![id("c1")];
    for attempt in 1..=200 {
        c.append("b1", noisy(7, attempt));
    }
    assert!(c.node("b1").replicated(&site(), 7));
    assert_eq!(c.node("b2").record(&site(), 7).unwrap().journal.len(), 200);
    assert!(c.node("c1").record(&site(), 7).unwrap().journal.is_empty());
    // The leader dies; c1 campaigns first, without ticks.
    c.down = vec![id("b1")];
    c.now = c.now + Duration::from_secs(3);
    let now = c.now;
    c.node("c1").start_takeover_for_test(now, &(site(), 7));
    c.settle();
    assert_eq!(
        c.leads.len(),
        1,
        "{:?}",
        c.leads.iter().map(|l| (&l.0, l.1)).collect::<Vec<_>>()
    );
    let (who, term, journal) = &c.leads[0];
    assert_eq!((who, *term), (&id("c1"), 8));
    assert_eq!(
        journal.len(),
        200,
        "every majority-held entry is in the new journal"
    );
    assert!(
        c.largest <= APPEND_BATCH_BYTES + 4096,
        "largest message {} B",
        c.largest
    );
    // And the new leader's journal replicates back to b2 under the new ballot.
    c.run_for(Duration::from_millis(500));
    assert!(c.node("c1").replicated(&site(), 7));
    assert_eq!(
        c.node("b2").record(&site(), 7).unwrap().journal_ballot,
        ballot(8, "c1")
    );
}
