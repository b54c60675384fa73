//! The run registers of the SQLite store: who may lead each failover run, and the journal a
//! leader with a higher ballot replaces.

use super::SqliteStore;
use crate::core::pipeline::JournalEntry;
use crate::core::replica::RunRecord;
use crate::core::types::SiteId;
use crate::store::{check_promise, StoreError};
use rusqlite::{params, OptionalExtension, Transaction};

impl SqliteStore {
    pub(super) fn write_run(&mut self, r: &RunRecord) -> Result<(), StoreError> {
        let register = RunRecord {
            journal: Vec::new(),
            ..r.clone()
        };
        let text = serde_json::to_string(&register)
            .map_err(|e| StoreError::Corrupt(format!("run register {register:?}: {e}")))?;
        let tx = self.write_txn()?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT record FROM run_registers WHERE site = ?1 AND run = ?2",
                params![r.site.as_str(), r.run],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(stored) = stored {
            let stored = decode_register(&stored)?;
            check_promise(&r.site, &stored.promised, &r.promised)?;
        }
        tx.execute(
            "INSERT INTO run_registers (site, run, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (site, run) DO UPDATE SET record = excluded.record",
            params![r.site.as_str(), r.run, text],
        )?;
        if journal_in(&tx, &r.site, r.run)? != r.journal {
            tx.execute(
                "DELETE FROM journal WHERE site = ?1 AND epoch = ?2",
                params![r.site.as_str(), r.run],
            )?;
            for e in &r.journal {
                if e.site != r.site || e.epoch != r.run {
                    return Err(StoreError::Corrupt(format!(
                        "the journal of site {} run {} holds an entry of site {} run {}",
                        r.site, r.run, e.site, e.epoch
                    )));
                }
                super::journal::insert_row(&tx, e)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn read_run_records(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record FROM run_registers ORDER BY site, run")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut r = decode_register(&row.get::<_, String>(0)?)?;
            r.journal = self.read_journal(&r.site, r.run)?;
            out.push(r);
        }
        Ok(out)
    }
}

fn journal_in(
    tx: &Transaction<'_>,
    site: &SiteId,
    run: u64,
) -> Result<Vec<JournalEntry>, StoreError> {
    let mut stmt =
        tx.prepare_cached("SELECT entry FROM journal WHERE site = ?1 AND epoch = ?2 ORDER BY seq")?;
    let mut rows = stmt.query(params![site.as_str(), run])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(super::journal::decode(&row.get::<_, String>(0)?)?);
    }
    Ok(out)
}

fn decode_register(text: &str) -> Result<RunRecord, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("run register {text:?}: {e}")))
}
