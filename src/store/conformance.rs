//! The behaviour every [`Storage`] must have, written once and run against each
//! implementation. A harness opens the same backing state again and again, so "reopen" means
//! dropping a store and opening a new one on the same directory (or memory).

use super::{MemoryStore, SqliteStore, Storage, StoreError, StoredVerdict};
use crate::config::{Fleet, Node, Roles, SingleVantage, Site, SiteKind, Timing, Watch};
use crate::core::types::{Accepted, Ballot, Durable, NodeId, Outcome, SiteId, Value, Verdict};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

trait Harness {
    type S: Storage;
    /// Opens the harness's one backing state; every call sees what earlier stores saved.
    fn open(&mut self) -> Self::S;
}

struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    fn new() -> Self {
        SqliteHarness {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

impl Harness for SqliteHarness {
    type S = SqliteStore;
    fn open(&mut self) -> SqliteStore {
        SqliteStore::open(self.dir.path()).expect("open sqlite store")
    }
}

#[derive(Default)]
struct MemoryHarness {
    disk: MemoryStore,
}

impl Harness for MemoryHarness {
    type S = MemoryStore;
    fn open(&mut self) -> MemoryStore {
        self.disk.clone()
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::SqliteHarness::new()) } )*
        }
        mod memory {
            $( #[test] fn $name() { super::$name(super::MemoryHarness::default()) } )*
        }
    };
}

/// The pipeline journal part of the suite.
mod journal;
mod lock;
mod retention;
mod runs;

conformance!(
    an_empty_store_has_no_state,
    durable_round_trips_across_reopen,
    save_durable_refuses_a_lower_promised_ballot_and_leaves_the_stored_one,
    an_equal_ballot_with_a_new_accepted_value_is_allowed,
    a_higher_ballot_replaces_the_stored_state,
    record_verdict_is_idempotent_on_site_and_slot,
    record_verdict_refuses_a_different_value_for_a_stored_slot,
    verdicts_survive_reopen,
    verdicts_are_newest_first_with_limit_and_site_filter,
    latest_verdicts_holds_the_highest_slot_of_each_site,
    saving_the_same_fleet_twice_keeps_one_history_row,
    a_changed_fleet_adds_a_history_row_and_replaces_the_registry,
    returning_to_an_earlier_fleet_makes_it_current_without_a_new_history_row,
    the_newest_alarm_call_per_site_and_source_is_kept_across_reopen,
);

fn site(s: &str) -> SiteId {
    SiteId::from(s)
}

fn ballot(epoch: u64, proposer: &str) -> Ballot {
    Ballot {
        epoch,
        proposer: NodeId::from(proposer),
    }
}

fn durable(promised: Ballot, accepted: Option<(u64, Ballot)>) -> Durable {
    Durable {
        accepted: accepted.map(|(slot, ballot)| Accepted {
            slot,
            value: Value {
                outcome: Outcome::of_slot(slot),
                epoch: ballot.epoch,
                leader: ballot.proposer.clone(),
            },
            ballot,
        }),
        promised,
    }
}

fn verdict(s: &str, slot: u64, epoch: u64, leader: &str) -> Verdict {
    Verdict {
        site: site(s),
        slot,
        value: Value {
            outcome: Outcome::of_slot(slot),
            epoch,
            leader: NodeId::from(leader),
        },
    }
}

fn slots(vs: &[StoredVerdict]) -> Vec<(String, u64)> {
    vs.iter()
        .map(|v| (v.verdict.site.to_string(), v.verdict.slot))
        .collect()
}

