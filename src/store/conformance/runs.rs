//! The run register behaviour every [`Storage`] must have: a record reads back with its
//! journal, a higher ballot's journal replaces the stored one, and a promise never drops.

use super::{Harness, MemoryHarness, SqliteHarness};
use crate::core::pipeline::{JournalEntry, JournalKind, Phase, StepRef};
use crate::core::replica::{RunRecord, RunTrigger};
use crate::core::types::{Ballot, NodeId, SiteId, WallTime};
use crate::store::{Storage, StoreError};

conformance!(
    a_run_record_reads_back_with_its_journal_across_reopen,
    a_higher_ballots_journal_replaces_the_stored_one,
    a_run_promise_is_never_lowered,
    a_journal_entry_of_another_run_is_refused,
    the_newest_maintenance_call_wins_and_survives_reopen,
);

fn ballot(epoch: u64, node: &str) -> Ballot {
    Ballot {
        epoch,
        proposer: NodeId::from(node),
    }
}

fn started(run: u64, term: u64, index: usize, at_us: u64) -> JournalEntry {
    JournalEntry {
        site: SiteId("a".into()),
        epoch: run,
        term,
        step: StepRef::new(Phase::Step, index),
        name: format!("s{index}"),
        attempt: 1,
        at: WallTime::from_micros(at_us),
        kind: JournalKind::Started,
    }
}

pub(super) fn record(run: u64, b: Ballot, journal: Vec<JournalEntry>) -> RunRecord {
    RunRecord {
        site: SiteId("a".into()),
        run,
        trigger: RunTrigger::Verdict,
        promised: b.clone(),
        journal_ballot: b,
        journal,
        forced: false,
        start_at: WallTime::from_micros(5),
    }
}

fn a_run_record_reads_back_with_its_journal_across_reopen(mut h: impl Harness) {
    let mut store = h.open();
    assert!(store.run_records().unwrap().is_empty());
    let r = record(7, ballot(7, "b1"), vec![started(7, 7, 0, 10)]);
    store.save_run(&r).unwrap();
    drop(store);
    let store = h.open();
    assert_eq!(store.run_records().unwrap(), vec![r.clone()]);
    assert_eq!(
        store.journal(&SiteId("a".into()), 7).unwrap(),
        r.journal,
        "the journal is the run's journal"
    );
}

fn a_higher_ballots_journal_replaces_the_stored_one(mut h: impl Harness) {
    let mut store = h.open();
    store
        .save_run(&record(
            7,
            ballot(7, "b1"),
            vec![started(7, 7, 0, 10), started(7, 7, 1, 20)],
        ))
        .unwrap();
    // The new leader did not know of step 1 (never held by a majority) and started step 1 anew.
    let newer = record(
        7,
        ballot(8, "c1"),
        vec![started(7, 7, 0, 10), started(7, 8, 1, 30)],
    );
    store.save_run(&newer).unwrap();
    drop(store);
    let store = h.open();
    assert_eq!(store.run_records().unwrap(), vec![newer.clone()]);
    assert_eq!(
        store.journal(&SiteId("a".into()), 7).unwrap(),
        newer.journal
    );
}

fn a_run_promise_is_never_lowered(mut h: impl Harness) {
    let mut store = h.open();
    store.save_run(&record(7, ballot(9, "c1"), vec![])).unwrap();
    let err = store
        .save_run(&record(7, ballot(8, "b1"), vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::EpochRegression { .. }), "{err:?}");
    assert_eq!(store.run_records().unwrap()[0].promised, ballot(9, "c1"));
}

fn a_journal_entry_of_another_run_is_refused(mut h: impl Harness) {
    let mut store = h.open();
    let err = store
        .save_run(&record(7, ballot(7, "b1"), vec![started(6, 6, 0, 10)]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(store.journal(&SiteId("a".into()), 7).unwrap().is_empty());
}

fn window(until: i64, set_at: i64) -> crate::wire::MaintenanceWindow {
    crate::wire::MaintenanceWindow {
        site: SiteId("a".into()),
        until_unix_ms: until,
        set_at_unix_ms: set_at,
    }
}

fn the_newest_maintenance_call_wins_and_survives_reopen(mut h: impl Harness) {
    let mut store = h.open();
    assert!(store.maintenance().unwrap().is_empty());
    assert!(store.save_maintenance(&window(900, 10)).unwrap());
    assert!(
        !store.save_maintenance(&window(500, 9)).unwrap(),
        "an older call is ignored"
    );
    assert!(store.save_maintenance(&window(0, 11)).unwrap(), "ended");
    drop(store);
    let store = h.open();
    assert_eq!(store.maintenance().unwrap(), vec![window(0, 11)]);
}
