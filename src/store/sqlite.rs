//! The SQLite store: one file per node (`DIR/quorate.sqlite`), WAL with `synchronous=FULL` so
//! that every committed transaction has been fsynced when `commit` returns, one transaction per
//! save, and forward-only schema migrations numbered by `PRAGMA user_version`. It never opens
//! a database written by a newer schema, and never writes before it knows the file is its own.

use super::{
    check_promise, conflicting_verdict, FleetVersion, OpenErrorSource, Storage, StoreError,
    StoredVerdict,
};
use crate::config::{Fleet, Node, Roles, SingleVantage, Site, SiteKind, Timing, Watch};
use crate::core::types::{Accepted, Ballot, Durable, NodeId, Outcome, SiteId, Value, Verdict};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Opens (creating if missing) `dir/quorate.sqlite` and migrates it to the current schema.
    /// A file written by a newer schema is refused before anything is written to it.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let open_err = |source: OpenErrorSource| StoreError::Open {
            path: path.clone(),
            source,
        };
        let dir_existed = dir.is_dir();
        fs::create_dir_all(dir).map_err(|e| open_err(e.into()))?;
        if !dir_existed {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(|e| open_err(e.into()))?;
            }
        }

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
                        proposer: NodeId(r.get(1)?),
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
        let timing = timing_rows(&fleet.timing)?;
        let tx = self.write_txn()?;
        tx.execute_batch(
            "DELETE FROM sites; DELETE FROM nodes; DELETE FROM watches; DELETE FROM timing;",
        )?;
        for s in &fleet.sites {
            tx.execute(
                "INSERT INTO sites (id, kind) VALUES (?1, ?2)",
                params![s.id.as_str(), kind_str(s.kind)],
            )?;
        }
        for n in &fleet.nodes {
            tx.execute(
                "INSERT INTO nodes (id, site, roles, mesh, mesh_bind, api)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    n.id.as_str(),
                    n.site.as_str(),
                    roles_json(n.roles),
                    n.mesh.to_string(),
                    n.mesh_bind.map(|a| a.to_string()),
                    n.api.to_string(),
                ],
            )?;
        }
        for w in &fleet.watches {
            let by: Vec<&str> = w.by.iter().map(SiteId::as_str).collect();
            tx.execute(
                "INSERT INTO watches (site, by_sites, single_vantage) VALUES (?1, ?2, ?3)",
                params![
                    w.site.as_str(),
                    json(&by),
                    single_vantage_str(w.single_vantage)
                ],
            )?;
        }
        for (key, value) in timing {
            tx.execute(
                "INSERT INTO timing (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
        }
        tx.execute(
            "INSERT INTO fleet_versions (hash, text, loaded_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (hash) DO NOTHING",
            params![fleet.hash, fleet.source, loaded_at_unix_ms],
        )?;
        tx.execute(
            "INSERT INTO fleet_current (id, hash) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET hash = excluded.hash",
            [&fleet.hash],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn fleet_hash(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT hash FROM fleet_current WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn load_fleet(&self) -> Result<Option<Fleet>, StoreError> {
        // One read transaction: the registry tables are a single snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let current: Option<(String, String)> = tx
            .query_row(
                "SELECT v.hash, v.text FROM fleet_current c
                 JOIN fleet_versions v ON v.hash = c.hash WHERE c.id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((hash, source)) = current else {
            return Ok(None);
        };

        let mut sites = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT id, kind FROM sites ORDER BY rowid")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let kind: String = r.get(1)?;
                sites.push(Site {
                    id: SiteId(r.get(0)?),
                    kind: parse_kind(&kind)?,
                });
            }
        }
        let mut nodes = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT id, site, roles, mesh, mesh_bind, api FROM nodes ORDER BY rowid",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let roles: String = r.get(2)?;
                let mesh_bind: Option<String> = r.get(4)?;
                nodes.push(Node {
                    id: NodeId(r.get(0)?),
                    site: SiteId(r.get(1)?),
                    roles: parse_roles(&roles)?,
                    mesh: parse_addr("mesh", &r.get::<_, String>(3)?)?,
                    mesh_bind: mesh_bind.map(|a| parse_addr("mesh_bind", &a)).transpose()?,
                    api: parse_addr("api", &r.get::<_, String>(5)?)?,
                });
            }
        }
        let mut watches = Vec::new();
        {
            let mut stmt =
                tx.prepare("SELECT site, by_sites, single_vantage FROM watches ORDER BY rowid")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let by: String = r.get(1)?;
                let by: Vec<String> = serde_json::from_str(&by)
                    .map_err(|e| StoreError::Corrupt(format!("watches.by_sites {by:?}: {e}")))?;
                let sv: String = r.get(2)?;
                watches.push(Watch {
                    site: SiteId(r.get(0)?),
                    by: by.into_iter().map(SiteId).collect(),
                    single_vantage: parse_single_vantage(&sv)?,
                });
            }
        }
        let mut timing = BTreeMap::new();
        {
            let mut stmt = tx.prepare("SELECT key, value FROM timing")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                timing.insert(r.get::<_, String>(0)?, r.get::<_, i64>(1)?);
            }
        }
        Ok(Some(Fleet {
            timing: timing_from_rows(&timing)?,
            sites,
            nodes,
            watches,
            hash,
            source,
        }))
    }

    fn fleet_history(&self) -> Result<Vec<FleetVersion>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hash, text, loaded_at_ms FROM fleet_versions ORDER BY loaded_at_ms, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FleetVersion {
                hash: r.get(0)?,
                text: r.get(1)?,
                loaded_at_unix_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn durable_from_row(r: &Row<'_>) -> Result<(SiteId, Durable), StoreError> {
    let site = SiteId(r.get(0)?);
    let promised = Ballot {
        epoch: r.get(1)?,
        proposer: NodeId(r.get(2)?),
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
                proposer: NodeId(proposer),
            },
            value: Value {
                outcome: parse_outcome(&outcome)?,
                epoch: value_epoch,
                leader: NodeId(leader),
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
                leader: NodeId(r.get(4)?),
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

fn kind_str(k: SiteKind) -> &'static str {
    match k {
        SiteKind::Primary => "primary",
        SiteKind::Backup => "backup",
        SiteKind::Witness => "witness",
    }
}

fn parse_kind(s: &str) -> Result<SiteKind, StoreError> {
    match s {
        "primary" => Ok(SiteKind::Primary),
        "backup" => Ok(SiteKind::Backup),
        "witness" => Ok(SiteKind::Witness),
        _ => Err(StoreError::Corrupt(format!("unknown site kind {s:?}"))),
    }
}

fn single_vantage_str(s: SingleVantage) -> &'static str {
    match s {
        SingleVantage::Refuse => "refuse",
        SingleVantage::Manual => "manual",
    }
}

fn parse_single_vantage(s: &str) -> Result<SingleVantage, StoreError> {
    match s {
        "refuse" => Ok(SingleVantage::Refuse),
        "manual" => Ok(SingleVantage::Manual),
        _ => Err(StoreError::Corrupt(format!("unknown single_vantage {s:?}"))),
    }
}

fn roles_json(r: Roles) -> String {
    let mut names = Vec::new();
    if r.indicator {
        names.push("indicator");
    }
    if r.pinger {
        names.push("pinger");
    }
    if r.voter {
        names.push("voter");
    }
    json(&names)
}

fn parse_roles(s: &str) -> Result<Roles, StoreError> {
    let names: Vec<String> = serde_json::from_str(s)
        .map_err(|e| StoreError::Corrupt(format!("nodes.roles {s:?}: {e}")))?;
    let mut roles = Roles::default();
    for name in names {
        match name.as_str() {
            "indicator" => roles.indicator = true,
            "pinger" => roles.pinger = true,
            "voter" => roles.voter = true,
            _ => return Err(StoreError::Corrupt(format!("unknown role {name:?}"))),
        }
    }
    Ok(roles)
}

fn json(names: &[&str]) -> String {
    serde_json::to_string(names).expect("a list of strings always serializes")
}

fn parse_addr(column: &str, s: &str) -> Result<SocketAddr, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("nodes.{column} {s:?}: {e}")))
}

