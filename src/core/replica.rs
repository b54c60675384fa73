//! The electorate's copy of every failover run, the leader's lease, and the takeover of a run
//! whose leader went silent. Pure: no clock, no IO; the driver feeds it time and messages and
//! carries out its actions in order (a `Persist` is durable before any later `Send` leaves).
//!
//! A run is identified by (site, run id); the run id is the epoch of the verdict (or operator
//! call) that started it and is part of every idempotency key, so a step re-run after a
//! takeover carries the key it had before. Who may act for the run is decided by ballots, as
//! in Paxos phase 1:
//!
//! - The first leader holds `Ballot { epoch: run, proposer: leader }`. It sends its journal
//!   (`Append`) to the electorate after every entry and a `Heartbeat` in between. A member
//!   accepts both unless it promised a higher ballot; accepting one renews the lease. An
//!   `Append` carries the register and only the entries from the index the member is known to
//!   hold, at most `APPEND_BATCH_BYTES` of them; the member's `Ack` says how many it holds and
//!   the leader sends the next batch, so a journal of any length replicates in messages of a
//!   bounded size. A member adopts a newer leader's journal only once it holds all of it (see
//!   `Replica::staged`): a copy labeled with a ballot always holds what that ballot's leader
//!   started from, which the takeover rule below relies on.
//! - The leader starts a step only once the journal up to that step's start is held by a
//!   majority of the electorate ([`Replicas::replicated`]). So every step that may have begun
//!   is known to every majority, and a takeover re-runs it rather than skipping it.
//! - A member that heard nothing from the leader for `lease` (plus a stagger by rank, so that
//!   members rarely compete) asks the electorate to promise a ballot with a higher epoch
//!   (`Prepare`). A member grants it only when it, too, has not heard the leader for `lease`,
//!   and only for an epoch above every one it promised, so at most one candidate wins each
//!   epoch. The winner continues from the journal of the highest ballot among the promises
//!   (the longest of those on a tie): every majority-held entry is in it. A promise, too,
//!   carries at most `APPEND_BATCH_BYTES` of entries, from what the candidate said it holds
//!   of the same ballot; a candidate missing part of the best copy asks its holder again
//!   (the same `Prepare`, from where it got to) before it wins.
//! - A leader that learns of a higher ballot yields: its next step would be refused anyway,
//!   since no majority acknowledges a lower ballot any more. The ballot's epoch is the fencing
//!   token the actuators receive.
//! - Every number a message carries stays at or below `MAX_EPOCH` (a message with a larger
//!   one is dropped before it is looked at), and a takeover's term is the current one plus one
//!   by `checked_add`, so no term wraps around or outgrows what the store keeps.

use super::pipeline::{JournalEntry, JournalKind, RunOutcome};
use super::quorum::Electorate;
use super::trust::MAX_EPOCH;
use super::types::{Ballot, NodeId, SiteId, Time, WallTime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// What a member keeps of one run, on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub site: SiteId,
    pub run: u64,
    pub trigger: RunTrigger,
    /// No leader with a lower ballot is acknowledged any more.
    pub promised: Ballot,
    /// The ballot of the leader that wrote `journal`.
    pub journal_ballot: Ballot,
    pub journal: Vec<JournalEntry>,
    /// An operator forced the run: the anycast rule does not hold back its bgp steps.
    #[serde(default)]
    pub forced: bool,
    /// Wall-clock time before which the run's first step must not start (the takeover delay),
    /// as the leader saw it: a node taking the run over waits on its own monotonic clock and
    /// uses this only to shorten its wait, never to skip the delay (see `core::node::runs`).
    pub start_at: WallTime,
}

impl RunRecord {
    /// Given up before its first step because its verdict was replaced: it changed nothing.
    pub fn is_dropped(&self) -> bool {
        self.journal.iter().any(|e| {
            matches!(
                e.kind,
                JournalKind::RunFinished {
                    outcome: super::pipeline::RunOutcome::Dropped { .. }
                }
            )
        })
    }

    pub fn is_finished(&self) -> bool {
        self.journal
            .iter()
            .any(|e| matches!(e.kind, JournalKind::RunFinished { .. }))
    }

    /// The node that wrote the journal: the run's leader as far as this copy knows.
    pub fn leader(&self) -> &NodeId {
        &self.journal_ballot.proposer
    }

    /// The fencing token of the newest leader this copy knows.
    pub fn term(&self) -> u64 {
        self.promised.epoch.max(self.journal_ballot.epoch)
    }
}