/// A fleet built by hand: two data sites and a witness; `variant` changes the text, the
/// timing and the membership so that a second save has something to replace.
fn fleet(variant: u32) -> Fleet {
    let source = format!("# fleet variant {variant}\n");
    let hash: String = Sha256::digest(source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let node = |id: &str, site: &str, port: u16, bind: bool| Node {
        id: NodeId::from(id),
        site: SiteId::from(site),
        roles: Roles {
            indicator: site != "wit",
            pinger: true,
            voter: port % 2 == 0,
        },
        mesh: format!("192.0.2.{}:{port}", port % 200).parse().unwrap(),
        mesh_bind: bind.then(|| format!("0.0.0.0:{port}").parse().unwrap()),
        api: format!("[2001:db8::1]:{}", port + 1000).parse().unwrap(),
    };
    let mut sites = vec![
        Site {
            id: site("par"),
            kind: SiteKind::Primary,
        },
        Site {
            id: site("ams"),
            kind: SiteKind::Backup,
        },
        Site {
            id: site("wit"),
            kind: SiteKind::Witness,
        },
    ];
    let mut nodes = vec![
        node("par-1", "par", 7000, false),
        node("ams-1", "ams", 7001, true),
        node("wit-1", "wit", 7002, false),
    ];
    let mut watches = vec![
        Watch {
            site: site("par"),
            by: vec![site("ams"), site("wit")],
            single_vantage: SingleVantage::Refuse,
            plan: None,
        },
        Watch {
            site: site("ams"),
            by: vec![site("par"), site("wit")],
            single_vantage: SingleVantage::Manual,
            plan: None,
        },
    ];
    if variant > 0 {
        sites.push(Site {
            id: site("fra"),
            kind: SiteKind::Witness,
        });
        sites.swap(0, 1);
        nodes.remove(0);
        nodes.push(node("fra-1", "fra", 7100 + variant as u16, true));
        watches[0].by.push(site("fra"));
        watches.pop();
    }
    Fleet {
        timing: Timing {
            probe_interval: Duration::from_micros(250 * u64::from(variant + 1)),
            probe_timeout: Duration::from_millis(150),
            retries: 3 + variant,
            vote_timeout: Duration::from_secs(2),
            max_vote_rounds: 5,
            hold_down: Duration::from_secs(3600),
            revote_after: Duration::from_secs(30),
            status_interval: Duration::from_secs(1),
        },
        sites,
        nodes,
        watches,
        api: Default::default(),
        service: Default::default(),
        notify: Vec::new(),
        alarm_sources: Vec::new(),
        hash,
        source,
    }
}

fn an_empty_store_has_no_state(mut h: impl Harness) {
    let s = h.open();
    assert!(s.load_durable().unwrap().is_empty());
    assert!(s.verdicts(None, 10).unwrap().is_empty());
    assert!(s.latest_verdicts().unwrap().is_empty());
    assert_eq!(s.fleet_hash().unwrap(), None);
    assert_eq!(s.load_fleet().unwrap(), None);
    assert!(s.fleet_history().unwrap().is_empty());
}

fn durable_round_trips_across_reopen(mut h: impl Harness) {
    let mut s = h.open();
    let par = durable(ballot(7, "ams-1"), Some((2, ballot(6, "wit-1"))));
    let ams = durable(ballot(3, "par-1"), None);
    s.save_durable(&site("par"), &par).unwrap();
    s.save_durable(&site("ams"), &ams).unwrap();
    drop(s);

    let s = h.open();
    let expected = BTreeMap::from([(site("par"), par), (site("ams"), ams)]);
    assert_eq!(s.load_durable().unwrap(), expected);
}

fn save_durable_refuses_a_lower_promised_ballot_and_leaves_the_stored_one(mut h: impl Harness) {
    let mut s = h.open();
    let stored = durable(ballot(5, "par-2"), Some((0, ballot(5, "par-2"))));
    s.save_durable(&site("ams"), &stored).unwrap();

    for lower in [ballot(4, "zzz"), ballot(5, "par-1"), Ballot::zero()] {
        let attempt = durable(lower.clone(), None);
        match s.save_durable(&site("ams"), &attempt) {
            Err(StoreError::EpochRegression {
                site: at,
                stored: was,
                attempted,
            }) => {
                assert_eq!(at, site("ams"));
                assert_eq!(was, stored.promised);
                assert_eq!(attempted, lower);
            }
            other => panic!("a lower ballot {lower:?} was not refused: {other:?}"),
        }
    }
    drop(s);
    let s = h.open();
    assert_eq!(s.load_durable().unwrap()[&site("ams")], stored);
}

fn an_equal_ballot_with_a_new_accepted_value_is_allowed(mut h: impl Harness) {
    let mut s = h.open();
    let promised = ballot(9, "wit-1");
    s.save_durable(&site("par"), &durable(promised.clone(), None))
        .unwrap();
    let accepted = durable(promised.clone(), Some((4, promised.clone())));
    s.save_durable(&site("par"), &accepted).unwrap();
    drop(s);
    let s = h.open();
    assert_eq!(s.load_durable().unwrap()[&site("par")], accepted);
}

fn a_higher_ballot_replaces_the_stored_state(mut h: impl Harness) {
    let mut s = h.open();
    s.save_durable(
        &site("par"),
        &durable(ballot(2, "ams-1"), Some((0, ballot(2, "ams-1")))),
    )
    .unwrap();
    let newer = durable(ballot(2, "wit-1"), Some((1, ballot(2, "wit-1"))));
    s.save_durable(&site("par"), &newer).unwrap();
    assert_eq!(s.load_durable().unwrap()[&site("par")], newer);
    // A later slot starts with nothing accepted; that must clear the columns, not keep them.
    let cleared = durable(ballot(3, "ams-1"), None);
    s.save_durable(&site("par"), &cleared).unwrap();
    drop(s);
    let s = h.open();
    assert_eq!(s.load_durable().unwrap()[&site("par")], cleared);
}

fn record_verdict_is_idempotent_on_site_and_slot(mut h: impl Harness) {
    let mut s = h.open();
    let v = verdict("par", 0, 4, "ams-1");
    assert!(s.record_verdict(&v, 1_000).unwrap());
    assert!(!s.record_verdict(&v, 2_000).unwrap());
    let stored = s.verdicts(None, 10).unwrap();
    assert_eq!(
        stored,
        vec![StoredVerdict {
            verdict: v,
            learned_at_unix_ms: 1_000
        }]
    );
}

fn record_verdict_refuses_a_different_value_for_a_stored_slot(mut h: impl Harness) {
    let mut s = h.open();
    let v = verdict("par", 2, 8, "ams-1");
    s.record_verdict(&v, 1_000).unwrap();
    for other in [
        verdict("par", 2, 9, "ams-1"),
        verdict("par", 2, 8, "wit-1"),
        Verdict {
            value: Value {
                outcome: Outcome::Up,
                ..v.value.clone()
            },
            ..v.clone()
        },
    ] {
        let err = s.record_verdict(&other, 2_000).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }
    drop(s);
    let s = h.open();
    let stored = s.verdicts(Some(&site("par")), 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].verdict, v);
    assert_eq!(stored[0].learned_at_unix_ms, 1_000);
}

