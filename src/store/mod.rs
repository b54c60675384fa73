//! What a node must never lose: each voter's promised ballot and accepted value per site, the
//! committed verdicts, the registry (the fleet file it runs and the history of fleet versions
//! it has loaded), the journal of every failover run so that a run resumes after a crash, and
//! each site's operator lock state. Everything sits behind [`Storage`] so that the node drives SQLite
//! ([`SqliteStore`]) and the simulator an in-memory twin ([`MemoryStore`]) with the same
//! semantics, checked by one conformance suite. A store must never report a write as done
//! before it is durable, never lower a promised ballot, and never overwrite a verdict.

use crate::config::Fleet;
use crate::core::oplock::LockState;
use crate::core::pipeline::{JournalEntry, JournalKind, RunOutcome};
use crate::core::replica::RunRecord;
use crate::core::types::{Ballot, Durable, SiteId, Verdict, WallTime};
use crate::wire::{Alarm, MaintenanceWindow};
use std::collections::BTreeMap;
use std::path::PathBuf;

mod memory;
pub mod retention;
mod sqlite;

#[cfg(test)]
mod conformance;

pub use memory::MemoryStore;
pub use retention::{Pruned, Retention};
pub use sqlite::SqliteStore;

use retention::{Inventory, Prune};

/// A committed verdict and when this node learned it (wall clock, for operators only: the
/// protocol orders verdicts of a site by slot, never by this time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVerdict {
    pub verdict: Verdict,
    pub learned_at_unix_ms: i64,
}

/// One fleet file this node has loaded, kept so that operators can see which versions ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetVersion {
    /// Hex SHA-256 of `text` (`Fleet::hash`).
    pub hash: String,
    pub text: String,
    /// When this node first loaded this version.
    pub loaded_at_unix_ms: i64,
}

/// One failover run, (site, epoch), as its journal tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub site: SiteId,
    pub epoch: u64,
    /// How many journal entries the run has.
    pub entries: usize,
    /// The earliest and latest `at` among its entries (the driver's time).
    pub first_at: WallTime,
    pub last_at: WallTime,
    /// How it ended; None while it runs, or when it was interrupted and not resumed yet.
    pub outcome: Option<RunOutcome>,
}

impl RunSummary {
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }
}