/// The most journal entries, by their encoded size, one `Append` carries: a quarter of the
/// wire limit, so that the register and framing always fit beside them.
pub const APPEND_BATCH_BYTES: usize = 64 * 1024;

/// Messages between the members of a run's electorate (and its leader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunMsg {
    /// The leader's register under its ballot (`record.journal_ballot`) and its journal
    /// entries from index `from` on: `record.journal` holds only those, at most
    /// `APPEND_BATCH_BYTES` of them. The leader's journal had `len` entries when it was sent.
    Append {
        record: RunRecord,
        from: u32,
        len: u32,
    },
    /// "I still lead, and my journal has `len` entries."
    Heartbeat {
        site: SiteId,
        run: u64,
        ballot: Ballot,
        len: u32,
    },
    /// The answer to `Append` and `Heartbeat`: `len` entries of `ballot`'s journal held.
    Ack {
        site: SiteId,
        run: u64,
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        len: u32,
    },
    /// A takeover: "promise `ballot` and send me your copy; I hold `held` entries of
    /// `held_ballot`'s journal already". Sent again to a member that promised, to fetch the
    /// rest of its copy.
    Prepare {
        site: SiteId,
        run: u64,
        ballot: Ballot,
        trigger: RunTrigger,
        start_at: WallTime,
        held_ballot: Ballot,
        held: u32,
    },
    /// `record` is the member's register with its journal entries from index `from` on (at
    /// most `APPEND_BATCH_BYTES` of them); its whole journal has `len` entries.
    Promise {
        site: SiteId,
        run: u64,
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        record: Option<RunRecord>,
        from: u32,
        len: u32,
    },
}

impl RunMsg {
    pub fn key(&self) -> (SiteId, u64) {
        match self {
            RunMsg::Append { record, .. } => (record.site.clone(), record.run),
            RunMsg::Heartbeat { site, run, .. }
            | RunMsg::Ack { site, run, .. }
            | RunMsg::Prepare { site, run, .. }
            | RunMsg::Promise { site, run, .. } => (site.clone(), *run),
        }
    }

    /// False when a run id, ballot or term in the message is above `MAX_EPOCH`, or an
    /// `Append`'s batch starts past the journal it claims: such a message is refused whole
    /// (`Refusal::NumberOutOfBounds`), never adopted, so it can neither stop a run nor make
    /// the next term overflow.
    pub fn in_bounds(&self) -> bool {
        let b = |b: &Ballot| b.epoch <= MAX_EPOCH;
        let rec = |r: &RunRecord| {
            r.run <= MAX_EPOCH
                && b(&r.promised)
                && b(&r.journal_ballot)
                && r.journal
                    .iter()
                    .all(|e| e.epoch <= MAX_EPOCH && e.term <= MAX_EPOCH)
        };
        match self {
            RunMsg::Append { record, from, len } => rec(record) && from <= len,
            RunMsg::Heartbeat { run, ballot, .. } => *run <= MAX_EPOCH && b(ballot),
            RunMsg::Prepare {
                run,
                ballot,
                held_ballot,
                ..
            } => *run <= MAX_EPOCH && b(ballot) && b(held_ballot),
            RunMsg::Ack {
                run,
                ballot,
                promised,
                ..
            } => *run <= MAX_EPOCH && b(ballot) && b(promised),
            RunMsg::Promise {
                run,
                ballot,
                promised,
                record,
                from,
                len,
                ..
            } => {
                *run <= MAX_EPOCH
                    && b(ballot)
                    && b(promised)
                    && record.iter().all(rec)
                    && from <= len
            }
        }
    }
}

/// An upper bound of `entry`'s encoded size (bincode varint: at most 10 bytes per integer or
/// length prefix), used to fill an `Append` without encoding it.
pub fn entry_size_bound(e: &JournalEntry) -> usize {
    const INT: usize = 10;
    let steps = |v: &[super::pipeline::StepRef]| INT + v.len() * (1 + INT);
    let kind = match &e.kind {
        JournalKind::Started => 1,
        JournalKind::Finished { detail, .. } => 2 + INT + detail.len(),
        JournalKind::RunFinished { outcome } => {
            1 + match outcome {
                RunOutcome::Succeeded {
                    continued,
                    post_failed,
                } => 1 + steps(continued) + steps(post_failed),
                RunOutcome::PrecheckFailed { detail, .. } | RunOutcome::Aborted { detail, .. } => {
                    2 + 2 * INT + detail.len()
                }
                RunOutcome::Dropped { detail } => 1 + INT + detail.len(),
                RunOutcome::Compensated {
                    detail,
                    compensation_failed,
                    ..
                } => 2 + 2 * INT + detail.len() + steps(compensation_failed),
            }
        }
    };
    // site, epoch, term, step (phase + index), name, attempt, at.
    8 * INT + 1 + e.site.as_str().len() + e.name.len() + kind
}