// Timing rows: durations in microseconds (the fast profiles go below a millisecond), counts
// as they are. The key names carry the unit so that the table reads on its own.
fn timing_rows(t: &Timing) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let us = |key: &'static str, d: Duration| {
        i64::try_from(d.as_micros())
            .map(|v| (key, v))
            .map_err(|_| StoreError::Corrupt(format!("timing {key} {d:?} does not fit")))
    };
    Ok(vec![
        us("probe_interval_us", t.probe_interval)?,
        us("probe_timeout_us", t.probe_timeout)?,
        ("retries", i64::from(t.retries)),
        us("vote_timeout_us", t.vote_timeout)?,
        ("max_vote_rounds", i64::from(t.max_vote_rounds)),
        us("hold_down_us", t.hold_down)?,
        us("revote_after_us", t.revote_after)?,
        us("status_interval_us", t.status_interval)?,
    ])
}

fn timing_from_rows(rows: &BTreeMap<String, i64>) -> Result<Timing, StoreError> {
    let get = |key: &str| {
        rows.get(key)
            .copied()
            .ok_or_else(|| StoreError::Corrupt(format!("timing row {key} is missing")))
    };
    let us = |key: &str| {
        let v = get(key)?;
        u64::try_from(v)
            .map(Duration::from_micros)
            .map_err(|_| StoreError::Corrupt(format!("timing {key} is negative: {v}")))
    };
    let count = |key: &str| {
        let v = get(key)?;
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("timing {key} out of range: {v}")))
    };
    Ok(Timing {
        probe_interval: us("probe_interval_us")?,
        probe_timeout: us("probe_timeout_us")?,
        retries: count("retries")?,
        vote_timeout: us("vote_timeout_us")?,
        max_vote_rounds: count("max_vote_rounds")?,
        hold_down: us("hold_down_us")?,
        revote_after: us("revote_after_us")?,
        status_interval: us("status_interval_us")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
