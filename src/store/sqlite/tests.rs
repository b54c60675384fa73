//! SQLite-specific behaviour: opening, schema versions and migrations, and rows that the
//! generic conformance suite cannot produce.

use super::*;
use crate::core::pipeline::{JournalKind, Phase, StepRef};
use crate::core::types::WallTime;

#[test]
fn opening_a_missing_directory_creates_it_at_the_current_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a").join("b");
    let store = SqliteStore::open(&dir).unwrap();
    assert_eq!(store.path(), dir.join(FILE_NAME));
    assert_eq!(user_version(&store.conn).unwrap(), SCHEMA_VERSION);
    let mode: String = store
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = store
        .conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
}

#[test]
fn reopening_does_not_rerun_migrations() {
    let tmp = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(tmp.path()).unwrap());
    let store = SqliteStore::open(tmp.path()).unwrap();
    assert_eq!(user_version(&store.conn).unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_database_from_a_newer_schema_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x INTEGER);")
            .unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = fs::read(&path).unwrap();
    match SqliteStore::open(tmp.path()) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn a_file_that_is_not_sqlite_gives_an_open_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    fs::write(&path, &garbage).unwrap();
    let err = SqliteStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a database"), "{msg}");
    assert_eq!(fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_directory_path_that_is_a_file_gives_an_open_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

#[test]
fn a_row_with_a_partial_accepted_value_is_reported_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(tmp.path()).unwrap();
    // The CHECK constraint guards writes; an edited file can still bypass it.
    store
        .conn
        .execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO durable (site, promised_epoch, promised_node, accepted_slot)
             VALUES ('par', 3, 'n1', 0);",
        )
        .unwrap();
    let err = store.load_durable().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[test]
fn epochs_beyond_i64_are_refused_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(tmp.path()).unwrap();
    let d = Durable {
        promised: Ballot {
            epoch: u64::MAX,
            proposer: NodeId::from("n1"),
        },
        accepted: None,
    };
    assert!(store.save_durable(&SiteId::from("par"), &d).is_err());
    assert!(store.load_durable().unwrap().is_empty());
}

fn started(site: &str, epoch: u64, index: usize, at_us: u64) -> JournalEntry {
    JournalEntry {
        site: SiteId::from(site),
        epoch,
        term: epoch,
        step: StepRef::new(Phase::Step, index),
        name: format!("step-{index}"),
        attempt: 1,
        at: WallTime::from_micros(at_us),
        kind: JournalKind::Started,
    }
}

#[test]
fn a_v1_database_is_upgraded_in_place_and_keeps_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    {
        // A file as the v1 build left it: only the first migration, with data in it.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO durable (site, promised_epoch, promised_node) VALUES ('par', 4, 'n1');
             INSERT INTO verdicts (site, slot, outcome, epoch, leader, learned_at_ms)
             VALUES ('par', 0, 'down', 4, 'n1', 1000);
             INSERT INTO fleet_versions (hash, text, loaded_at_ms) VALUES ('abc', 'fleet', 5);
             INSERT INTO fleet_current (id, hash) VALUES (1, 'abc');",
        )
        .unwrap();
    }
    let mut store = SqliteStore::open(tmp.path()).unwrap();
    assert_eq!(SCHEMA_VERSION, 7);
    assert!(store.load_locks().unwrap().is_empty());
    assert_eq!(user_version(&store.conn).unwrap(), SCHEMA_VERSION);

    let durable = store.load_durable().unwrap();
    assert_eq!(durable[&SiteId::from("par")].promised.epoch, 4);
    assert!(durable[&SiteId::from("par")].accepted.is_none());
    let verdicts = store.verdicts(None, 10).unwrap();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].verdict.value.outcome, Outcome::Down);
    assert_eq!(verdicts[0].learned_at_unix_ms, 1000);
    assert_eq!(store.fleet_hash().unwrap().as_deref(), Some("abc"));
    assert_eq!(store.fleet_history().unwrap().len(), 1);

    let par = SiteId::from("par");
    assert!(store.journal(&par, 4).unwrap().is_empty());
    assert_eq!(store.highest_run_epoch(&par).unwrap(), None);
    let e = started("par", 4, 0, 7);
    store.append_journal(&e).unwrap();
    drop(store);

    let store = SqliteStore::open(tmp.path()).unwrap();
    assert_eq!(user_version(&store.conn).unwrap(), SCHEMA_VERSION);
    assert_eq!(store.journal(&par, 4).unwrap(), vec![e]);
    assert_eq!(store.load_durable().unwrap().len(), 1);
}