/// `rec`'s register with only its entries from `at` on that fit `APPEND_BATCH_BYTES`, and
/// where they end.
fn register_with_batch(rec: &RunRecord, at: usize) -> (RunRecord, usize) {
    let at = at.min(rec.journal.len());
    let entries = batch(&rec.journal, at).to_vec();
    let end = at + entries.len();
    let record = RunRecord {
        site: rec.site.clone(),
        run: rec.run,
        trigger: rec.trigger,
        promised: rec.promised.clone(),
        journal_ballot: rec.journal_ballot.clone(),
        journal: entries,
        forced: rec.forced,
        start_at: rec.start_at,
    };
    (record, end)
}

/// The entries of `journal` from `at` on that fit `APPEND_BATCH_BYTES`; at least one, so that
/// a single large entry still travels (alone).
fn batch(journal: &[JournalEntry], at: usize) -> &[JournalEntry] {
    let rest = journal.get(at..).unwrap_or_default();
    let mut size = 0;
    let n = rest
        .iter()
        .take_while(|e| {
            size += entry_size_bound(e);
            size <= APPEND_BATCH_BYTES
        })
        .count();
    &rest[..n.max(rest.len().min(1))]
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaAction {
    /// Make the record durable (register and journal) before any later action.
    Persist(RunRecord),
    Send {
        to: NodeId,
        msg: RunMsg,
    },
    /// This node now leads the run under `term` from `journal` (a takeover): run the rest.
    Lead {
        site: SiteId,
        run: u64,
        trigger: RunTrigger,
        term: u64,
        journal: Vec<JournalEntry>,
        start_at: WallTime,
    },
    /// A leader with a higher ballot acts for the run: stop running it here.
    Yield {
        site: SiteId,
        run: u64,
        to: Ballot,
    },
    /// A message of `from` about a run of `site` was refused and changed nothing.
    Refused {
        from: NodeId,
        site: SiteId,
        reason: super::trust::Refusal,
    },
}

enum Role {
    Follower,
    Candidate {
        ballot: Ballot,
        promises: BTreeMap<NodeId, Option<Promised>>,
        /// Members that refused: the candidacy ends once a majority can no longer grant it.
        refused: BTreeSet<NodeId>,
        since: Time,
    },
    Leader {
        /// Journal entries each member acknowledged holding, and when it last did.
        acked: BTreeMap<NodeId, (usize, Time)>,
        /// Where the newest batch sent to each member ends: one beyond what it acknowledged
        /// means a batch is under way, and its `Ack` sends the next.
        sent: BTreeMap<NodeId, usize>,
        next_heartbeat: Time,
    },
}

/// A member's copy as its promise brought it: its register with the entries that arrived so
/// far (from the first on), and how many it holds in all.
struct Promised {
    record: RunRecord,
    len: usize,
}

impl Promised {
    fn whole(record: RunRecord) -> Promised {
        let len = record.journal.len();
        Promised { record, len }
    }

    fn complete(&self) -> bool {
        self.record.journal.len() >= self.len
    }
}

struct Replica {
    record: RunRecord,
    electorate: Electorate,
    role: Role,
    /// When this member last accepted a message of the leader it promised (or learned the
    /// run). The lease runs from here. None for a run first heard of through a takeover: it
    /// has no leader to wait for.
    last_heard: Option<Time>,
    /// After a failed campaign: no new one before this.
    retry_at: Option<Time>,
    /// The part received so far of a newer leader's journal, kept apart (and only in memory)
    /// until it is whole: were a partial copy labeled with the newer ballot, a takeover would
    /// prefer it to a longer copy of an older ballot and lose entries a majority held.
    staged: Option<(Ballot, Vec<JournalEntry>)>,
    /// Expected, not heard of: a committed DOWN verdict names the run's leader, whose register
    /// has not arrived (see `Replicas::expect`). Never persisted while set; the first `Persist`
    /// of the record (the leader's register, a promise, a takeover) makes it a copy.
    placeholder: bool,
}

impl Replica {
    /// A copy this node follows (it has heard of the run at `last_heard`, if ever).
    fn follower(record: RunRecord, electorate: Electorate, last_heard: Option<Time>) -> Replica {
        Replica {
            record,
            electorate,
            role: Role::Follower,
            last_heard,
            retry_at: None,
            staged: None,
            placeholder: false,
        }
    }

    /// An `Append` to a member with this leader's entries from `at` (a batch), and where the
    /// batch ends.
    fn append_from(&self, at: usize) -> (RunMsg, usize) {
        let (record, end) = register_with_batch(&self.record, at);
        let msg = RunMsg::Append {
            from: (end - record.journal.len()) as u32,
            len: self.record.journal.len() as u32,
            record,
        };
        (msg, end)
    }

    /// Sends `to` the next batch from `at`, if this node leads the run.
    fn send_batch(&mut self, actions: &mut VecDeque<ReplicaAction>, to: &NodeId, at: usize) {
        let (msg, end) = self.append_from(at);
        if let Role::Leader { sent, .. } = &mut self.role {
            sent.insert(to.clone(), end);
            actions.push_back(ReplicaAction::Send {
                to: to.clone(),
                msg,
            });
        }
    }

    fn others(&self, me: &NodeId) -> Vec<NodeId> {
        self.electorate
            .members()
            .filter(|m| *m != me)
            .cloned()
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// How long members wait without hearing a run's leader before one takes over.
    pub lease: Duration,
    /// How often a leader sends heartbeats; also the stagger between candidates.
    pub heartbeat: Duration,
}

impl ReplicaConfig {
    /// Three status intervals, at least 600 ms and at most 10 s; heartbeats four per lease.
    pub fn from_status_interval(status: Duration) -> ReplicaConfig {
        let lease = status
            .saturating_mul(3)
            .clamp(Duration::from_millis(600), Duration::from_secs(10));
        ReplicaConfig {
            lease,
            heartbeat: lease / 4,
        }
    }
}

pub struct Replicas {
    me: NodeId,
    config: ReplicaConfig,
    runs: BTreeMap<(SiteId, u64), Replica>,
    actions: VecDeque<ReplicaAction>,
}

impl Replicas {
    pub fn new(me: NodeId, config: ReplicaConfig) -> Replicas {
        Replicas {
            me,
            config,
            runs: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// Replaces the lease and heartbeat (fleet reload); running leases keep their start.
    pub fn set_config(&mut self, config: ReplicaConfig) {
        self.config = config;
    }

    pub fn config(&self) -> ReplicaConfig {
        self.config
    }

    pub fn poll_action(&mut self) -> Option<ReplicaAction> {
        let a = self.actions.pop_front()?;
        if let ReplicaAction::Persist(rec) = &a {
            // Durable from now on: an expected run becomes a copy like any other.
            if let Some(r) = self.runs.get_mut(&(rec.site.clone(), rec.run)) {
                r.placeholder = false;
            }
        }
        Some(a)
    }

    /// The copy this node holds of a run (an expected run it has not heard of is none).
    pub fn record(&self, site: &SiteId, run: u64) -> Option<&RunRecord> {
        self.runs
            .get(&(site.clone(), run))
            .filter(|r| !r.placeholder)
            .map(|r| &r.record)
    }

    /// Every copy this node holds (expected runs not heard of excluded).
    pub fn records(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs
            .values()
            .filter(|r| !r.placeholder)
            .map(|r| &r.record)
    }

    pub fn is_leader(&self, site: &SiteId, run: u64) -> bool {
        self.runs
            .get(&(site.clone(), run))
            .is_some_and(|r| matches!(r.role, Role::Leader { .. }))
    }

    /// A copy read back from disk after a restart. A run this node led under the ballot it
    /// still holds is led again (its journal goes out at once); any other is followed, with
    /// the lease counted from now.
    pub fn load(&mut self, now: Time, record: RunRecord, electorate: Electorate) {
        let leads = record.journal_ballot.proposer == self.me
            && record.promised == record.journal_ballot
            && !record.is_finished();
        let key = (record.site.clone(), record.run);
        self.runs.insert(
            key.clone(),
            Replica::follower(record, electorate, Some(now)),
        );
        if leads {
            self.become_leader(now, &key);
        }
    }

    /// This node starts leading a run under `Ballot { epoch: run, proposer: me }`, with the
    /// journal it already holds (empty for a new run).
    #[allow(clippy::too_many_arguments)]
    pub fn lead_new(
        &mut self,
        now: Time,
        site: SiteId,
        run: u64,
        trigger: RunTrigger,
        forced: bool,
        start_at: WallTime,
        electorate: Electorate,
        journal: Vec<JournalEntry>,
    ) {
        let ballot = Ballot {
            epoch: run,
            proposer: self.me.clone(),
        };
        let key = (site.clone(), run);
        if let Some(r) = self.runs.get(&key) {
            if r.record.promised > ballot {
                // Someone already took this run over; it is not ours to start.
                return;
            }
        }
        let record = RunRecord {
            site,
            run,
            trigger,
            promised: ballot.clone(),
            journal_ballot: ballot,
            journal,
            forced,
            start_at,
        };
        self.runs.insert(
            key.clone(),
            Replica::follower(record.clone(), electorate, Some(now)),
        );
        self.actions.push_back(ReplicaAction::Persist(record));
        self.become_leader(now, &key);
    }

    /// The leader journaled `entry` locally (durably): it goes to the electorate.
    pub fn appended(&mut self, now: Time, entry: JournalEntry) {
        let key = (entry.site.clone(), entry.epoch);
        let me = self.me.clone();
        let Some(r) = self.runs.get_mut(&key) else {
            return;
        };
        if !matches!(r.role, Role::Leader { .. }) {
            return;
        }
        r.record.journal.push(entry);
        self.actions
            .push_back(ReplicaAction::Persist(r.record.clone()));
        for m in r.others(&me) {
            let Role::Leader { acked, sent, .. } = &r.role else {
                break;
            };
            let held = acked.get(&m).map_or(0, |(n, _)| *n);
            // A member with a batch under way gets the new entry when it acknowledges that
            // batch (or from the next heartbeat, should the batch be lost).
            if sent.get(&m).is_none_or(|s| *s <= held) {
                r.send_batch(&mut self.actions, &m, held);
            }
        }
        if let Role::Leader { next_heartbeat, .. } = &mut r.role {
            *next_heartbeat = now + self.config.heartbeat;
        }
    }

    /// True when this node leads the run and a majority of its electorate holds the whole
    /// journal: the step whose start is the last entry may begin.
    pub fn replicated(&self, site: &SiteId, run: u64) -> bool {
        let Some(r) = self.runs.get(&(site.clone(), run)) else {
            return false;
        };
        let Role::Leader { acked, .. } = &r.role else {
            return false;
        };
        let len = r.record.journal.len();
        let holders = r
            .electorate
            .members()
            .filter(|m| **m == self.me || acked.get(*m).is_some_and(|(n, _)| *n >= len))
            .count();
        holders >= r.electorate.majority()
    }

    /// The earliest time `tick` has something to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.runs
            .values()
            .filter_map(|r| match &r.role {
                Role::Leader { next_heartbeat, .. } => Some(*next_heartbeat),
                Role::Candidate { since, .. } => Some(*since + self.config.lease),
                Role::Follower if !r.record.is_finished() && r.electorate.contains(&self.me) => {
                    let lapse =
                        r.last_heard.unwrap_or(Time::ZERO) + self.config.lease + self.stagger(r);
                    Some(r.retry_at.map_or(lapse, |t| t.max(lapse)))
                }
                Role::Follower => None,
            })
            .min()
    }

    /// Heartbeats, candidate timeouts and takeovers. `may_take_over` says whether a run still
    /// needs running (its verdict still stands, no newer run of the site replaced it, ...).
    pub fn tick(&mut self, now: Time, may_take_over: impl Fn(&RunRecord) -> bool) {
        let keys: Vec<(SiteId, u64)> = self.runs.keys().cloned().collect();
        for key in keys {
            let stagger = self.stagger(&self.runs[&key]);
            let jitter = self.jitter(&self.runs[&key]);
            let lease = self.config.lease;
            let heartbeat = self.config.heartbeat;
            let me = self.me.clone();
            let r = self.runs.get_mut(&key).expect("key from the map");
            match &mut r.role {
                Role::Leader {
                    acked,
                    next_heartbeat,
                    ..
                } => {
                    if now < *next_heartbeat {
                        continue;
                    }
                    *next_heartbeat = now + heartbeat;
                    let len = r.record.journal.len();
                    let finished = r.record.is_finished();
                    let held: Vec<(NodeId, usize)> = r
                        .electorate
                        .members()
                        .filter(|m| **m != me)
                        .map(|m| (m.clone(), acked.get(m).map_or(0, |(n, _)| *n)))
                        .collect();
                    for (m, held) in held {
                        let msg = if held < len {
                            // Lost or unanswered: the batch from what it holds, again.
                            r.send_batch(&mut self.actions, &m, held);
                            continue;
                        } else if finished {
                            // Everyone who answered has the end; nothing to keep alive.
                            continue;
                        } else {
                            RunMsg::Heartbeat {
                                site: key.0.clone(),
                                run: key.1,
                                ballot: r.record.journal_ballot.clone(),
                                len: len as u32,
                            }
                        };
                        self.actions.push_back(ReplicaAction::Send { to: m, msg });
                    }
                }
                Role::Candidate { since, .. } => {
                    if now >= *since + lease {
                        // No majority answered: try again later.
                        r.role = Role::Follower;
                        r.retry_at = Some(now + lease / 2 + stagger + jitter);
                    }
                }
                Role::Follower => {
                    if r.record.is_finished()
                        || !r.electorate.contains(&me)
                        || now < r.last_heard.unwrap_or(Time::ZERO) + lease + stagger
                        || r.retry_at.is_some_and(|t| now < t)
                    {
                        continue;
                    }
                    if !may_take_over(&r.record) {
                        // Not needed now: look again a lease later, not at every wake-up.
                        r.retry_at = Some(now + lease);
                        continue;
                    }
                    self.start_takeover(now, &key);
                }
            }
        }
    }

    /// Members other than the silent leader, in id order, wait one heartbeat more per rank;
    /// the silent leader itself (back from a restart, its lease lost) comes last: sharing the
    /// first rank, it started every candidacy at the same moment as the first member, and the
    /// two split the grants round after round.
    fn stagger(&self, r: &Replica) -> Duration {
        let leader = r.record.leader();
        let others: Vec<&NodeId> = r.electorate.members().filter(|m| *m != leader).collect();
        let rank = others
            .iter()
            .position(|m| **m == self.me)
            .unwrap_or(others.len());
        self.config
            .heartbeat
            .saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX))
    }

    /// A pause of up to half a lease, different for each member, run and term: members that
    /// lost a candidacy together do not all come back at the same moment (a rank alone did
    /// not keep them apart when their copies named different leaders).
    fn jitter(&self, r: &Replica) -> Duration {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.me, &r.record.site, r.record.run, r.record.term()).hash(&mut h);
        let half = (self.config.lease / 2).as_micros().max(1) as u64;
        Duration::from_micros(h.finish() % half)
    }

    fn start_takeover(&mut self, now: Time, key: &(SiteId, u64)) {
        let me = self.me.clone();
        let r = self.runs.get_mut(key).expect("caller checked");
        let Some(epoch) = r.record.term().checked_add(1).filter(|e| *e <= MAX_EPOCH) else {
            // No term is left above this one: the run cannot change hands any more.
            r.retry_at = Some(now + self.config.lease);
            return;
        };
        let ballot = Ballot {
            epoch,
            proposer: me.clone(),
        };
        r.record.promised = ballot.clone();
        let mut promises = BTreeMap::new();
        promises.insert(me.clone(), Some(Promised::whole(r.record.clone())));
        r.role = Role::Candidate {
            ballot: ballot.clone(),
            promises,
            refused: BTreeSet::new(),
            since: now,
        };
        self.actions
            .push_back(ReplicaAction::Persist(r.record.clone()));
        for m in r.electorate.members().filter(|m| **m != me) {
            self.actions.push_back(ReplicaAction::Send {
                to: m.clone(),
                msg: RunMsg::Prepare {
                    site: key.0.clone(),
                    run: key.1,
                    ballot: ballot.clone(),
                    trigger: r.record.trigger,
                    start_at: r.record.start_at,
                    held_ballot: r.record.journal_ballot.clone(),
                    held: r.record.journal.len() as u32,
                },
            });
        }
        // An electorate of one is its own majority.
        self.try_win(now, key);
    }

    fn become_leader(&mut self, now: Time, key: &(SiteId, u64)) {
        let me = self.me.clone();
        let r = self.runs.get_mut(key).expect("caller inserted");
        r.role = Role::Leader {
            acked: BTreeMap::new(),
            sent: BTreeMap::new(),
            next_heartbeat: now + self.config.heartbeat,
        };
        r.staged = None;
        // Nothing is known of what the members hold: from the start.
        for m in r.others(&me) {
            r.send_batch(&mut self.actions, &m, 0);
        }
    }
}

mod expected;
mod messages;
mod trigger;

pub use trigger::RunTrigger;

#[cfg(test)]
#[path = "replica/trust_tests.rs"]
mod trust_tests;

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
