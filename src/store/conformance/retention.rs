//! Retention as every [`Storage`] must carry it out: old verdicts, finished runs and fleet
//! versions go; the newest verdict and run of each site, every run that has not finished
//! and the running fleet version stay, and what stays reads back as before.

use super::{fleet, verdict, Harness, MemoryHarness, SqliteHarness};
use crate::core::pipeline::{JournalEntry, JournalKind, Phase, RunOutcome, StepRef};
use crate::core::replica::RunRecord;
use crate::core::types::{Ballot, NodeId, SiteId, WallTime};
use crate::store::retention::Prune;
use crate::store::{Pruned, Retention, Storage};

conformance!(
    old_verdicts_go_but_the_newest_of_each_site_stays,
    old_finished_runs_go_with_their_journal_and_register,
    a_run_that_has_not_finished_survives_retention_and_still_resumes,
    prune_skips_a_run_that_has_not_finished_even_when_named,
    old_fleet_versions_go_but_the_running_one_stays,
);

const DAY_MS: i64 = 24 * 3600 * 1000;
/// "Now" for these tests: day 1000 after the epoch.
const NOW_MS: i64 = 1_000 * DAY_MS;

fn days_ago_ms(days: i64) -> i64 {
    NOW_MS - days * DAY_MS
}

fn days_ago(days: i64) -> WallTime {
    WallTime::from_micros(days_ago_ms(days) as u64 * 1000)
}

fn keep_newest_one() -> Retention {
    Retention::days(90, 1).unwrap()
}

fn entry(site: &str, run: u64, days: i64, kind: JournalKind) -> JournalEntry {
    JournalEntry {
        site: SiteId::from(site),
        epoch: run,
        term: run,
        step: StepRef::new(Phase::Step, 0),
        name: "s0".into(),
        attempt: 1,
        at: days_ago(days),
        kind,
    }
}

fn finished_outcome() -> JournalKind {
    JournalKind::RunFinished {
        outcome: RunOutcome::Succeeded {
            continued: Vec::new(),
            post_failed: Vec::new(),
        },
    }
}

/// A run register of `site` with one started step, finished or not.
fn run(site: &str, run: u64, days: i64, finished: bool) -> RunRecord {
    let b = Ballot {
        epoch: run,
        proposer: NodeId::from("b1"),
    };
    let mut journal = vec![entry(site, run, days, JournalKind::Started)];
    if finished {
        journal.push(entry(site, run, days, finished_outcome()));
    }
    RunRecord {
        site: SiteId::from(site),
        start_at: days_ago(days),
        ..super::runs::record(run, b, journal)
    }
}

fn keys(records: &[RunRecord]) -> Vec<(String, u64)> {
    records
        .iter()
        .map(|r| (r.site.to_string(), r.run))
        .collect()
}

fn old_verdicts_go_but_the_newest_of_each_site_stays(mut h: impl Harness) {
    let mut store = h.open();
    for (slot, age) in [(0, 300), (1, 200), (2, 10)] {
        store
            .record_verdict(&verdict("a", slot, slot + 1, "b1"), days_ago_ms(age))
            .unwrap();
    }
    // A quiet site whose one verdict is a year old.
    store
        .record_verdict(&verdict("b", 0, 1, "a1"), days_ago_ms(365))
        .unwrap();
    let pruned = store.apply_retention(&keep_newest_one(), NOW_MS).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            verdicts: 2,
            runs: 0,
            fleet_versions: 0
        }
    );
    drop(store);
    let store = h.open();
    let left = super::slots(&store.verdicts(None, 100).unwrap());
    assert_eq!(left, vec![("a".to_string(), 2), ("b".to_string(), 0)]);
    assert_eq!(store.latest_verdicts().unwrap().len(), 2);
}

fn old_finished_runs_go_with_their_journal_and_register(mut h: impl Harness) {
    let mut store = h.open();
    for r in [
        run("a", 3, 400, true),
        run("a", 5, 300, true),
        run("a", 8, 5, true),
    ] {
        store.save_run(&r).unwrap();
    }
    // The newest run of a site stays whatever its age: it holds the site's highest epoch.
    store.save_run(&run("b", 2, 500, true)).unwrap();
    let pruned = store.apply_retention(&keep_newest_one(), NOW_MS).unwrap();
    assert_eq!(pruned.runs, 2);
    drop(store);
    let store = h.open();
    assert_eq!(
        keys(&store.run_records().unwrap()),
        vec![("a".to_string(), 8), ("b".to_string(), 2)]
    );
    let a = SiteId::from("a");
    assert!(store.journal(&a, 3).unwrap().is_empty());
    assert!(store.journal(&a, 5).unwrap().is_empty());
    assert_eq!(store.journal(&a, 8).unwrap().len(), 2);
    assert_eq!(store.runs(10).unwrap().len(), 2);
    assert_eq!(store.highest_run_epoch(&a).unwrap(), Some(8));
    assert_eq!(
        store.highest_run_epoch(&SiteId::from("b")).unwrap(),
        Some(2)
    );
}

fn a_run_that_has_not_finished_survives_retention_and_still_resumes(mut h: impl Harness) {
    let mut store = h.open();
    // Interrupted a year ago (the node was down since), then newer runs finished.
    let interrupted = run("a", 2, 365, false);
    store.save_run(&interrupted).unwrap();
    store.save_run(&run("a", 4, 300, true)).unwrap();
    store.save_run(&run("a", 6, 200, true)).unwrap();
    let pruned = store.apply_retention(&keep_newest_one(), NOW_MS).unwrap();
    assert_eq!(
        pruned.runs, 1,
        "only run 4: run 6 is the newest, run 2 unfinished"
    );
    drop(store);
    let store = h.open();
    let records = store.run_records().unwrap();
    assert_eq!(
        keys(&records),
        vec![("a".to_string(), 2), ("a".to_string(), 6)]
    );
    assert_eq!(records[0], interrupted, "register and journal as they were");
}

fn prune_skips_a_run_that_has_not_finished_even_when_named(mut h: impl Harness) {
    let mut store = h.open();
    let open = run("a", 2, 365, false);
    store.save_run(&open).unwrap();
    let pruned = store
        .prune(&Prune {
            runs: vec![(SiteId::from("a"), 2)],
            ..Prune::default()
        })
        .unwrap();
    assert_eq!(pruned, Pruned::default());
    assert_eq!(store.run_records().unwrap(), vec![open]);
}

fn old_fleet_versions_go_but_the_running_one_stays(mut h: impl Harness) {
    let mut store = h.open();
    store.save_fleet(&fleet(1), days_ago_ms(400)).unwrap();
    store.save_fleet(&fleet(2), days_ago_ms(300)).unwrap();
    store.save_fleet(&fleet(3), days_ago_ms(200)).unwrap();
    // Back to the oldest version: it runs, so it stays however old.
    store.save_fleet(&fleet(1), days_ago_ms(100)).unwrap();
    let pruned = store.apply_retention(&keep_newest_one(), NOW_MS).unwrap();
    assert_eq!(
        pruned.fleet_versions, 1,
        "version 2; 3 is the newest, 1 runs"
    );
    drop(store);
    let store = h.open();
    let hashes: Vec<String> = store
        .fleet_history()
        .unwrap()
        .into_iter()
        .map(|v| v.hash)
        .collect();
    assert_eq!(hashes, vec![fleet(1).hash, fleet(3).hash]);
    assert_eq!(store.load_fleet().unwrap(), Some(fleet(1)));
}
