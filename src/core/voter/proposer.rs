//! The proposer side of a vote: starting rounds when this voter's own opinion reaches the
//! slot's outcome, counting promises and opinions against the whole electorate, committing,
//! and deciding what comes after a round that did not reach a majority.

use super::*;
use crate::core::trust::MAX_EPOCH;
use crate::core::types::EpochKind;

impl Voter {
    pub(super) fn maybe_start(&mut self, now: Time, site: &SiteId, ops: &impl OpinionSource) {
        let slot = next_slot(self.known.get(site));
        let target = Outcome::of_slot(slot);
        let Some(sv) = self.sites.get(site) else {
            return;
        };
        if !matches!(sv.round, Round::Idle)
            || sv.retry_at.is_some_and(|r| now < r)
            || sv.deferred_until.is_some_and(|d| now < d)
        {
            return;
        }
        let report = ops.report(site, now);
        if !self.supports(&report, target) {
            return;
        }
        if let fast::FastStep::Wait = self.fast_step(now, site, slot, &report) {
            return;
        }
        // Epochs reach SQLite as i64: at the bound no new ballot is possible, and no round
        // starts rather than wrap around.
        let Some(epoch) = EpochKind::Verdict.above(self.max_epoch_seen(site)) else {
            return;
        };
        let ballot = Ballot {
            epoch,
            proposer: self.me.clone(),
        };
        let round = self.next_round_id;
        self.next_round_id += 1;
        let last = self.known.get(site).cloned();
        let wait_ms = (self.cfg.vote_timeout.as_millis() * 2 / 3) as u32;
        let me = self.me.clone();
        let sv = self.sites.get_mut(site).expect("site present");
        sv.attempts += 1;
        sv.retry_at = None;
        sv.durable.promised = ballot.clone();
        let mut poll = Poll {
            slot,
            ballot: ballot.clone(),
            round,
            started: now,
            deadline: now + self.cfg.vote_timeout,
            promises: Count::new(),
            opinions: Count::new(),
            reports: BTreeMap::new(),
            answers: BTreeMap::new(),
        };
        if let Some(a) = sv.durable.accepted.clone().filter(|a| a.slot == slot) {
            poll.reports.insert(me.clone(), a);
        }
        poll.promises.vote(&sv.electorate, &me, true);
        poll.opinions.vote(&sv.electorate, &me, true);
        poll.answers.insert(
            me.clone(),
            Answer {
                voter: me.clone(),
                opinion: report.opinion,
                evidence_age_ms: report.evidence_age_ms,
                promised: true,
            },
        );
        let attempt = sv.attempts;
        let peers: Vec<NodeId> = sv
            .electorate
            .members()
            .filter(|m| **m != me)
            .cloned()
            .collect();
        sv.round = Round::Polling(poll);
        self.durable_all.insert(site.clone(), sv.durable.clone());
        self.actions.push_back(VoterAction::Persist {
            site: site.clone(),
            durable: sv.durable.clone(),
        });
        self.actions.push_back(VoterAction::RoundStarted {
            site: site.clone(),
            slot,
            target,
            epoch,
            attempt,
        });
        for to in peers {
            self.actions.push_back(VoterAction::Send {
                to,
                msg: VoteMsg::Prepare {
                    site: site.clone(),
                    slot,
                    ballot: ballot.clone(),
                    round,
                    wait_ms,
                    last: last.clone(),
                },
            });
        }
        self.evaluate_poll(now, site);
    }

    /// Does this report count as a vote for `target`? Stale evidence counts for nothing.
    pub(super) fn supports(&self, r: &OpinionReport, target: Outcome) -> bool {
        self.fresh(r) && r.opinion == target.as_opinion()
    }

    pub(super) fn contradicts(&self, r: &OpinionReport, target: Outcome) -> bool {
        self.fresh(r)
            && match target {
                Outcome::Down => r.opinion == Opinion::Up,
                Outcome::Up => r.opinion == Opinion::Down,
            }
    }

