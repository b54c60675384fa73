//! The in-memory store for the simulator and tests: the same semantics as SQLite (the
//! conformance suite holds both to them) without a file. Clones share one state, the way two
//! opens of one directory share a file, so a simulated crash drops the node and keeps a clone.

use super::retention::{FleetAge, Inventory, Prune, Pruned, RunAge, VerdictAge};
use super::{
    check_lock, check_promise, conflicting_journal_entry, conflicting_verdict, journal_identity,
    FleetVersion, RunSummary, Storage, StoreError, StoredVerdict,
};
use crate::config::Fleet;
use crate::core::oplock::LockState;
use crate::core::pipeline::{JournalEntry, JournalKind};
use crate::core::replica::RunRecord;
use crate::core::types::{Durable, SiteId, Verdict};
use crate::wire::{Alarm, MaintenanceWindow};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A node's durable state kept in memory; survives as long as any clone of it.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    durable: BTreeMap<SiteId, Durable>,
    verdicts: BTreeMap<(SiteId, u64), StoredVerdict>,
    fleet: Option<Fleet>,
    history: Vec<FleetVersion>,
    /// Each run's entries in append order.
    journal: BTreeMap<(SiteId, u64), Vec<JournalEntry>>,
    /// Runs in the order their first entry was appended.
    run_order: Vec<(SiteId, u64)>,
    /// Run registers, without their journals (those live in `journal`).
    registers: BTreeMap<(SiteId, u64), RunRecord>,
    maintenance: BTreeMap<SiteId, MaintenanceWindow>,
    alarms: BTreeMap<(SiteId, String), Alarm>,
    locks: BTreeMap<SiteId, LockState>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation below checks before it writes, so a panic elsewhere while the lock
        // was held cannot have left a half-applied change: the state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemoryStore {
    fn load_durable(&self) -> Result<BTreeMap<SiteId, Durable>, StoreError> {
        Ok(self.state().durable.clone())
    }

    fn save_durable(&mut self, site: &SiteId, d: &Durable) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(stored) = state.durable.get(site) {
            check_promise(site, &stored.promised, &d.promised)?;
        }
        state.durable.insert(site.clone(), d.clone());
        Ok(())
    }

    fn record_verdict(&mut self, v: &Verdict, learned_at_unix_ms: i64) -> Result<bool, StoreError> {
        let mut state = self.state();
        let key = (v.site.clone(), v.slot);
        if let Some(stored) = state.verdicts.get(&key) {
            return if stored.verdict == *v {
                Ok(false)
            } else {
                Err(conflicting_verdict(&stored.verdict, v))
            };
        }
        state.verdicts.insert(
            key,
            StoredVerdict {
                verdict: v.clone(),
                learned_at_unix_ms,
            },
        );
        Ok(true)
    }

    fn verdicts(
        &self,
        site: Option<&SiteId>,
        limit: usize,
    ) -> Result<Vec<StoredVerdict>, StoreError> {
        let state = self.state();
        let out = match site {
            Some(site) => state
                .verdicts
                .range((site.clone(), 0)..=(site.clone(), u64::MAX))
                .rev()
                .take(limit)
                .map(|(_, v)| v.clone())
                .collect(),
            None => {
                let mut all: Vec<StoredVerdict> = state.verdicts.values().cloned().collect();
                // Same order as the SQLite query: learned_at DESC, slot DESC, site ASC.
                all.sort_by(|a, b| {
                    b.learned_at_unix_ms
                        .cmp(&a.learned_at_unix_ms)
                        .then(b.verdict.slot.cmp(&a.verdict.slot))
                        .then(a.verdict.site.cmp(&b.verdict.site))
                });
                all.truncate(limit);
                all
            }
        };
        Ok(out)
    }

    fn latest_verdicts(&self) -> Result<Vec<StoredVerdict>, StoreError> {
        let state = self.state();
        let mut latest: BTreeMap<&SiteId, &StoredVerdict> = BTreeMap::new();
        // Keys ascend by (site, slot), so the last one seen per site is its highest slot.
        for ((site, _), v) in &state.verdicts {
            latest.insert(site, v);
        }
        Ok(latest.into_values().cloned().collect())
    }

    fn save_fleet(&mut self, fleet: &Fleet, loaded_at_unix_ms: i64) -> Result<(), StoreError> {
        let mut state = self.state();
        if !state.history.iter().any(|v| v.hash == fleet.hash) {
            state.history.push(FleetVersion {
                hash: fleet.hash.clone(),
                text: fleet.source.clone(),
                loaded_at_unix_ms,
            });
        }
        state.fleet = Some(fleet.clone());
        Ok(())
    }

    fn fleet_hash(&self) -> Result<Option<String>, StoreError> {
        Ok(self.state().fleet.as_ref().map(|f| f.hash.clone()))
    }

    fn load_fleet(&self) -> Result<Option<Fleet>, StoreError> {
        Ok(self.state().fleet.clone())
    }

    fn fleet_history(&self) -> Result<Vec<FleetVersion>, StoreError> {
        let mut history = self.state().history.clone();
        // SQLite orders by load time, then insertion; a stable sort does the same.
        history.sort_by_key(|v| v.loaded_at_unix_ms);
        Ok(history)
    }

    fn append_journal(&mut self, e: &JournalEntry) -> Result<(), StoreError> {
        let mut state = self.state();
        let state = &mut *state;
        let key = (e.site.clone(), e.epoch);
        if let Some(entries) = state.journal.get(&key) {
            let identity = journal_identity(e);
            if let Some(stored) = entries.iter().find(|s| journal_identity(s) == identity) {
                return if stored == e {
                    Ok(())
                } else {
                    Err(conflicting_journal_entry(stored, e))
                };
            }
        } else {
            state.run_order.push(key.clone());
        }
        state.journal.entry(key).or_default().push(e.clone());
        Ok(())
    }

    fn journal(&self, site: &SiteId, epoch: u64) -> Result<Vec<JournalEntry>, StoreError> {
        Ok(self
            .state()
            .journal
            .get(&(site.clone(), epoch))
            .cloned()
            .unwrap_or_default())
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let state = self.state();
        let mut out = Vec::new();
        for key in state.run_order.iter().rev().take(limit) {
            let entries = &state.journal[key];
            let outcome = entries.iter().find_map(|e| match &e.kind {
                JournalKind::RunFinished { outcome } => Some(outcome.clone()),
                _ => None,
            });
            out.push(RunSummary {
                site: key.0.clone(),
                epoch: key.1,
                entries: entries.len(),
                first_at: entries.iter().map(|e| e.at).min().unwrap_or_default(),
                last_at: entries.iter().map(|e| e.at).max().unwrap_or_default(),
                outcome,
            });
        }
        Ok(out)
    }

    fn highest_run_epoch(&self, site: &SiteId) -> Result<Option<u64>, StoreError> {
        let state = self.state();
        let highest = state
            .journal
            .range((site.clone(), 0)..=(site.clone(), u64::MAX))
            .next_back()
            .map(|((_, epoch), _)| *epoch);
        Ok(highest)
    }

    fn save_run(&mut self, r: &RunRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        let state = &mut *state;
        let key = (r.site.clone(), r.run);
        if let Some(stored) = state.registers.get(&key) {
            check_promise(&r.site, &stored.promised, &r.promised)?;
        }
        if let Some(e) = r
            .journal
            .iter()
            .find(|e| e.site != r.site || e.epoch != r.run)
        {
            return Err(StoreError::Corrupt(format!(
                "the journal of site {} run {} holds an entry of site {} run {}",
                r.site, r.run, e.site, e.epoch
            )));
        }
        state.registers.insert(
            key.clone(),
            RunRecord {
                journal: Vec::new(),
                ..r.clone()
            },
        );
        if r.journal.is_empty() {
            if state.journal.remove(&key).is_some() {
                state.run_order.retain(|k| *k != key);
            }
        } else if state.journal.get(&key) != Some(&r.journal) {
            if !state.journal.contains_key(&key) {
                state.run_order.push(key.clone());
            }
            state.journal.insert(key, r.journal.clone());
        }
        Ok(())
    }

    fn save_maintenance(&mut self, w: &MaintenanceWindow) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state
            .maintenance
            .get(&w.site)
            .is_some_and(|s| s.set_at_unix_ms >= w.set_at_unix_ms)
        {
            return Ok(false);
        }
        state.maintenance.insert(w.site.clone(), w.clone());
        Ok(true)
    }

    fn maintenance(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        Ok(self.state().maintenance.values().cloned().collect())
    }

    fn save_alarm(&mut self, a: &Alarm) -> Result<bool, StoreError> {
        let mut state = self.state();
        let key = (a.site.clone(), a.source.clone());
        if state
            .alarms
            .get(&key)
            .is_some_and(|s| s.set_at_unix_ms >= a.set_at_unix_ms)
        {
            return Ok(false);
        }
        state.alarms.insert(key, a.clone());
        Ok(true)
    }

    fn alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        Ok(self.state().alarms.values().cloned().collect())
    }

    fn load_locks(&self) -> Result<BTreeMap<SiteId, LockState>, StoreError> {
        Ok(self.state().locks.clone())
    }

    fn save_lock(&mut self, site: &SiteId, state: &LockState) -> Result<(), StoreError> {
        let mut s = self.state();
        if let Some(stored) = s.locks.get(site) {
            check_lock(site, stored, state)?;
        }
        s.locks.insert(site.clone(), state.clone());
        Ok(())
    }

    fn retention_inventory(&self) -> Result<Inventory, StoreError> {
        let state = self.state();
        let verdicts = state
            .verdicts
            .values()
            .map(|v| VerdictAge {
                site: v.verdict.site.clone(),
                slot: v.verdict.slot,
                learned_at_unix_ms: v.learned_at_unix_ms,
            })
            .collect();
        let mut runs: BTreeMap<(SiteId, u64), RunAge> = BTreeMap::new();
        for ((site, run), entries) in &state.journal {
            runs.insert(
                (site.clone(), *run),
                RunAge {
                    site: site.clone(),
                    run: *run,
                    finished: entries
                        .iter()
                        .any(|e| matches!(e.kind, JournalKind::RunFinished { .. })),
                    last_at_unix_ms: entries.iter().map(|e| e.at.as_millis()).max().unwrap_or(0),
                },
            );
        }
        for (key, r) in &state.registers {
            let start = r.start_at.as_millis();
            runs.entry(key.clone())
                .and_modify(|a| a.last_at_unix_ms = a.last_at_unix_ms.max(start))
                .or_insert(RunAge {
                    site: key.0.clone(),
                    run: key.1,
                    finished: false,
                    last_at_unix_ms: start,
                });
        }
        Ok(Inventory {
            verdicts,
            runs: runs.into_values().collect(),
            fleet_versions: state
                .history
                .iter()
                .map(|v| FleetAge {
                    hash: v.hash.clone(),
                    loaded_at_unix_ms: v.loaded_at_unix_ms,
                })
                .collect(),
            current_fleet: state.fleet.as_ref().map(|f| f.hash.clone()),
        })
    }

    fn prune(&mut self, p: &Prune) -> Result<Pruned, StoreError> {
        let mut state = self.state();
        let state = &mut *state;
        let mut pruned = Pruned::default();
        for key in &p.verdicts {
            pruned.verdicts += usize::from(state.verdicts.remove(key).is_some());
        }
        for key in &p.runs {
            let finished = state.journal.get(key).is_some_and(|entries| {
                entries
                    .iter()
                    .any(|e| matches!(e.kind, JournalKind::RunFinished { .. }))
            });
            if !finished {
                continue;
            }
            state.journal.remove(key);
            state.registers.remove(key);
            state.run_order.retain(|k| k != key);
            pruned.runs += 1;
        }
        let current = state.fleet.as_ref().map(|f| f.hash.clone());
        let before = state.history.len();
        state
            .history
            .retain(|v| !p.fleet_versions.contains(&v.hash) || current.as_ref() == Some(&v.hash));
        pruned.fleet_versions = before - state.history.len();
        Ok(pruned)
    }

    fn run_records(&self) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.state();
        Ok(state
            .registers
            .iter()
            .map(|(key, r)| RunRecord {
                journal: state.journal.get(key).cloned().unwrap_or_default(),
                ..r.clone()
            })
            .collect())
    }
}
