//! The replication core's answers to messages: a member accepting (or refusing) a leader's
//! journal and heartbeats and a candidate's takeover, a leader counting acknowledgements, and
//! a candidate counting promises until it wins.

use super::*;
use crate::core::trust::{Refusal, MAX_EPOCH};

impl Replicas {
    /// Handles a message of `from`; `electorate` is the site's electorate, used when the run is
    /// new to this node. A message from outside the electorate, one naming another leader or
    /// candidate than its sender, or one with a term above `MAX_EPOCH` is refused
    /// (`ReplicaAction::Refused`) and changes nothing.
    pub fn handle(&mut self, now: Time, from: &NodeId, msg: RunMsg, electorate: &Electorate) {
        let key = msg.key();
        let allowed = authorize(from, &msg, electorate).and_then(|()| {
            msg.in_bounds()
                .then_some(())
                .ok_or(Refusal::NumberOutOfBounds)
        });
        if let Err(reason) = allowed {
            self.actions.push_back(ReplicaAction::Refused {
                from: from.clone(),
                site: key.0,
                reason,
            });
            return;
        }
        match msg {
            RunMsg::Append {
                record,
                from: at,
                len,
            } => {
                let batch = Batch {
                    at: at as usize,
                    len: len as usize,
                };
                self.on_append(now, from, key, record, batch, electorate)
            }
            RunMsg::Heartbeat { ballot, len, .. } => {
                self.on_heartbeat(now, from, key, ballot, len as usize)
            }
            RunMsg::Ack {
                ballot,
                ok,
                promised,
                len,
                ..
            } => self.on_ack(now, from, key, ballot, ok, promised, len as usize),
            RunMsg::Prepare {
                ballot,
                trigger,
                start_at,
                held_ballot,
                held,
                ..
            } => {
                let held = (held_ballot, held as usize);
                self.on_prepare(now, from, key, ballot, trigger, start_at, held, electorate)
            }
            RunMsg::Promise {
                ballot,
                ok,
                promised,
                record,
                from: at,
                len,
                ..
            } => {
                let batch = Batch {
                    at: at as usize,
                    len: len as usize,
                };
                self.on_promise(now, from, key, ballot, ok, promised, record, batch)
            }
        }
    }

    /// Answers a leader's `Append` or `Heartbeat`: `len` entries of `ballot`'s journal held,
    /// or refused (`ok: false`) because `promised` is higher.
    #[allow(clippy::too_many_arguments)]
    fn ack(
        &mut self,
        to: &NodeId,
        key: &(SiteId, u64),
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        len: usize,
    ) {
        self.actions.push_back(ReplicaAction::Send {
            to: to.clone(),
            msg: RunMsg::Ack {
                site: key.0.clone(),
                run: key.1,
                ballot,
                ok,
                promised,
                len: len as u32,
            },
        });
    }

    /// Steps down from leading or campaigning for a run when a higher ballot shows up.
    pub(super) fn yield_to(&mut self, key: &(SiteId, u64), ballot: &Ballot) {
        let Some(r) = self.runs.get_mut(key) else {
            return;
        };
        match &r.role {
            Role::Leader { .. } if r.record.journal_ballot < *ballot => {
                r.role = Role::Follower;
                self.actions.push_back(ReplicaAction::Yield {
                    site: key.0.clone(),
                    run: key.1,
                    to: ballot.clone(),
                });
            }
            Role::Candidate { ballot: mine, .. } if mine < ballot => r.role = Role::Follower,
            _ => {}
        }
    }

