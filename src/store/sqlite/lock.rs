//! The operator lock rows of the SQLite store: one per site, the promised ballot in columns
//! and the whole acceptor state as JSON.

use super::SqliteStore;
use crate::core::oplock::LockState;
use crate::core::types::SiteId;
use crate::store::{check_lock, StoreError};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

impl SqliteStore {
    pub(super) fn write_lock(
        &mut self,
        site: &SiteId,
        state: &LockState,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(state)
            .map_err(|e| StoreError::Corrupt(format!("operator lock of site {site}: {e}")))?;
        let tx = self.write_txn()?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT state FROM operator_lock WHERE site = ?1",
                [site.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(stored) = stored {
            // Dropping `tx` rolls back: nothing is written.
            check_lock(site, &decode(site, &stored)?, state)?;
        }
        tx.execute(
            "INSERT INTO operator_lock (site, promised_epoch, promised_node, decided_gen, state)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (site) DO UPDATE SET
                 promised_epoch = excluded.promised_epoch,
                 promised_node = excluded.promised_node,
                 decided_gen = excluded.decided_gen,
                 state = excluded.state",
            params![
                site.as_str(),
                state.promised.epoch,
                state.promised.proposer.as_str(),
                state.decided.as_ref().map_or(0, |d| d.gen),
                text
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn read_locks(&self) -> Result<BTreeMap<SiteId, LockState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT site, state FROM operator_lock ORDER BY site")?;
        let mut rows = stmt.query([])?;
        let mut out = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let site = SiteId(row.get(0)?);
            let state = decode(&site, &row.get::<_, String>(1)?)?;
            out.insert(site, state);
        }
        Ok(out)
    }
}

fn decode(site: &SiteId, text: &str) -> Result<LockState, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("operator lock of site {site} {text:?}: {e}")))
}
