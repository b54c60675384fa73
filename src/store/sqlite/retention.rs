//! Retention in the SQLite store: reads how old each verdict, run and fleet version is, and
//! deletes what the policy (`store::retention`) chose in one transaction, re-checking under
//! the write lock that a run it deletes has finished.

use super::SqliteStore;
use crate::core::types::{SiteId, WallTime};
use crate::store::retention::{FleetAge, Inventory, Prune, Pruned, RunAge, VerdictAge};
use crate::store::StoreError;
use rusqlite::params;
use std::collections::BTreeMap;

impl SqliteStore {
    pub(super) fn read_retention_inventory(&self) -> Result<Inventory, StoreError> {
        let mut inv = Inventory {
            current_fleet: self.current_fleet_hash()?,
            ..Inventory::default()
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT site, slot, learned_at_ms FROM verdicts")?;
        let rows = stmt.query_map([], |r| {
            Ok(VerdictAge {
                site: SiteId(r.get(0)?),
                slot: r.get(1)?,
                learned_at_unix_ms: r.get(2)?,
            })
        })?;
        inv.verdicts = rows.collect::<Result<_, _>>()?;

        let mut runs: BTreeMap<(SiteId, u64), RunAge> = BTreeMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT site, epoch, MAX(kind = 'run_finished'), MAX(at_us)
             FROM journal GROUP BY site, epoch",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (site, run): (String, u64) = (r.get(0)?, r.get(1)?);
            let last: u64 = r.get(3)?;
            runs.insert(
                (SiteId(site.clone()), run),
                RunAge {
                    site: SiteId(site),
                    run,
                    finished: r.get(2)?,
                    last_at_unix_ms: WallTime::from_micros(last).as_millis(),
                },
            );
        }
        // A register's start time counts too: a run registered but not begun has no journal.
        for record in self.read_run_records()? {
            let start = record.start_at.as_millis();
            runs.entry((record.site.clone(), record.run))
                .and_modify(|r| r.last_at_unix_ms = r.last_at_unix_ms.max(start))
                .or_insert(RunAge {
                    site: record.site,
                    run: record.run,
                    finished: false,
                    last_at_unix_ms: start,
                });
        }
        inv.runs = runs.into_values().collect();

        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash, loaded_at_ms FROM fleet_versions")?;
        let rows = stmt.query_map([], |r| {
            Ok(FleetAge {
                hash: r.get(0)?,
                loaded_at_unix_ms: r.get(1)?,
            })
        })?;
        inv.fleet_versions = rows.collect::<Result<_, _>>()?;
        Ok(inv)
    }

    pub(super) fn delete_pruned(&mut self, p: &Prune) -> Result<Pruned, StoreError> {
        let tx = self.write_txn()?;
        let mut pruned = Pruned::default();
        for (site, slot) in &p.verdicts {
            pruned.verdicts += tx.execute(
                "DELETE FROM verdicts WHERE site = ?1 AND slot = ?2",
                params![site.as_str(), slot],
            )?;
        }
        for (site, run) in &p.runs {
            let finished: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM journal
                                WHERE site = ?1 AND epoch = ?2 AND kind = 'run_finished')",
                params![site.as_str(), run],
                |r| r.get(0),
            )?;
            if !finished {
                continue;
            }
            tx.execute(
                "DELETE FROM journal WHERE site = ?1 AND epoch = ?2",
                params![site.as_str(), run],
            )?;
            tx.execute(
                "DELETE FROM run_registers WHERE site = ?1 AND run = ?2",
                params![site.as_str(), run],
            )?;
            pruned.runs += 1;
        }
        for hash in &p.fleet_versions {
            pruned.fleet_versions += tx.execute(
                "DELETE FROM fleet_versions
                 WHERE hash = ?1 AND hash NOT IN (SELECT hash FROM fleet_current)",
                [hash],
            )?;
        }
        tx.commit()?;
        Ok(pruned)
    }
}