    /// A leader's batch: its register with the entries from `batch.at` on.
    fn on_append(
        &mut self,
        now: Time,
        from: &NodeId,
        key: (SiteId, u64),
        record: RunRecord,
        batch: Batch,
        electorate: &Electorate,
    ) {
        let ballot = record.journal_ballot.clone();
        if let Some(r) = self.runs.get(&key) {
            if ballot < r.record.promised {
                let promised = r.record.promised.clone();
                self.ack(from, &key, ballot, false, promised, 0);
                return;
            }
        }
        self.yield_to(&key, &ballot);
        let mut changed = false;
        let r = self.runs.entry(key.clone()).or_insert_with(|| {
            changed = true;
            // Nothing of any leader's journal is held yet.
            let unknown = RunRecord {
                promised: Ballot::zero(),
                journal_ballot: Ballot::zero(),
                journal: Vec::new(),
                ..record.clone()
            };
            Replica::follower(unknown, electorate.clone(), Some(now))
        });
        let held = if r.record.journal_ballot == ballot {
            r.staged = None;
            extend(&mut r.record.journal, batch.at, record.journal).map(|grew| {
                changed |= grew;
                r.record.journal.len()
            })
        } else {
            if r.staged.as_ref().is_none_or(|(b, _)| *b != ballot) {
                r.staged = Some((ballot.clone(), Vec::new()));
            }
            let (_, staged) = r.staged.as_mut().expect("set above");
            let held = extend(staged, batch.at, record.journal).map(|_| staged.len());
            if held.is_some_and(|n| n >= batch.len) {
                // Whole (as of when the leader sent it): the copy is the new leader's now.
                let (_, journal) = r.staged.take().expect("set above");
                r.record.journal = journal;
                r.record.journal_ballot = ballot.clone();
                changed = true;
            }
            held
        };
        if r.record.journal_ballot == ballot
            && (r.record.start_at, r.record.forced) != (record.start_at, record.forced)
        {
            r.record.start_at = record.start_at;
            r.record.forced = record.forced;
            changed = true;
        }
        if ballot > r.record.promised {
            r.record.promised = ballot.clone();
            changed = true;
        }
        r.last_heard = Some(now);
        // The expected register arrived: the copy is the leader's now, and durable.
        changed |= r.placeholder;
        if changed {
            self.actions
                .push_back(ReplicaAction::Persist(r.record.clone()));
        }
        let promised = r.record.promised.clone();
        // A batch past what is held (its predecessor was lost, or this copy was lost): 0
        // makes the leader start over from the first entry.
        self.ack(from, &key, ballot, true, promised, held.unwrap_or(0));
    }

