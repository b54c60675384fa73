//! The journal behaviour every [`Storage`] must have: append order, idempotent appends, one
//! journal per (site, epoch), the run listing and the epoch fence.

use super::{site, Harness, MemoryHarness, SqliteHarness};
use crate::core::pipeline::{JournalEntry, JournalKind, Phase, RunOutcome, StepRef};
use crate::core::types::WallTime;
use crate::store::{RunSummary, Storage, StoreError};

conformance!(
    an_empty_store_has_no_journal,
    journal_is_read_back_in_append_order_across_reopen,
    append_journal_is_idempotent_and_refuses_a_different_entry_under_a_stored_identity,
    a_run_has_one_outcome,
    journals_are_kept_apart_per_site_and_epoch,
    runs_are_newest_first_with_counts_times_outcome_and_limit,
    highest_run_epoch_is_per_site_and_never_drops,
);

fn step_entry(
    s: &str,
    epoch: u64,
    step: StepRef,
    attempt: u32,
    at_us: u64,
    kind: JournalKind,
) -> JournalEntry {
    JournalEntry {
        site: site(s),
        epoch,
        term: epoch,
        step,
        name: format!("{}-{}", step.phase.as_str(), step.index),
        attempt,
        at: WallTime::from_micros(at_us),
        kind,
    }
}

fn started(s: &str, epoch: u64, step: StepRef, attempt: u32, at_us: u64) -> JournalEntry {
    step_entry(s, epoch, step, attempt, at_us, JournalKind::Started)
}

fn finished(
    s: &str,
    epoch: u64,
    step: StepRef,
    attempt: u32,
    at_us: u64,
    ok: bool,
) -> JournalEntry {
    let detail = if ok { "done" } else { "refused" }.to_string();
    step_entry(
        s,
        epoch,
        step,
        attempt,
        at_us,
        JournalKind::Finished { ok, detail },
    )
}

fn run_finished(
    s: &str,
    epoch: u64,
    step: StepRef,
    at_us: u64,
    outcome: RunOutcome,
) -> JournalEntry {
    step_entry(
        s,
        epoch,
        step,
        0,
        at_us,
        JournalKind::RunFinished { outcome },
    )
}

fn succeeded() -> RunOutcome {
    RunOutcome::Succeeded {
        continued: Vec::new(),
        post_failed: Vec::new(),
    }
}

fn append_all(store: &mut impl Storage, entries: &[JournalEntry]) {
    for e in entries {
        store.append_journal(e).unwrap();
    }
}

fn run_keys(runs: &[RunSummary]) -> Vec<(String, u64)> {
    runs.iter()
        .map(|r| (r.site.as_str().to_string(), r.epoch))
        .collect()
}

fn an_empty_store_has_no_journal(mut h: impl Harness) {
    let store = h.open();
    assert!(store.journal(&site("par"), 1).unwrap().is_empty());
    assert!(store.runs(10).unwrap().is_empty());
    assert_eq!(store.highest_run_epoch(&site("par")).unwrap(), None);
}

fn journal_is_read_back_in_append_order_across_reopen(mut h: impl Harness) {
    let pre = StepRef::new(Phase::Precheck, 0);
    let s0 = StepRef::new(Phase::Step, 0);
    let s1 = StepRef::new(Phase::Step, 1);
    let c0 = StepRef::new(Phase::Compensation, 0);
    // Neither the phase order nor the times are the append order; only appending is.
    let entries = vec![
        started("par", 3, pre, 1, 50),
        finished("par", 3, pre, 1, 40, true),
        started("par", 3, s1, 1, 30),
        started("par", 3, s0, 1, 60),
        finished("par", 3, s0, 1, 70, true),
        started("par", 3, c0, 1, 80),
        started("par", 3, s0, 2, 10),
        finished("par", 3, c0, 1, 90, false),
        run_finished(
            "par",
            3,
            s1,
            95,
            RunOutcome::Compensated {
                step: s1,
                detail: "refused".into(),
                compensation_failed: vec![c0],
            },
        ),
    ];
    {
        let mut store = h.open();
        append_all(&mut store, &entries);
        assert_eq!(store.journal(&site("par"), 3).unwrap(), entries);
    }
    let store = h.open();
    assert_eq!(store.journal(&site("par"), 3).unwrap(), entries);
    assert_eq!(store.runs(10).unwrap()[0].entries, entries.len());
}

fn append_journal_is_idempotent_and_refuses_a_different_entry_under_a_stored_identity(
    mut h: impl Harness,
) {
    let s0 = StepRef::new(Phase::Step, 0);
    let mut store = h.open();
    let a = started("par", 3, s0, 1, 10);
    let b = finished("par", 3, s0, 1, 20, true);
    append_all(&mut store, &[a.clone(), b.clone()]);
    // A driver that crashed after the write but before it saw Ok appends again.
    store.append_journal(&a).unwrap();
    store.append_journal(&b).unwrap();
    assert_eq!(
        store.journal(&site("par"), 3).unwrap(),
        vec![a.clone(), b.clone()]
    );

    // Same (step, attempt, kind), different content: refused, nothing written.
    for different in [
        finished("par", 3, s0, 1, 20, false),
        started("par", 3, s0, 1, 11),
        JournalEntry {
            name: "renamed".into(),
            ..a.clone()
        },
    ] {
        let err = store.append_journal(&different).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }
    drop(store);
    let store = h.open();
    assert_eq!(store.journal(&site("par"), 3).unwrap(), vec![a, b]);
    assert_eq!(store.runs(10).unwrap()[0].entries, 2);
}

