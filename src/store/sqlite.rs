//! The SQLite store: one file per node (`DIR/quorate.sqlite`), WAL with `synchronous=FULL` so
//! that every committed transaction has been fsynced when `commit` returns, one transaction per
//! save, and forward-only schema migrations numbered by `PRAGMA user_version`. It never opens
//! a database written by a newer schema, and never writes before it knows the file is its own.

use super::{
    check_promise, conflicting_verdict, FleetVersion, OpenErrorSource, RunSummary, Storage,
    StoreError, StoredVerdict,
};
use crate::config::Fleet;
use crate::core::oplock::LockState;
use crate::core::pipeline::JournalEntry;
use crate::core::replica::RunRecord;
use crate::core::types::{Accepted, Ballot, Durable, NodeId, Outcome, SiteId, Value, Verdict};
use crate::wire::{Alarm, MaintenanceWindow};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod files;
mod journal;
mod lock;
mod registry;
mod retention;
mod runs;
#[cfg(test)]
mod tests;

/// The database file inside the store directory.
pub const FILE_NAME: &str = "quorate.sqlite";

/// How long a statement waits for a lock held by another connection (a backup tool, an
/// operator's `sqlite3` shell) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Forward-only migrations: entry `i` takes the schema from version `i` to `i + 1`. Never edit
/// a released entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // v1: voter state, verdicts, registry.
    "
    CREATE TABLE durable (
        site                 TEXT PRIMARY KEY NOT NULL,
        promised_epoch       INTEGER NOT NULL,
        promised_node        TEXT NOT NULL,
        accepted_slot        INTEGER,
        accepted_epoch       INTEGER,
        accepted_proposer    TEXT,
        accepted_outcome     TEXT CHECK (accepted_outcome IN ('down', 'up')),
        accepted_value_epoch INTEGER,
        accepted_leader      TEXT,
        CHECK ((accepted_slot IS NULL) = (accepted_epoch IS NULL)
           AND (accepted_slot IS NULL) = (accepted_proposer IS NULL)
           AND (accepted_slot IS NULL) = (accepted_outcome IS NULL)
           AND (accepted_slot IS NULL) = (accepted_value_epoch IS NULL)
           AND (accepted_slot IS NULL) = (accepted_leader IS NULL))
    ) STRICT;

    CREATE TABLE verdicts (
        site          TEXT NOT NULL,
        slot          INTEGER NOT NULL,
        outcome       TEXT NOT NULL CHECK (outcome IN ('down', 'up')),
        epoch         INTEGER NOT NULL,
        leader        TEXT NOT NULL,
        learned_at_ms INTEGER NOT NULL,
        PRIMARY KEY (site, slot)
    ) STRICT;
    CREATE INDEX verdicts_newest ON verdicts (learned_at_ms DESC, slot DESC, site);

    CREATE TABLE fleet_versions (
        hash         TEXT PRIMARY KEY NOT NULL,
        text         TEXT NOT NULL,
        loaded_at_ms INTEGER NOT NULL
    ) STRICT;
    -- Which history entry is running: a fleet may return to an older hash.
    CREATE TABLE fleet_current (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        hash TEXT NOT NULL REFERENCES fleet_versions (hash)
    ) STRICT;

    -- The current fleet, rowid keeping the file's order.
    CREATE TABLE sites (
        id   TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('primary', 'backup', 'witness'))
    ) STRICT;
    CREATE TABLE nodes (
        id        TEXT PRIMARY KEY NOT NULL,
        site      TEXT NOT NULL,
        roles     TEXT NOT NULL,
        mesh      TEXT NOT NULL,
        mesh_bind TEXT,
        api       TEXT NOT NULL
    ) STRICT;
    CREATE TABLE watches (
        site           TEXT PRIMARY KEY NOT NULL,
        by_sites       TEXT NOT NULL,
        single_vantage TEXT NOT NULL CHECK (single_vantage IN ('refuse', 'manual'))
    ) STRICT;
    CREATE TABLE timing (
        key   TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    ) STRICT;
    ",
    // v2: the failover run journal, and which watches have a failover plan. The key fields are columns; `entry` holds the whole
    // JournalEntry as JSON and is what reads return, so new entry fields need no migration.
    "
    CREATE TABLE journal (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        site       TEXT NOT NULL,
        epoch      INTEGER NOT NULL,
        phase      TEXT NOT NULL
                   CHECK (phase IN ('precheck', 'step', 'post', 'compensation')),
        step_index INTEGER NOT NULL,
        name       TEXT NOT NULL,
        attempt    INTEGER NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('started', 'finished', 'run_finished')),
        at_us      INTEGER NOT NULL,
        entry      TEXT NOT NULL,
        UNIQUE (site, epoch, phase, step_index, attempt, kind)
    ) STRICT;
    -- Which watches of the current fleet carry a failover plan; the plan itself is read back
    -- from the fleet text. v1 had no plans.
    ALTER TABLE watches ADD COLUMN has_plan INTEGER NOT NULL DEFAULT 0 CHECK (has_plan IN (0, 1));

    -- A run has one outcome.
    CREATE UNIQUE INDEX journal_one_outcome ON journal (site, epoch) WHERE kind = 'run_finished';
    ",
    // v3: each run's register in the electorate: the ballots that decide who may lead it, what
    // started it and when it may start. `record` is a RunRecord as JSON without its journal,
    // which stays in `journal`.
    "
    CREATE TABLE run_registers (
        site   TEXT NOT NULL,
        run    INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (site, run)
    ) STRICT;
    ",
    // v4: the newest maintenance call per site (until = 0: ended), shared across the fleet.
    "
    CREATE TABLE maintenance (
        site      TEXT PRIMARY KEY,
        until_ms  INTEGER NOT NULL,
        set_at_ms INTEGER NOT NULL
    ) STRICT;
    ",
    // v5: each site's operator lock as this member's acceptor holds it: the promised ballot
    // (columns, so that a lower one is refused in SQL terms too) and the whole `LockState` as
    // JSON (accepted and newest decided generation).
    "
    CREATE TABLE operator_lock (
        site           TEXT PRIMARY KEY NOT NULL,
        promised_epoch INTEGER NOT NULL,
        promised_node  TEXT NOT NULL,
        decided_gen    INTEGER NOT NULL,
        state          TEXT NOT NULL
    ) STRICT;
    ",
    // v6: fences and their confirmations are journaled too: the journal table is rebuilt with
    // the two new phases in its CHECK (SQLite cannot change a CHECK in place), same columns.
    "
    CREATE TABLE journal_v6 (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        site       TEXT NOT NULL,
        epoch      INTEGER NOT NULL,
        phase      TEXT NOT NULL
                   CHECK (phase IN ('precheck', 'fence', 'confirm', 'step', 'post', 'compensation')),
        step_index INTEGER NOT NULL,
        name       TEXT NOT NULL,
        attempt    INTEGER NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('started', 'finished', 'run_finished')),
        at_us      INTEGER NOT NULL,
        entry      TEXT NOT NULL,
        UNIQUE (site, epoch, phase, step_index, attempt, kind)
    ) STRICT;
    INSERT INTO journal_v6 (seq, site, epoch, phase, step_index, name, attempt, kind, at_us, entry)
        SELECT seq, site, epoch, phase, step_index, name, attempt, kind, at_us, entry FROM journal;
    DROP TABLE journal;
    ALTER TABLE journal_v6 RENAME TO journal;
    CREATE UNIQUE INDEX journal_one_outcome ON journal (site, epoch) WHERE kind = 'run_finished';
    ",
    // v7: the newest alarm call per (site, source), raised or cleared, shared across the
    // site's electorate. `record` is the whole `wire::Alarm` as JSON.
    "
    CREATE TABLE alarms (
        site      TEXT NOT NULL,
        source    TEXT NOT NULL,
        set_at_ms INTEGER NOT NULL,
        record    TEXT NOT NULL,
        PRIMARY KEY (site, source)
    ) STRICT;
    ",
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A node's durable state in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if missing, owner-only) `dir/quorate.sqlite`, checks its integrity and
    /// migrates it to the current schema. A file written by a newer schema, or one SQLite's
    /// integrity check finds damaged, is refused before anything is written to it.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let open_err = |source: OpenErrorSource| StoreError::Open {
            path: path.clone(),
            source,
        };
        let dir_existed = dir.is_dir();
        files::create_private_dir(dir).map_err(|e| open_err(e.into()))?;
        if !dir_existed {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(|e| open_err(e.into()))?;
            }
        }

        files::prepare_private_file(&path).map_err(|e| open_err(e.into()))?;
        let mut conn = Connection::open(&path).map_err(|e| open_err(e.into()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_err(e.into()))?;
        // Read before any pragma that writes, so a newer or foreign file is left untouched.
        // A file that is not SQLite fails here with "file is not a database".
        let found = user_version(&conn).map_err(|e| open_err(e.into()))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let problems = files::damage(&conn);
        if !problems.is_empty() {
            return Err(StoreError::Damaged { path, problems });
        }
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| open_err(e.into()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still durable with synchronous=FULL, only slower and blocking readers.
            tracing::warn!(path = %path.display(), journal_mode = %mode, "sqlite refused WAL");
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| open_err(e.into()))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| open_err(e.into()))?;
        match migrate(&mut conn) {
            Ok(()) => {}
            Err(MigrateError::TooNew(found)) => {
                return Err(StoreError::SchemaTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                })
            }
            Err(MigrateError::Sqlite(e)) => return Err(open_err(e.into())),
        }
        // SQLite syncs the directory for its journals but not for a newly created main file.
        sync_dir(dir).map_err(|e| open_err(e.into()))?;
        Ok(SqliteStore { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_txn(&mut self) -> Result<Transaction<'_>, StoreError> {
        // IMMEDIATE: take the write lock before reading what we compare against.
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

enum MigrateError {
    TooNew(i64),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated since we looked.
    let found = user_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::TooNew(found));
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        // user_version lives in the file header and commits with the transaction.
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for sync on every platform; Unix is where it matters.
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl Storage for SqliteStore {
    fn load_durable(&self) -> Result<BTreeMap<SiteId, Durable>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT site, promised_epoch, promised_node, accepted_slot, accepted_epoch,
                    accepted_proposer, accepted_outcome, accepted_value_epoch, accepted_leader
             FROM durable",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let (site, durable) = durable_from_row(row)?;
            out.insert(site, durable);
        }
        Ok(out)
    }

    fn save_durable(&mut self, site: &SiteId, d: &Durable) -> Result<(), StoreError> {
        let tx = self.write_txn()?;
        let stored: Option<Ballot> = tx
            .query_row(
                "SELECT promised_epoch, promised_node FROM durable WHERE site = ?1",
                [site.as_str()],
                |r| {
                    Ok(Ballot {
                        epoch: r.get(0)?,
                        proposer: NodeId::from(r.get::<_, String>(1)?),
                    })
                },
            )
            .optional()?;
        if let Some(stored) = &stored {
            // Dropping `tx` rolls back: nothing is written.
            check_promise(site, stored, &d.promised)?;
        }
        let a = d.accepted.as_ref();
        tx.execute(
            "INSERT INTO durable (site, promised_epoch, promised_node, accepted_slot,
                 accepted_epoch, accepted_proposer, accepted_outcome, accepted_value_epoch,
                 accepted_leader)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (site) DO UPDATE SET
                 promised_epoch = excluded.promised_epoch,
                 promised_node = excluded.promised_node,
                 accepted_slot = excluded.accepted_slot,
                 accepted_epoch = excluded.accepted_epoch,
                 accepted_proposer = excluded.accepted_proposer,
                 accepted_outcome = excluded.accepted_outcome,
                 accepted_value_epoch = excluded.accepted_value_epoch,
                 accepted_leader = excluded.accepted_leader",
            params![
                site.as_str(),
                d.promised.epoch,
                d.promised.proposer.as_str(),
                a.map(|a| a.slot),
                a.map(|a| a.ballot.epoch),
                a.map(|a| a.ballot.proposer.as_str()),
                a.map(|a| a.value.outcome.as_api_str()),
                a.map(|a| a.value.epoch),
                a.map(|a| a.value.leader.as_str()),
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn record_verdict(&mut self, v: &Verdict, learned_at_unix_ms: i64) -> Result<bool, StoreError> {
        let tx = self.write_txn()?;
        let stored = tx
            .query_row(
                "SELECT site, slot, outcome, epoch, leader, learned_at_ms
                 FROM verdicts WHERE site = ?1 AND slot = ?2",
                params![v.site.as_str(), v.slot],
                |r| Ok(stored_verdict_from_row(r)),
            )
            .optional()?
            .transpose()?;
        if let Some(stored) = stored {
            return if stored.verdict == *v {
                Ok(false)
            } else {
                Err(conflicting_verdict(&stored.verdict, v))
            };
        }
        tx.execute(
            "INSERT INTO verdicts (site, slot, outcome, epoch, leader, learned_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                v.site.as_str(),
                v.slot,
                v.value.outcome.as_api_str(),
                v.value.epoch,
                v.value.leader.as_str(),
                learned_at_unix_ms,
            ],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn verdicts(
        &self,
        site: Option<&SiteId>,
        limit: usize,
    ) -> Result<Vec<StoredVerdict>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let cols = "site, slot, outcome, epoch, leader, learned_at_ms";
        let mut out = Vec::new();
        match site {
            Some(site) => {
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT {cols} FROM verdicts WHERE site = ?1 ORDER BY slot DESC LIMIT ?2"
                ))?;
                let mut rows = stmt.query(params![site.as_str(), limit])?;
                while let Some(row) = rows.next()? {
                    out.push(stored_verdict_from_row(row)?);
                }
            }
            None => {
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT {cols} FROM verdicts
                     ORDER BY learned_at_ms DESC, slot DESC, site ASC LIMIT ?1"
                ))?;
                let mut rows = stmt.query([limit])?;
                while let Some(row) = rows.next()? {
                    out.push(stored_verdict_from_row(row)?);
                }
            }
        }
        Ok(out)
    }

    fn latest_verdicts(&self) -> Result<Vec<StoredVerdict>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT site, slot, outcome, epoch, leader, learned_at_ms FROM verdicts v
             WHERE slot = (SELECT MAX(slot) FROM verdicts WHERE site = v.site)
             ORDER BY site",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(stored_verdict_from_row(row)?);
        }
        Ok(out)
    }

    fn save_fleet(&mut self, fleet: &Fleet, loaded_at_unix_ms: i64) -> Result<(), StoreError> {
        self.save_fleet_rows(fleet, loaded_at_unix_ms)
    }

    fn fleet_hash(&self) -> Result<Option<String>, StoreError> {
        self.current_fleet_hash()
    }

    fn load_fleet(&self) -> Result<Option<Fleet>, StoreError> {
        self.read_fleet()
    }

    fn fleet_history(&self) -> Result<Vec<FleetVersion>, StoreError> {
        self.read_fleet_history()
    }

    fn append_journal(&mut self, e: &JournalEntry) -> Result<(), StoreError> {
        self.append_journal_row(e)
    }

    fn journal(&self, site: &SiteId, epoch: u64) -> Result<Vec<JournalEntry>, StoreError> {
        self.read_journal(site, epoch)
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        self.read_runs(limit)
    }

    fn highest_run_epoch(&self, site: &SiteId) -> Result<Option<u64>, StoreError> {
        self.read_highest_run_epoch(site)
    }

    fn save_run(&mut self, r: &RunRecord) -> Result<(), StoreError> {
        self.write_run(r)
    }

    fn run_records(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.read_run_records()
    }

    fn save_maintenance(&mut self, w: &MaintenanceWindow) -> Result<bool, StoreError> {
        let tx = self.write_txn()?;
        let n = tx.execute(
            "INSERT INTO maintenance (site, until_ms, set_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (site) DO UPDATE SET until_ms = excluded.until_ms,
                                              set_at_ms = excluded.set_at_ms
             WHERE excluded.set_at_ms > maintenance.set_at_ms",
            params![w.site.as_str(), w.until_unix_ms, w.set_at_unix_ms],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn save_alarm(&mut self, a: &Alarm) -> Result<bool, StoreError> {
        let record = serde_json::to_string(a)
            .map_err(|e| StoreError::Corrupt(format!("alarm cannot be encoded: {e}")))?;
        let tx = self.write_txn()?;
        let n = tx.execute(
            "INSERT INTO alarms (site, source, set_at_ms, record) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (site, source) DO UPDATE SET set_at_ms = excluded.set_at_ms,
                                                      record = excluded.record
             WHERE excluded.set_at_ms > alarms.set_at_ms",
            params![a.site.as_str(), a.source, a.set_at_unix_ms, record],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record FROM alarms ORDER BY site, source")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for text in rows {
            let text = text?;
            out.push(
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("alarms.record {text:?}: {e}")))?,
            );
        }
        Ok(out)
    }

    fn load_locks(&self) -> Result<BTreeMap<SiteId, LockState>, StoreError> {
        self.read_locks()
    }

    fn save_lock(&mut self, site: &SiteId, state: &LockState) -> Result<(), StoreError> {
        self.write_lock(site, state)
    }

    fn retention_inventory(&self) -> Result<super::retention::Inventory, StoreError> {
        self.read_retention_inventory()
    }

    fn prune(&mut self, p: &super::retention::Prune) -> Result<super::Pruned, StoreError> {
        self.delete_pruned(p)
    }

    fn maintenance(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT site, until_ms, set_at_ms FROM maintenance ORDER BY site")?;
        let rows = stmt.query_map([], |r| {
            Ok(MaintenanceWindow {
                site: SiteId(r.get(0)?),
                until_unix_ms: r.get(1)?,
                set_at_unix_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

fn durable_from_row(r: &Row<'_>) -> Result<(SiteId, Durable), StoreError> {
    let site = SiteId(r.get(0)?);
    let promised = Ballot {
        epoch: r.get(1)?,
        proposer: NodeId::from(r.get::<_, String>(2)?),
    };
    let slot: Option<u64> = r.get(3)?;
    let epoch: Option<u64> = r.get(4)?;
    let proposer: Option<String> = r.get(5)?;
    let outcome: Option<String> = r.get(6)?;
    let value_epoch: Option<u64> = r.get(7)?;
    let leader: Option<String> = r.get(8)?;
    let accepted = match (slot, epoch, proposer, outcome, value_epoch, leader) {
        (None, None, None, None, None, None) => None,
        (
            Some(slot),
            Some(epoch),
            Some(proposer),
            Some(outcome),
            Some(value_epoch),
            Some(leader),
        ) => Some(Accepted {
            slot,
            ballot: Ballot {
                epoch,
                proposer: NodeId::from(proposer),
            },
            value: Value {
                outcome: parse_outcome(&outcome)?,
                epoch: value_epoch,
                leader: NodeId::from(leader),
            },
        }),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "durable row of site {site} has a partly missing accepted value"
            )))
        }
    };
    Ok((site, Durable { promised, accepted }))
}

fn stored_verdict_from_row(r: &Row<'_>) -> Result<StoredVerdict, StoreError> {
    let outcome: String = r.get(2)?;
    Ok(StoredVerdict {
        verdict: Verdict {
            site: SiteId(r.get(0)?),
            slot: r.get(1)?,
            value: Value {
                outcome: parse_outcome(&outcome)?,
                epoch: r.get(3)?,
                leader: NodeId::from(r.get::<_, String>(4)?),
            },
        },
        learned_at_unix_ms: r.get(5)?,
    })
}

fn parse_outcome(s: &str) -> Result<Outcome, StoreError> {
    match s {
        "down" => Ok(Outcome::Down),
        "up" => Ok(Outcome::Up),
        _ => Err(StoreError::Corrupt(format!("unknown outcome {s:?}"))),
    }
}