    pub(super) fn fresh(&self, r: &OpinionReport) -> bool {
        u128::from(r.evidence_age_ms) <= self.cfg.evidence_max_age.as_millis()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_promise(
        &mut self,
        now: Time,
        from: &NodeId,
        site: &SiteId,
        slot: u64,
        round: u64,
        ballot: &Ballot,
        ok: bool,
        promised: Ballot,
        accepted: Option<Accepted>,
        opinion: OpinionReport,
    ) {
        let supports = |r: &OpinionReport, t| self.supports(r, t);
        let contradicts = |r: &OpinionReport, t| self.contradicts(r, t);
        let target = Outcome::of_slot(slot);
        let (yes, no) = (supports(&opinion, target), contradicts(&opinion, target));
        let Some(sv) = self.sites.get_mut(site) else {
            return;
        };
        let Round::Polling(p) = &mut sv.round else {
            return;
        };
        if p.round != round || p.slot != slot || &p.ballot != ballot {
            return;
        }
        p.promises.vote(&sv.electorate, from, ok);
        match accepted.filter(|a| a.slot == slot && ok) {
            Some(a) => p.reports.insert(from.clone(), a),
            None => p.reports.remove(from),
        };
        if yes || no {
            p.opinions.vote(&sv.electorate, from, yes);
        }
        p.answers.insert(
            from.clone(),
            Answer {
                voter: from.clone(),
                opinion: opinion.opinion,
                evidence_age_ms: opinion.evidence_age_ms,
                promised: ok,
            },
        );
        if !ok {
            self.seen_epoch(site, promised.epoch);
        }
        self.evaluate_poll(now, site);
    }

    /// An epoch used for `site` outside the vote (a failover run's takeover): the next ballot
    /// outbids it, so fencing tokens keep growing per site.
    pub fn observe_epoch(&mut self, site: &SiteId, epoch: u64) {
        self.seen_epoch(site, epoch);
    }

    /// Keeps the highest epoch seen from others so the next ballot outbids it.
    pub(super) fn seen_epoch(&mut self, site: &SiteId, epoch: u64) {
        let Some(sv) = self.sites.get_mut(site) else {
            return;
        };
        // Never adopted: the next ballot could not outbid it.
        if epoch > MAX_EPOCH {
            return;
        }
        sv.seen_epoch = sv.seen_epoch.max(epoch);
    }

    pub(super) fn evaluate_poll(&mut self, now: Time, site: &SiteId) {
        let sv = self.sites.get_mut(site).expect("site present");
        let Round::Polling(p) = &sv.round else { return };
        let promises = p.promises.standing(&sv.electorate);
        let opinions = p.opinions.standing(&sv.electorate);
        if promises == Standing::Impossible {
            self.end_round(now, site, RoundOutcome::Conflict);
            return;
        }
        if opinions == Standing::Impossible {
            self.end_round(now, site, RoundOutcome::Contradicted);
            return;
        }
        if promises != Standing::Reached || opinions != Standing::Reached {
            return;
        }
        let (slot, ballot) = (p.slot, p.ballot.clone());
        let own = Value {
            outcome: Outcome::of_slot(slot),
            epoch: ballot.epoch,
            leader: self.me.clone(),
        };
        let value = match p.reports.values().max_by(|x, y| x.ballot.cmp(&y.ballot)) {
            None => own,
            Some(top) if !fast::is_fast(&top.ballot) => top.value.clone(),
            Some(top) => {
                // The fast ballot is the highest accepted: more than one value may sit in it
                // (voters that disagreed on the electorate); re-propose the one a majority may
                // have chosen, or wait for answers that tell which.
                let at_top = p.reports.values().filter(|a| a.ballot == top.ballot);
                let chosen = fast::possibly_chosen(
                    at_top.map(|a| &a.value),
                    p.promises.yes(),
                    &sv.electorate,
                );
                match chosen.as_slice() {
                    [] => own,
                    [v] => v.clone(),
                    _ => return,
                }
            }
        };
        self.end_round(now, site, RoundOutcome::Majority);
        let me = self.me.clone();
        let sv = self.sites.get_mut(site).expect("site present");
        if sv.durable.promised != ballot {
            // A higher ballot arrived while we counted; that proposer goes on.
            return;
        }
        sv.durable.accepted = Some(Accepted {
            slot,
            ballot: ballot.clone(),
            value: value.clone(),
        });
        let mut accepts = Count::new();
        accepts.vote(&sv.electorate, &me, true);
        let peers: Vec<NodeId> = sv
            .electorate
            .members()
            .filter(|m| **m != me)
            .cloned()
            .collect();
        sv.round = Round::Committing(Commit {
            slot,
            ballot: ballot.clone(),
            value: value.clone(),
            deadline: now + self.cfg.vote_timeout,
            accepts,
        });
        self.durable_all.insert(site.clone(), sv.durable.clone());
        self.actions.push_back(VoterAction::Persist {
            site: site.clone(),
            durable: sv.durable.clone(),
        });
        for to in peers {
            self.actions.push_back(VoterAction::Send {
                to,
                msg: VoteMsg::Accept {
                    site: site.clone(),
                    slot,
                    ballot: ballot.clone(),
                    value: value.clone(),
                },
            });
        }
        self.evaluate_commit(now, site);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_accept_reply(
        &mut self,
        now: Time,
        from: &NodeId,
        site: &SiteId,
        slot: u64,
        ballot: &Ballot,
        ok: bool,
        promised: Ballot,
    ) {
        let Some(sv) = self.sites.get_mut(site) else {
            return;
        };
        let Round::Committing(c) = &mut sv.round else {
            return;
        };
        if c.slot != slot || &c.ballot != ballot {
            return;
        }
        c.accepts.vote(&sv.electorate, from, ok);
        if !ok {
            self.seen_epoch(site, promised.epoch);
        }
        self.evaluate_commit(now, site);
    }

    pub(super) fn evaluate_commit(&mut self, now: Time, site: &SiteId) {
        let sv = self.sites.get_mut(site).expect("site present");
        let Round::Committing(c) = &sv.round else {
            return;
        };
        match c.accepts.standing(&sv.electorate) {
            Standing::Open => {}
            Standing::Impossible => self.end_round(now, site, RoundOutcome::Conflict),
            Standing::Reached => {
                let verdict = Verdict {
                    site: site.clone(),
                    slot: c.slot,
                    value: c.value.clone(),
                };
                sv.round = Round::Idle;
                self.learn(now, verdict.clone(), true);
                self.actions.push_back(VoterAction::Broadcast {
                    msg: VoteMsg::Commit { verdict },
                });
            }
        }
    }

    /// Closes the current round (if any) and schedules what comes next.
    pub(super) fn end_round(&mut self, now: Time, site: &SiteId, outcome: RoundOutcome) {
        let Some(sv) = self.sites.get_mut(site) else {
            return;
        };
        let round = std::mem::replace(&mut sv.round, Round::Idle);
        let record = match round {
            Round::Idle => return,
            Round::Polling(p) => RoundRecord {
                site: site.clone(),
                slot: p.slot,
                target: Outcome::of_slot(p.slot),
                epoch: p.ballot.epoch,
                attempt: sv.attempts,
                started: p.started,
                ended: now,
                outcome,
                answers: p.answers.into_values().collect(),
            },
            // The commit phase is part of the round that reached a majority; only its failure
            // is reported, as a round of its own.
            Round::Committing(c) => RoundRecord {
                site: site.clone(),
                slot: c.slot,
                target: Outcome::of_slot(c.slot),
                epoch: c.ballot.epoch,
                attempt: sv.attempts,
                started: now,
                ended: now,
                outcome,
                answers: Vec::new(),
            },
        };
        match outcome {
            RoundOutcome::Majority | RoundOutcome::Superseded => {}
            RoundOutcome::Contradicted => {
                sv.attempts = 0;
                sv.retry_at = Some(now + self.cfg.revote_after);
            }
            RoundOutcome::Undecided => {
                if sv.attempts >= self.cfg.max_vote_rounds {
                    sv.attempts = 0;
                    sv.retry_at = Some(now + self.cfg.revote_after);
                } else {
                    sv.retry_at = Some(now + self.cfg.retry_after);
                }
            }
            RoundOutcome::Conflict => {
                sv.conflicts += 1;
                if sv.conflicts >= MAX_CONFLICTS {
                    sv.conflicts = 0;
                    sv.attempts = 0;
                    sv.retry_at = Some(now + self.cfg.revote_after);
                } else {
                    // Random backoff breaks duels between proposers.
                    let max = (self.cfg.vote_timeout.as_micros() as u64 / 2).max(1);
                    let backoff = Duration::from_micros(self.rng.random_range(0..max));
                    sv.retry_at = Some(now + backoff);
                    // A conflict is not a failed attempt of its own.
                    sv.attempts = sv.attempts.saturating_sub(1);
                }
            }
        }
        self.actions.push_back(VoterAction::RoundEnded(record));
    }

    pub(super) fn max_epoch_seen(&self, site: &SiteId) -> u64 {
        let sv = &self.sites[site];
        let mut e = sv.durable.promised.epoch.max(sv.seen_epoch);
        if let Some(a) = &sv.durable.accepted {
            e = e.max(a.ballot.epoch);
        }
        if let Some(k) = self.known.get(site) {
            e = e.max(k.value.epoch);
        }
        e
    }
}
