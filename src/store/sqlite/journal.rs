//! The journal half of the SQLite store: failover run entries, one row each, appended in one
//! transaction apiece and read back in append order (`seq`).

use super::SqliteStore;
use crate::core::pipeline::{JournalEntry, JournalKind, RunOutcome};
use crate::core::types::{SiteId, WallTime};
use crate::store::{conflicting_journal_entry, RunSummary, StoreError};
use rusqlite::{params, OptionalExtension};

impl SqliteStore {
    pub(super) fn append_journal_row(&mut self, e: &JournalEntry) -> Result<(), StoreError> {
        let kind = kind_str(&e.kind);
        let tx = self.write_txn()?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT entry FROM journal
                 WHERE site = ?1 AND epoch = ?2 AND kind = ?3
                   AND (kind = 'run_finished'
                        OR (phase = ?4 AND step_index = ?5 AND attempt = ?6))",
                params![
                    e.site.as_str(),
                    e.epoch,
                    kind,
                    e.step.phase.as_str(),
                    e.step.index,
                    e.attempt
                ],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(stored) = stored {
            let stored = decode(&stored)?;
            // Dropping `tx` rolls back; nothing was written either way.
            return if stored == *e {
                Ok(())
            } else {
                Err(conflicting_journal_entry(&stored, e))
            };
        }
        insert_row(&tx, e)?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn read_journal(
        &self,
        site: &SiteId,
        epoch: u64,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT entry FROM journal WHERE site = ?1 AND epoch = ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![site.as_str(), epoch])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let e = decode(&row.get::<_, String>(0)?)?;
            if e.site != *site || e.epoch != epoch {
                return Err(StoreError::Corrupt(format!(
                    "a journal row filed under site {site} epoch {epoch} holds {e:?}"
                )));
            }
            out.push(e);
        }
        Ok(out)
    }

    pub(super) fn read_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT site, epoch, COUNT(*), MIN(at_us), MAX(at_us), MIN(seq) AS first_seq,
                    MAX(CASE WHEN kind = 'run_finished' THEN entry END)
             FROM journal GROUP BY site, epoch ORDER BY first_seq DESC LIMIT ?1",
        )?;
        let mut rows = stmt.query([limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let finished: Option<String> = r.get(6)?;
            let outcome = finished
                .map(|text| outcome_of(&decode(&text)?))
                .transpose()?;
            out.push(RunSummary {
                site: SiteId(r.get(0)?),
                epoch: r.get(1)?,
                entries: r.get(2)?,
                first_at: WallTime::from_micros(r.get(3)?),
                last_at: WallTime::from_micros(r.get(4)?),
                outcome,
            });
        }
        Ok(out)
    }

    pub(super) fn read_highest_run_epoch(&self, site: &SiteId) -> Result<Option<u64>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT MAX(epoch) FROM journal WHERE site = ?1",
            [site.as_str()],
            |r| r.get(0),
        )?)
    }
}

fn kind_str(k: &JournalKind) -> &'static str {
    match k {
        JournalKind::Started => "started",
        JournalKind::Finished { .. } => "finished",
        JournalKind::RunFinished { .. } => "run_finished",
    }
}

/// Inserts one entry; the caller checked it does not clash with a stored one.
pub(super) fn insert_row(
    tx: &rusqlite::Transaction<'_>,
    e: &JournalEntry,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(e)
        .map_err(|err| StoreError::Corrupt(format!("journal entry {e:?}: {err}")))?;
    tx.execute(
        "INSERT INTO journal (site, epoch, phase, step_index, name, attempt, kind, at_us, entry)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.site.as_str(),
            e.epoch,
            e.step.phase.as_str(),
            e.step.index,
            e.name,
            e.attempt,
            kind_str(&e.kind),
            e.at.as_micros(),
            text,
        ],
    )?;
    Ok(())
}

pub(super) fn decode(text: &str) -> Result<JournalEntry, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("journal entry {text:?}: {e}")))
}

fn outcome_of(e: &JournalEntry) -> Result<RunOutcome, StoreError> {
    match &e.kind {
        JournalKind::RunFinished { outcome } => Ok(outcome.clone()),
        _ => Err(StoreError::Corrupt(format!(
            "a journal row marked run_finished holds {e:?}"
        ))),
    }
}