fn verdicts_survive_reopen(mut h: impl Harness) {
    let mut s = h.open();
    s.record_verdict(&verdict("par", 0, 1, "ams-1"), 10)
        .unwrap();
    s.record_verdict(&verdict("par", 1, 2, "wit-1"), 20)
        .unwrap();
    drop(s);
    let s = h.open();
    assert_eq!(
        slots(&s.verdicts(None, 10).unwrap()),
        [("par".into(), 1), ("par".into(), 0)]
    );
}

fn verdicts_are_newest_first_with_limit_and_site_filter(mut h: impl Harness) {
    let mut s = h.open();
    s.record_verdict(&verdict("par", 0, 1, "ams-1"), 100)
        .unwrap();
    s.record_verdict(&verdict("ams", 0, 1, "par-1"), 200)
        .unwrap();
    s.record_verdict(&verdict("par", 1, 2, "ams-1"), 300)
        .unwrap();
    // Learned late by catch-up: still older than slot 1 for its site.
    s.record_verdict(&verdict("ams", 1, 3, "par-1"), 400)
        .unwrap();
    s.record_verdict(&verdict("ams", 2, 4, "par-1"), 400)
        .unwrap();
    s.record_verdict(&verdict("wit", 0, 1, "par-1"), 400)
        .unwrap();

    assert_eq!(
        slots(&s.verdicts(None, 100).unwrap()),
        [
            ("ams".into(), 2),
            ("ams".into(), 1),
            ("wit".into(), 0),
            ("par".into(), 1),
            ("ams".into(), 0),
            ("par".into(), 0),
        ]
    );
    assert_eq!(
        slots(&s.verdicts(None, 2).unwrap()),
        [("ams".into(), 2), ("ams".into(), 1)]
    );
    assert_eq!(
        slots(&s.verdicts(Some(&site("par")), 100).unwrap()),
        [("par".into(), 1), ("par".into(), 0)]
    );
    assert_eq!(
        slots(&s.verdicts(Some(&site("ams")), 1).unwrap()),
        [("ams".into(), 2)]
    );
    assert!(s.verdicts(None, 0).unwrap().is_empty());
    assert!(s.verdicts(Some(&site("nowhere")), 5).unwrap().is_empty());
    assert_eq!(s.verdicts(None, usize::MAX).unwrap().len(), 6);
}