#[test]
fn a_journal_row_that_does_not_decode_is_reported_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(tmp.path()).unwrap();
    store
        .conn
        .execute_batch(
            "INSERT INTO journal (site, epoch, phase, step_index, name, attempt, kind, at_us, entry)
             VALUES ('par', 1, 'step', 0, 'x', 1, 'started', 0, 'not json');",
        )
        .unwrap();
    let err = store.journal(&SiteId::from("par"), 1).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[test]
fn journal_epochs_beyond_i64_are_refused_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(tmp.path()).unwrap();
    assert!(store
        .append_journal(&started("par", u64::MAX, 0, 0))
        .is_err());
    assert!(store.runs(10).unwrap().is_empty());
}

#[test]
fn the_shipped_fleet_files_round_trip_with_their_failover_plans() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fleet files in {}", dir.display());
    for file in files {
        let fleet = Fleet::parse(&fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let tmp = tempfile::tempdir().unwrap();
        SqliteStore::open(tmp.path())
            .unwrap()
            .save_fleet(&fleet, 1)
            .unwrap();
        let loaded = SqliteStore::open(tmp.path()).unwrap().load_fleet().unwrap();
        assert_eq!(loaded.as_ref(), Some(&fleet), "{}", file.display());
    }
}

#[test]
fn a_damaged_file_is_refused_naming_the_file_and_the_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    {
        let mut store = SqliteStore::open(tmp.path()).unwrap();
        for slot in 0..400 {
            let v = Verdict {
                site: SiteId::from("par"),
                slot,
                value: Value {
                    outcome: Outcome::Down,
                    epoch: slot + 1,
                    leader: NodeId::from("n1"),
                },
            };
            store.record_verdict(&v, 1_000 + slot as i64).unwrap();
        }
    }
    assert!(
        !tmp.path().join(format!("{FILE_NAME}-wal")).exists(),
        "closing checkpoints the WAL into the main file"
    );
    // Scribble over the last page (a b-tree page of the verdicts), as a bad disk sector or a
    // stray write would.
    let mut bytes = fs::read(&path).unwrap();
    let page = 4096;
    assert!(bytes.len() >= 4 * page, "{} bytes", bytes.len());
    let last = bytes.len() - page;
    for (i, b) in bytes[last..].iter_mut().enumerate() {
        *b = (i * 31 + 7) as u8;
    }
    fs::write(&path, &bytes).unwrap();

    let err = SqliteStore::open(tmp.path()).unwrap_err();
    let StoreError::Damaged {
        path: named,
        problems,
    } = &err
    else {
        panic!("expected Damaged, got {err:?}");
    };
    assert_eq!(named, &path);
    assert!(!problems.is_empty());
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("backup"), "{msg}");
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a damaged file is left as it was"
    );
}

#[cfg(unix)]
#[test]
fn the_store_directory_and_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("n1");
    let mut store = SqliteStore::open(&dir).unwrap();
    store
        .save_durable(
            &SiteId::from("par"),
            &Durable {
                promised: Ballot {
                    epoch: 1,
                    proposer: NodeId::from("n1"),
                },
                accepted: None,
            },
        )
        .unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&tmp.path().join("data")), 0o700);
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.join(format!("{FILE_NAME}{suffix}"));
        assert!(file.exists(), "{}", file.display());
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[cfg(unix)]
#[test]
fn an_existing_store_readable_by_others_is_narrowed_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(tmp.path()).unwrap());
    let path = tmp.path().join(FILE_NAME);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    drop(SqliteStore::open(tmp.path()).unwrap());
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_v5_journal_is_kept_when_v6_adds_the_fence_phases() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    let old = started("par", 4, 0, 7);
    {
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..5] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute(
            "INSERT INTO journal (site, epoch, phase, step_index, name, attempt, kind, at_us, entry)
             VALUES ('par', 4, 'step', 0, ?1, 1, 'started', 7, ?2)",
            rusqlite::params![old.name, serde_json::to_string(&old).unwrap()],
        )
        .unwrap();
    }
    let mut store = SqliteStore::open(tmp.path()).unwrap();
    assert_eq!(user_version(&store.conn).unwrap(), SCHEMA_VERSION);
    let par = SiteId::from("par");
    let fence = JournalEntry {
        step: StepRef::new(Phase::Fence, 0),
        ..started("par", 4, 0, 8)
    };
    let confirm = JournalEntry {
        step: StepRef::new(Phase::Confirm, 0),
        ..started("par", 4, 0, 9)
    };
    store.append_journal(&fence).unwrap();
    store.append_journal(&confirm).unwrap();
    assert_eq!(store.journal(&par, 4).unwrap(), vec![old, fence, confirm]);
}