/// Why a store operation failed. Each variant says what happened to the stored state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened (directory not creatable, file not a SQLite database,
    /// pragmas or migrations failed). Nothing was written to an existing store.
    #[error("cannot open the store at {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: OpenErrorSource,
    },
    /// SQLite failed mid-operation; the operation's transaction was rolled back, so the
    /// stored state is what it was before the call.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A promised ballot lower than the stored one was refused; nothing was written. The
    /// caller's in-memory state is behind the disk, which must never happen in a correct
    /// voter: treat it as a bug, not as a retryable failure.
    #[error(
        "refused to lower the promised ballot of site {site} from epoch {} ({}) to epoch {} ({}); nothing was written",
        stored.epoch, stored.proposer, attempted.epoch, attempted.proposer
    )]
    EpochRegression {
        site: SiteId,
        stored: Ballot,
        attempted: Ballot,
    },
    /// The stored data contradicts itself or the caller (a verdict slot with two values, a
    /// row that does not decode). Nothing was written by the failed call.
    #[error("store holds inconsistent data: {0}")]
    Corrupt(String),
    /// The database was written by a newer quorate; it was not modified. Run the newer
    /// version, or restore a backup made before the upgrade.
    #[error(
        "the store's schema version {found} is newer than this build supports ({supported}); it was left untouched"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// SQLite's integrity check found damage in the file; nothing was written to it. The
    /// node must not start from it: it could have forgotten a promise it made.
    #[error(
        "the store {} is damaged ({}); nothing was written to it. Stop the node, keep the file \
         for analysis and restore the directory from a backup",
        path.display(), problems.join("; ")
    )]
    Damaged {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// What went wrong while opening a store.
#[derive(Debug, thiserror::Error)]
pub enum OpenErrorSource {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Durable state of one node. Every `save_*`/`record_*` method is atomic (all or nothing) and
/// durable when it returns `Ok`.
pub trait Storage: Send {
    /// Per-site durable voter state (promised ballot + accepted value).
    fn load_durable(&self) -> Result<BTreeMap<SiteId, Durable>, StoreError>;

    /// Must be on disk (fsync) when it returns Ok. Refuses (EpochRegression, nothing written)
    /// a promised ballot lower than the stored one: the last line of defence of "never accept
    /// a lower epoch". An equal ballot may carry a new accepted value.
    fn save_durable(&mut self, site: &SiteId, d: &Durable) -> Result<(), StoreError>;

    /// Appends a committed verdict; idempotent on (site, slot): returns Ok(true) when stored,
    /// Ok(false) if that slot is already stored with the same value (the stored learned-at
    /// time is kept), Err(Corrupt) if with a different value (never overwritten).
    fn record_verdict(&mut self, v: &Verdict, learned_at_unix_ms: i64) -> Result<bool, StoreError>;

    /// Newest first, at most `limit`. For one site "newest" is the highest slot; across
    /// sites it is the latest learned-at time (ties: higher slot, then site id).
    fn verdicts(
        &self,
        site: Option<&SiteId>,
        limit: usize,
    ) -> Result<Vec<StoredVerdict>, StoreError>;

    /// The newest (highest slot) verdict of each site that has one, ordered by site id.
    fn latest_verdicts(&self) -> Result<Vec<StoredVerdict>, StoreError>;

    /// Registry: replaces the stored fleet (sites, nodes, watches, timing rows) with `fleet` in
    /// one transaction and appends (hash, text, loaded_at) to the fleet history if the hash is
    /// new. `fleet` becomes the current fleet either way.
    fn save_fleet(&mut self, fleet: &Fleet, loaded_at_unix_ms: i64) -> Result<(), StoreError>;

    /// The hash of the current fleet, None before the first `save_fleet`.
    fn fleet_hash(&self) -> Result<Option<String>, StoreError>;

    /// The current fleet as stored by the last `save_fleet`, None before the first one.
    fn load_fleet(&self) -> Result<Option<Fleet>, StoreError>;

    /// Every fleet version ever loaded, oldest first, one entry per hash.
    fn fleet_history(&self) -> Result<Vec<FleetVersion>, StoreError>;

    /// Appends one journal entry; durable (fsync) when it returns. Idempotent: the same entry
    /// twice is stored once. An entry is identified within its (site, epoch) by (step,
    /// attempt, kind), and a run has at most one `RunFinished`: a different entry under a
    /// stored identity is refused (Corrupt, nothing written), never overwritten. The store
    /// does not fence epochs itself; callers check [`Storage::highest_run_epoch`] first.
    fn append_journal(&mut self, e: &JournalEntry) -> Result<(), StoreError>;

    /// Every entry of (site, epoch) in append order.
    fn journal(&self, site: &SiteId, epoch: u64) -> Result<Vec<JournalEntry>, StoreError>;

    /// The runs known, newest first (by when their first entry was appended), at most
    /// `limit`.
    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError>;

    /// Highest epoch for which a step of `site` was journaled: an actuator step from a lower
    /// epoch must be refused (fencing). None when `site` has no journal.
    fn highest_run_epoch(&self, site: &SiteId) -> Result<Option<u64>, StoreError>;

    /// Saves a run's register (ballots, trigger, start time) and makes its journal `r.journal`,
    /// replacing the stored entries of (site, run) when they differ: a leader with a higher
    /// ballot wrote it. Refuses (EpochRegression, nothing written) a promised ballot lower than
    /// the stored one. Durable when it returns Ok.
    fn save_run(&mut self, r: &RunRecord) -> Result<(), StoreError>;

    /// Every run register with its journal, ordered by site and run.
    fn run_records(&self) -> Result<Vec<RunRecord>, StoreError>;

    /// Keeps the newest maintenance call of `w.site`; an older call than the stored one is
    /// ignored (Ok(false)). Durable when it returns Ok(true).
    fn save_maintenance(&mut self, w: &MaintenanceWindow) -> Result<bool, StoreError>;

    /// The stored maintenance call of every site, ordered by site.
    fn maintenance(&self) -> Result<Vec<MaintenanceWindow>, StoreError>;

    /// Keeps the newest alarm call of (`a.site`, `a.source`); an older call than the stored
    /// one is ignored (Ok(false)). Durable when it returns Ok(true).
    fn save_alarm(&mut self, a: &Alarm) -> Result<bool, StoreError>;

    /// The stored alarm call of every (site, source), ordered by site and source.
    fn alarms(&self) -> Result<Vec<Alarm>, StoreError>;

    /// This member's acceptor state of every site's operator lock.
    fn load_locks(&self) -> Result<BTreeMap<SiteId, LockState>, StoreError>;

    /// Replaces the operator lock state of `site`; durable when it returns Ok. Refuses, with
    /// nothing written, a promised ballot lower than the stored one (EpochRegression) and a
    /// decided generation older than the stored one or one stored with another value
    /// (Corrupt): a decided run is never forgotten or changed.
    fn save_lock(&mut self, site: &SiteId, state: &LockState) -> Result<(), StoreError>;

    /// How old every verdict, run and fleet version is, for [`retention::plan`].
    fn retention_inventory(&self) -> Result<Inventory, StoreError>;

    /// Deletes what `p` names in one transaction: verdicts by (site, slot), runs (register
    /// and journal) by (site, run), fleet versions by hash. Skips, even when named, a run
    /// whose journal has no `RunFinished` and the running fleet version. Returns what went.
    fn prune(&mut self, p: &Prune) -> Result<Pruned, StoreError>;

    /// Prunes what `policy` lets go at `now_unix_ms` (the driver's wall clock).
    fn apply_retention(
        &mut self,
        policy: &Retention,
        now_unix_ms: i64,
    ) -> Result<Pruned, StoreError> {
        let p = retention::plan(policy, now_unix_ms, &self.retention_inventory()?);
        if p.is_empty() {
            return Ok(Pruned::default());
        }
        self.prune(&p)
    }
}

/// The checks `save_lock` makes, shared so that both stores refuse the same writes.
fn check_lock(site: &SiteId, stored: &LockState, attempted: &LockState) -> Result<(), StoreError> {
    check_promise(site, &stored.promised, &attempted.promised)?;
    if let Some(known) = &stored.decided {
        let same_or_newer = attempted
            .decided
            .as_ref()
            .is_some_and(|d| d.gen > known.gen || (d.gen == known.gen && d.value == known.value));
        if !same_or_newer {
            return Err(StoreError::Corrupt(format!(
                "the operator lock of site {site} has generation {} decided (run {} led by {}); \
                 refused {:?}",
                known.gen, known.value.run, known.value.leader, attempted.decided
            )));
        }
    }
    Ok(())
}

/// Shared by both implementations so that they refuse exactly the same writes.
fn check_promise(site: &SiteId, stored: &Ballot, attempted: &Ballot) -> Result<(), StoreError> {
    if attempted < stored {
        return Err(StoreError::EpochRegression {
            site: site.clone(),
            stored: stored.clone(),
            attempted: attempted.clone(),
        });
    }
    Ok(())
}

fn conflicting_verdict(stored: &Verdict, attempted: &Verdict) -> StoreError {
    StoreError::Corrupt(format!(
        "site {} slot {} already holds {} at epoch {} led by {}; refused {} at epoch {} led by {}",
        stored.site,
        stored.slot,
        stored.value.outcome.as_api_str(),
        stored.value.epoch,
        stored.value.leader,
        attempted.value.outcome.as_api_str(),
        attempted.value.epoch,
        attempted.value.leader,
    ))
}

/// What identifies a journal entry within its run: two entries with the same identity must be
/// equal. Every `RunFinished` of a run shares one identity, so a run has a single outcome.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum JournalIdentity {
    Step {
        step: crate::core::pipeline::StepRef,
        attempt: u32,
        finished: bool,
    },
    RunFinished,
}

fn journal_identity(e: &JournalEntry) -> JournalIdentity {
    match e.kind {
        JournalKind::Started => JournalIdentity::Step {
            step: e.step,
            attempt: e.attempt,
            finished: false,
        },
        JournalKind::Finished { .. } => JournalIdentity::Step {
            step: e.step,
            attempt: e.attempt,
            finished: true,
        },
        JournalKind::RunFinished { .. } => JournalIdentity::RunFinished,
    }
}

fn conflicting_journal_entry(stored: &JournalEntry, attempted: &JournalEntry) -> StoreError {
    StoreError::Corrupt(format!(
        "the journal of site {} epoch {} already holds {stored:?}; refused the different {attempted:?}",
        stored.site, stored.epoch,
    ))
}
