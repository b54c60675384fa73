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
        if let Err(reason) = authorize(from, &msg, electorate) {
            self.actions.push_back(ReplicaAction::Refused {
                from: from.clone(),
                site: key.0,
                reason,
            });
            return;
        }
        match msg {
            RunMsg::Append { record } => self.on_append(now, from, key, record, electorate),
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
                ..
            } => self.on_prepare(now, from, key, ballot, trigger, start_at, electorate),
            RunMsg::Promise {
                ballot,
                ok,
                promised,
                record,
                ..
            } => self.on_promise(now, from, key, ballot, ok, promised, record),
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

    fn on_append(
        &mut self,
        now: Time,
        from: &NodeId,
        key: (SiteId, u64),
        record: RunRecord,
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
        let r = self.runs.entry(key.clone()).or_insert_with(|| {
            let empty = RunRecord {
                journal: Vec::new(),
                ..record.clone()
            };
            Replica::follower(empty, electorate.clone(), Some(now))
        });
        // Under one ballot a journal only grows; an older copy arriving late is ignored.
        let newer = ballot > r.record.journal_ballot
            || record.journal.len() >= r.record.journal.len()
            || r.record.journal.is_empty();
        let before = r.record.clone();
        if newer {
            r.record.journal = record.journal;
            r.record.journal_ballot = ballot.clone();
            r.record.start_at = record.start_at;
            r.record.forced = record.forced;
        }
        r.record.promised = r.record.promised.clone().max(ballot.clone());
        r.last_heard = Some(now);
        let len = r.record.journal.len();
        if r.record != before || before.journal.is_empty() {
            self.actions
                .push_back(ReplicaAction::Persist(r.record.clone()));
        }
        let promised = r.record.promised.clone();
        self.ack(from, &key, ballot, true, promised, len);
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
        if let Role::Leader { acked, .. } = &mut r.role {
            let e = acked.entry(from.clone()).or_insert((0, now));
            // An Ack with len 0 from a member that lost its copy resets what it holds.
            e.0 = if len == 0 { 0 } else { e.0.max(len) };
            e.1 = now;
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
        // Strictly above every promised epoch, so that no two candidates win the same one.
        let grant = ballot.epoch > r.record.promised.epoch && !leader_alive;
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
                },
            });
            return;
        }
        self.yield_to(&key, &ballot);
        let r = self.runs.get_mut(&key).expect("inserted above");
        r.record.promised = ballot.clone();
        // The lease is renewed only by the winner's first Append: a grant to a candidate that
        // then fails must not hold off the next one.
        self.actions
            .push_back(ReplicaAction::Persist(r.record.clone()));
        self.actions.push_back(ReplicaAction::Send {
            to: from.clone(),
            msg: RunMsg::Promise {
                site: key.0,
                run: key.1,
                ballot: ballot.clone(),
                ok: true,
                promised: ballot,
                record: Some(r.record.clone()),
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
    ) {
        let Some(r) = self.runs.get_mut(&key) else {
            return;
        };
        let Role::Candidate {
            ballot: mine,
            promises,
            ..
        } = &mut r.role
        else {
            return;
        };
        if *mine != ballot {
            return;
        }
        if !ok {
            // Another candidate got there first, or the member still hears the leader: every
            // member's grant may be needed, so try again later, above what it promised.
            r.role = Role::Follower;
            let stagger = self.stagger(&self.runs[&key]);
            let r = self.runs.get_mut(&key).expect("checked above");
            r.retry_at = Some(now + self.config.lease / 2 + stagger);
            if promised > r.record.promised {
                r.record.promised = promised;
                self.actions
                    .push_back(ReplicaAction::Persist(r.record.clone()));
            }
            return;
        }
        promises.insert(from.clone(), record);
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
        // those on a tie.
        let best = promises
            .values()
            .flatten()
            .max_by(|a, b| {
                (&a.journal_ballot, a.journal.len()).cmp(&(&b.journal_ballot, b.journal.len()))
            })
            .map(|b| b.journal.clone())
            .unwrap_or_default();
        let forced = promises.values().flatten().any(|p| p.forced);
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
        RunMsg::Append { record } => (Some(&record.journal_ballot.proposer), record_fits(record)),
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