fn a_run_has_one_outcome(mut h: impl Harness) {
    let s0 = StepRef::new(Phase::Step, 0);
    let s1 = StepRef::new(Phase::Step, 1);
    let mut store = h.open();
    let done = run_finished("par", 3, s1, 30, succeeded());
    append_all(&mut store, &[started("par", 3, s1, 1, 10), done.clone()]);
    store.append_journal(&done).unwrap();
    for other in [
        run_finished(
            "par",
            3,
            s1,
            30,
            RunOutcome::Aborted {
                step: s1,
                detail: "x".into(),
            },
        ),
        run_finished("par", 3, s0, 30, succeeded()),
    ] {
        let err = store.append_journal(&other).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }
    assert_eq!(store.journal(&site("par"), 3).unwrap().len(), 2);
    assert_eq!(store.runs(10).unwrap()[0].outcome, Some(succeeded()));
    // Another run of the same site has its own outcome.
    store
        .append_journal(&run_finished("par", 4, s0, 40, succeeded()))
        .unwrap();
}

fn journals_are_kept_apart_per_site_and_epoch(mut h: impl Harness) {
    let s0 = StepRef::new(Phase::Step, 0);
    let mut store = h.open();
    let a3 = started("par", 3, s0, 1, 10);
    let b3 = started("ams", 3, s0, 1, 11);
    let a4 = started("par", 4, s0, 1, 12);
    let a3f = finished("par", 3, s0, 1, 13, true);
    let a4f = finished("par", 4, s0, 1, 14, false);
    append_all(
        &mut store,
        &[a3.clone(), b3.clone(), a4.clone(), a3f.clone(), a4f.clone()],
    );
    assert_eq!(store.journal(&site("par"), 3).unwrap(), vec![a3, a3f]);
    assert_eq!(store.journal(&site("par"), 4).unwrap(), vec![a4, a4f]);
    assert_eq!(store.journal(&site("ams"), 3).unwrap(), vec![b3]);
    assert!(store.journal(&site("ams"), 4).unwrap().is_empty());
    assert!(store.journal(&site("fra"), 3).unwrap().is_empty());
}

fn runs_are_newest_first_with_counts_times_outcome_and_limit(mut h: impl Harness) {
    let s0 = StepRef::new(Phase::Step, 0);
    let p0 = StepRef::new(Phase::Precheck, 0);
    let aborted = RunOutcome::PrecheckFailed {
        step: p0,
        detail: "peer unreachable".into(),
    };
    {
        let mut store = h.open();
        append_all(
            &mut store,
            &[
                started("par", 3, p0, 1, 100),
                started("ams", 7, s0, 1, 150),
                finished("par", 3, p0, 1, 120, false),
                run_finished("par", 3, p0, 130, aborted.clone()),
                started("par", 5, s0, 1, 200),
                finished("ams", 7, s0, 1, 300, true),
                run_finished("ams", 7, s0, 310, succeeded()),
            ],
        );
    }
    let store = h.open();
    let runs = store.runs(10).unwrap();
    // Newest first by when the run's first entry was appended, not by its latest entry.
    assert_eq!(
        run_keys(&runs),
        vec![("par".into(), 5), ("ams".into(), 7), ("par".into(), 3)]
    );
    assert_eq!(
        runs[0],
        RunSummary {
            site: site("par"),
            epoch: 5,
            entries: 1,
            first_at: WallTime::from_micros(200),
            last_at: WallTime::from_micros(200),
            outcome: None,
        }
    );
    assert!(!runs[0].is_finished());
    assert_eq!(
        runs[1],
        RunSummary {
            site: site("ams"),
            epoch: 7,
            entries: 3,
            first_at: WallTime::from_micros(150),
            last_at: WallTime::from_micros(310),
            outcome: Some(succeeded()),
        }
    );
    assert_eq!(runs[2].entries, 3);
    assert_eq!(runs[2].outcome, Some(aborted));
    assert_eq!(run_keys(&store.runs(2).unwrap()), run_keys(&runs[..2]));
    assert!(store.runs(0).unwrap().is_empty());
}

fn highest_run_epoch_is_per_site_and_never_drops(mut h: impl Harness) {
    let s0 = StepRef::new(Phase::Step, 0);
    {
        let mut store = h.open();
        append_all(
            &mut store,
            &[
                started("par", 3, s0, 1, 10),
                started("par", 5, s0, 1, 20),
                started("ams", 2, s0, 1, 30),
                // A late entry of an older run does not lower the fence.
                finished("par", 3, s0, 1, 40, true),
            ],
        );
        assert_eq!(store.highest_run_epoch(&site("par")).unwrap(), Some(5));
    }
    let store = h.open();
    assert_eq!(store.highest_run_epoch(&site("par")).unwrap(), Some(5));
    assert_eq!(store.highest_run_epoch(&site("ams")).unwrap(), Some(2));
    assert_eq!(store.highest_run_epoch(&site("fra")).unwrap(), None);
}