fn latest_verdicts_holds_the_highest_slot_of_each_site(mut h: impl Harness) {
    let mut s = h.open();
    // The higher slot is learned first (clock skew, catch-up): slot order still wins.
    s.record_verdict(&verdict("par", 3, 7, "ams-1"), 100)
        .unwrap();
    s.record_verdict(&verdict("par", 2, 5, "ams-1"), 900)
        .unwrap();
    s.record_verdict(&verdict("ams", 0, 1, "par-1"), 50)
        .unwrap();
    let latest = s.latest_verdicts().unwrap();
    assert_eq!(
        latest,
        vec![
            StoredVerdict {
                verdict: verdict("ams", 0, 1, "par-1"),
                learned_at_unix_ms: 50
            },
            StoredVerdict {
                verdict: verdict("par", 3, 7, "ams-1"),
                learned_at_unix_ms: 100
            },
        ]
    );
}

fn saving_the_same_fleet_twice_keeps_one_history_row(mut h: impl Harness) {
    let mut s = h.open();
    let f = fleet(0);
    s.save_fleet(&f, 1_000).unwrap();
    s.save_fleet(&f, 2_000).unwrap();
    drop(s);
    let s = h.open();
    let history = s.fleet_history().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].hash, f.hash);
    assert_eq!(history[0].text, f.source);
    assert_eq!(history[0].loaded_at_unix_ms, 1_000);
    assert_eq!(s.fleet_hash().unwrap().as_deref(), Some(f.hash.as_str()));
    assert_eq!(s.load_fleet().unwrap(), Some(f));
}

fn a_changed_fleet_adds_a_history_row_and_replaces_the_registry(mut h: impl Harness) {
    let mut s = h.open();
    let (old, new) = (fleet(0), fleet(1));
    assert_ne!(old.hash, new.hash);
    s.save_fleet(&old, 1_000).unwrap();
    s.save_fleet(&new, 2_000).unwrap();
    drop(s);
    let s = h.open();
    let hashes: Vec<String> = s
        .fleet_history()
        .unwrap()
        .into_iter()
        .map(|v| v.hash)
        .collect();
    assert_eq!(hashes, [old.hash, new.hash.clone()]);
    assert_eq!(s.fleet_hash().unwrap(), Some(new.hash.clone()));
    // Equality covers every registry row: a site, node or watch left from the old fleet
    // (or a missing new one) would show here.
    assert_eq!(s.load_fleet().unwrap(), Some(new));
}

fn returning_to_an_earlier_fleet_makes_it_current_without_a_new_history_row(mut h: impl Harness) {
    let mut s = h.open();
    let (a, b) = (fleet(0), fleet(2));
    s.save_fleet(&a, 1_000).unwrap();
    s.save_fleet(&b, 2_000).unwrap();
    s.save_fleet(&a, 3_000).unwrap();
    let history = s.fleet_history().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(s.fleet_hash().unwrap(), Some(a.hash.clone()));
    assert_eq!(s.load_fleet().unwrap(), Some(a));
}

fn the_newest_alarm_call_per_site_and_source_is_kept_across_reopen(mut h: impl Harness) {
    use crate::wire::{Alarm, AlarmSeverity};
    let alarm = |source: &str, raised: bool, at: i64| Alarm {
        site: site("par"),
        source: source.to_string(),
        severity: AlarmSeverity::Critical,
        reason: "smoke".into(),
        raised,
        set_at_unix_ms: at,
        by: NodeId::from("ams-1"),
    };
    let mut s = h.open();
    assert!(s.alarms().unwrap().is_empty());
    assert!(s.save_alarm(&alarm("fire", true, 10)).unwrap());
    assert!(s.save_alarm(&alarm("power", true, 5)).unwrap());
    // An older call of the same source is not news; a newer one replaces it.
    assert!(!s.save_alarm(&alarm("fire", false, 9)).unwrap());
    assert!(!s.save_alarm(&alarm("fire", false, 10)).unwrap());
    assert!(s.save_alarm(&alarm("fire", false, 11)).unwrap());
    drop(s);
    let s = h.open();
    assert_eq!(
        s.alarms().unwrap(),
        vec![alarm("fire", false, 11), alarm("power", true, 5)]
    );
}