    fn on_heartbeat(
        &mut self,
        now: Time,
        from: &NodeId,
        key: (SiteId, u64),
        ballot: Ballot,
        len: usize,
    ) {
        let Some(r) = self.runs.get(&key) else {
            // Unknown run: ask for the whole journal.
            self.ack(from, &key, ballot, true, Ballot::zero(), 0);
            return;
        };
        if ballot < r.record.promised {
            let promised = r.record.promised.clone();
            self.ack(from, &key, ballot, false, promised, 0);
            return;
        }
        self.yield_to(&key, &ballot);
        let r = self.runs.get_mut(&key).expect("checked above");
        r.last_heard = Some(now);
        if ballot > r.record.promised {
            r.record.promised = ballot.clone();
            self.actions
                .push_back(ReplicaAction::Persist(r.record.clone()));
        }
        let held = if r.record.journal_ballot == ballot {
            r.record.journal.len().min(len)
        } else {
            0
        };
        let promised = r.record.promised.clone();
        self.ack(from, &key, ballot, true, promised, held);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ack(
        &mut self,
        now: Time,
        from: &NodeId,
        key: (SiteId, u64),
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        len: usize,
    ) {
        let Some(r) = self.runs.get_mut(&key) else {
            return;
        };
        if r.record.journal_ballot != ballot {
            return;
        }
        if !ok {
            if promised > ballot {
                self.yield_to(&key, &promised);
            }
            return;
        }
        let Role::Leader { acked, sent, .. } = &mut r.role else {
            return;
        };
        let e = acked.entry(from.clone()).or_insert((0, now));
        let before = e.0;
        // An Ack with len 0 from a member that lost its copy (or missed a batch) resets what
        // it holds; any other only ever raises it, as late answers arrive out of order.
        e.0 = if len == 0 { 0 } else { e.0.max(len) };
        e.1 = now;
        let held = e.0;
        if len == 0 {
            sent.remove(from);
        }
        // The next batch goes out on progress only, so a repeated answer sends nothing twice,
        // and not while a later batch is under way (its own answer will send on).
        let progress = len == 0 || held > before;
        let idle = sent.get(from).is_none_or(|s| *s <= held);
        if progress && idle && held < r.record.journal.len() {
            r.send_batch(&mut self.actions, from, held);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_prepare(
        &mut self,
        now: Time,
        from: &NodeId,
        key: (SiteId, u64),
        ballot: Ballot,
        trigger: RunTrigger,
        start_at: WallTime,
        held: (Ballot, usize),
        electorate: &Electorate,
    ) {
        // Members hear the leader's last message a few ms apart; a candidate that waited a
        // whole lease from its own last message must not be refused for that. The lease only
        // spares needless takeovers: safety rests on majority-held journals and promises.
        let lease = self.config.lease.saturating_sub(self.config.heartbeat);
        // A run first heard of through a takeover has no leader to wait for.
        let r = self.runs.entry(key.clone()).or_insert_with(|| {
            let unknown = RunRecord {
                site: key.0.clone(),
                run: key.1,
                trigger,
                promised: Ballot::zero(),
                journal_ballot: Ballot::zero(),
                journal: Vec::new(),
                forced: false,
                start_at,
            };
            Replica::follower(unknown, electorate.clone(), None)
        });
        let leader_alive = match &r.role {
            Role::Leader { .. } => true,
            _ => r.last_heard.is_some_and(|t| now < t + lease),
        };
        // Strictly above every promised epoch, so that no two candidates win the same one; the
        // candidate this node promised may ask again for the rest of its copy.
        let again = r.record.promised == ballot;
        let grant = again || (ballot.epoch > r.record.promised.epoch && !leader_alive);
        if !grant {
            let promised = r.record.promised.clone();
            self.actions.push_back(ReplicaAction::Send {
                to: from.clone(),
                msg: RunMsg::Promise {
                    site: key.0,
                    run: key.1,
                    ballot,
                    ok: false,
                    promised,
                    record: None,
                    from: 0,
                    len: 0,
                },
            });
            return;
        }
        self.yield_to(&key, &ballot);
        let r = self.runs.get_mut(&key).expect("inserted above");
        if !again {
            r.record.promised = ballot.clone();
            // The lease is renewed only by the winner's first Append: a grant to a candidate
            // that then fails must not hold off the next one.
            self.actions
                .push_back(ReplicaAction::Persist(r.record.clone()));
        }
        // Only what the candidate lacks: under one ballot copies are prefixes of each other.
        let at = if r.record.journal_ballot == held.0 {
            held.1.min(r.record.journal.len())
        } else {
            0
        };
        let (record, end) = register_with_batch(&r.record, at);
        self.actions.push_back(ReplicaAction::Send {
            to: from.clone(),
            msg: RunMsg::Promise {
                site: key.0,
                run: key.1,
                ballot: ballot.clone(),
                ok: true,
                promised: ballot,
                from: (end - record.journal.len()) as u32,
                len: r.record.journal.len() as u32,
                record: Some(record),
            },
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_promise(
        &mut self,
        now: Time,
        from: &NodeId,
        key: (SiteId, u64),
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        record: Option<RunRecord>,
        batch: Batch,
    ) {
        let Some(r) = self.runs.get_mut(&key) else {
            return;
        };
        let Replica {
            record: own, role, ..
        } = r;
        let Role::Candidate {
            ballot: mine,
            promises,
            refused,
            ..
        } = role
        else {
            return;
        };
        if *mine != ballot {
            return;
        }
        if !ok {
            // Another candidate got there first, or the member still hears the leader. Unless
            // it promised a higher ballot, the others may still grant a majority (ending at the
            // first refusal, candidates that woke together refused each other forever); once
            // they cannot, try again later, above what was promised.
            refused.insert(from.clone());
            let mut hopeless = refused.len() > r.electorate.len() - r.electorate.majority();
            if promised > r.record.promised {
                // A higher ballot was promised there: this node promises it too (its copy's
                // promise is its own acceptor's), which ends its own lower candidacy.
                r.record.promised = promised;
                self.actions
                    .push_back(ReplicaAction::Persist(r.record.clone()));
                hopeless = true;
            }
            if hopeless {
                let stagger = self.stagger(&self.runs[&key]) + self.jitter(&self.runs[&key]);
                let r = self.runs.get_mut(&key).expect("checked above");
                r.role = Role::Follower;
                r.retry_at = Some(now + self.config.lease / 2 + stagger);
            }
            return;
        }
        let copy = record.map(|rec| {
            let before = promises.remove(from).flatten();
            absorb(before, own, rec, batch)
        });
        promises.insert(from.clone(), copy);
        self.try_win(now, &key);
    }

    pub(super) fn try_win(&mut self, now: Time, key: &(SiteId, u64)) {
        let r = self.runs.get_mut(key).expect("caller checked");
        let Role::Candidate {
            ballot, promises, ..
        } = &r.role
        else {
            return;
        };
        if promises.len() < r.electorate.majority() {
            return;
        }
        // Every entry a majority held is in the copy of the highest ballot, the longest of
        // those on a tie (a whole one among equals).
        let best = promises
            .iter()
            .filter_map(|(n, p)| p.as_ref().map(|p| (n, p)))
            .max_by(|(_, a), (_, b)| {
                (&a.record.journal_ballot, a.len, a.complete()).cmp(&(
                    &b.record.journal_ballot,
                    b.len,
                    b.complete(),
                ))
            });
        if let Some((holder, p)) = best.filter(|(_, p)| !p.complete()) {
            // Part of it is still with its holder: ask for the rest before winning.
            let msg = RunMsg::Prepare {
                site: key.0.clone(),
                run: key.1,
                ballot: ballot.clone(),
                trigger: r.record.trigger,
                start_at: r.record.start_at,
                held_ballot: p.record.journal_ballot.clone(),
                held: p.record.journal.len() as u32,
            };
            let to = holder.clone();
            self.actions.push_back(ReplicaAction::Send { to, msg });
            return;
        }
        let best = best
            .map(|(_, p)| p.record.journal.clone())
            .unwrap_or_default();
        let forced = promises.values().flatten().any(|p| p.record.forced);
        let ballot = ballot.clone();
        r.record.forced |= forced;
        r.record.journal = best;
        r.record.journal_ballot = ballot.clone();
        r.record.promised = ballot.clone();
        let record = r.record.clone();
        self.actions
            .push_back(ReplicaAction::Persist(record.clone()));
        self.actions.push_back(ReplicaAction::Lead {
            site: record.site.clone(),
            run: record.run,
            trigger: record.trigger,
            term: ballot.epoch,
            journal: record.journal.clone(),
            start_at: record.start_at,
        });
        self.become_leader(now, key);
    }
}

/// Whether `from` may send `msg`: only members of the site's electorate take part in a run,
/// a leader or candidate speaks only for itself, and every term fits `MAX_EPOCH` (a term at
/// the bound is refused by the takeover's `checked_add`, never wrapped).
fn authorize(from: &NodeId, msg: &RunMsg, electorate: &Electorate) -> Result<(), Refusal> {
    if !electorate.contains(from) {
        return Err(Refusal::NotInElectorate);
    }
    let fits = |b: &Ballot| b.epoch <= MAX_EPOCH;
    let record_fits =
        |r: &RunRecord| r.run <= MAX_EPOCH && fits(&r.promised) && fits(&r.journal_ballot);
    let (speaker, ok) = match msg {
        RunMsg::Append { record, .. } => {
            (Some(&record.journal_ballot.proposer), record_fits(record))
        }
        RunMsg::Heartbeat { run, ballot, .. } => {
            (Some(&ballot.proposer), *run <= MAX_EPOCH && fits(ballot))
        }
        RunMsg::Prepare { run, ballot, .. } => {
            (Some(&ballot.proposer), *run <= MAX_EPOCH && fits(ballot))
        }
        RunMsg::Ack {
            run,
            ballot,
            promised,
            ..
        } => (None, *run <= MAX_EPOCH && fits(ballot) && fits(promised)),
        RunMsg::Promise {
            run,
            ballot,
            promised,
            record,
            ..
        } => (
            None,
            *run <= MAX_EPOCH
                && fits(ballot)
                && fits(promised)
                && record.as_ref().is_none_or(record_fits),
        ),
    };
    if speaker.is_some_and(|s| s != from) {
        return Err(Refusal::ImpersonatesAnotherNode);
    }
    if !ok {
        return Err(Refusal::NumberOutOfBounds);
    }
    Ok(())
}

/// Where an `Append`'s entries sit in its leader's journal.
#[derive(Clone, Copy)]
struct Batch {
    /// The index of the first entry carried.
    at: usize,
    /// The leader's journal length when it sent them.
    len: usize,
}

/// Applies a batch starting at `at` to `journal`, a copy under the same ballot: under one
/// ballot a journal only grows, so the batch either extends the copy or repeats a part of it.
/// None when the batch starts past the copy's end (a gap); otherwise whether it grew.
fn extend(journal: &mut Vec<JournalEntry>, at: usize, entries: Vec<JournalEntry>) -> Option<bool> {
    if at > journal.len() {
        return None;
    }
    if at + entries.len() <= journal.len() {
        return Some(false);
    }
    journal.truncate(at);
    journal.extend(entries);
    Some(true)
}

/// A member's promised copy with a newly arrived batch of it: the batch extends what arrived
/// before from that member, or what this candidate holds itself of the same ballot (the
/// member sent only what the candidate lacked). A batch that fits neither leaves the copy
/// short, to be asked for again from where it stops.
fn absorb(before: Option<Promised>, own: &RunRecord, mut rec: RunRecord, batch: Batch) -> Promised {
    let ballot = rec.journal_ballot.clone();
    let mut journal = match before {
        Some(p) if p.record.journal_ballot == ballot && p.record.journal.len() >= batch.at => {
            p.record.journal
        }
        _ if own.journal_ballot == ballot && own.journal.len() >= batch.at => {
            own.journal[..batch.at].to_vec()
        }
        _ => Vec::new(),
    };
    let _ = extend(&mut journal, batch.at, std::mem::take(&mut rec.journal));
    Promised {
        record: RunRecord { journal, ..rec },
        len: batch.len,
    }
}
