//! The fast round of a slot: one message delay from the majority-th opinion to the verdict.
//!
//! Every slot has one fast ballot, below every classic ballot of that slot: epoch one above
//! the previous verdict's, and no proposer (an empty node id sorts before every real one).
//! Its value is fixed by data every voter of the slot agrees on: the slot's outcome, that
//! epoch, and a leader chosen from the slot and the electorate (`fast_leader`). A voter whose
//! own opinion reaches the slot's outcome, with fresh evidence, accepts that value in the fast
//! ballot on its own (no Prepare: nothing can have been chosen below the lowest ballot), makes
//! the acceptance durable and sends `FastAccept` to every member. Each member counts the
//! acceptances it received from their own senders, and learns the verdict once a majority of
//! the electorate accepted the same value within one vote timeout.
//!
//! Why one majority suffices (Fast Paxos needs larger fast quorums only because two
//! proposers may put different values into one fast ballot): here an acceptor accepts at most
//! one value per slot in the fast ballot, and every honest voter computes the same one. A
//! classic round that follows (a voter whose fast round did not decide within the vote
//! timeout falls back to it) reads the acceptances in its Prepare phase and, should the fast
//! ballot be the highest it sees, re-proposes the one value that a majority may still have
//! chosen (`possibly_chosen`); were two values seen there (voters that disagreed on the
//! electorate during a fleet reload), it waits for enough answers to tell which.
//!
//! A voter accepts in the fast ballot only while it knows nothing above the previous
//! verdict's epoch (no higher promise, no later run term): the fast epoch is then above every
//! fencing token of the site, as a classic ballot would be, and above everything it promised.

use super::*;
use crate::core::types::EpochKind;

/// Acceptances one voter received in the fast round of one slot, by sender.
#[derive(Default)]
pub(super) struct Tally {
    slot: u64,
    /// sender -> what it accepted, when its acceptance arrived, and its evidence's age.
    accepted: BTreeMap<NodeId, Heard>,
}

pub(super) struct Heard {
    value: Value,
    at: Time,
    evidence_age_ms: u32,
}

/// This voter's own part in the fast round of `slot`.
pub(super) struct FastTry {
    pub(super) slot: u64,
    /// Not before this does it start a classic round for the slot.
    pub(super) fallback_at: Time,
    /// Its opinion left the slot's outcome since it last accepted. A fast round is given up
    /// for a classic one only by a voter that held the outcome through the vote timeout; one
    /// that comes back after it repeats its acceptance for a new vote timeout instead (a
    /// DOWN taken in the moment its Pinger lagged behind an UP verdict would otherwise cost
    /// the slot's real DOWN, maybe hours later, the classic round trips).
    pub(super) withdrawn: bool,
}

/// The fast ballot of the slot after `prev`: `None` at the epoch bound.
pub(super) fn fast_ballot(prev: Option<&Verdict>) -> Option<Ballot> {
    let epoch = EpochKind::Verdict.above(prev.map_or(0, |v| v.value.epoch))?;
    Some(Ballot {
        epoch,
        proposer: NodeId::default(),
    })
}

/// True for the ballot of a fast round (it names no proposer).
pub(super) fn is_fast(b: &Ballot) -> bool {
    b.proposer.as_str().is_empty()
}

/// The pipeline leader of a fast-decided slot: the members in id order, rotated by the slot
/// and by a hash of the site, so that consecutive slots and different sites spread the lead.
/// The hash is written out (FNV-1a) rather than taken from std: every node of the fleet must
/// compute the same leader whatever it was built with.
pub fn fast_leader(site: &SiteId, slot: u64, electorate: &Electorate) -> Option<NodeId> {
    let n = electorate.len() as u64;
    if n == 0 {
        return None;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in site.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let i = (h % n + slot % n) % n;
    electorate.members().nth(i as usize).cloned()
}

/// The one value the fast round of `slot` may decide.
pub(super) fn fast_value(
    site: &SiteId,
    slot: u64,
    ballot: &Ballot,
    electorate: &Electorate,
) -> Option<Value> {
    Some(Value {
        outcome: Outcome::of_slot(slot),
        epoch: ballot.epoch,
        leader: fast_leader(site, slot, electorate)?,
    })
}

/// Among the acceptances `reports` (by members that promised the asking ballot, `answered` of
/// them in all) in the fast ballot, the values a majority may have chosen: a value counts if
/// those that accepted it plus those that did not answer reach a majority.
pub(super) fn possibly_chosen<'a>(
    reports: impl Iterator<Item = &'a Value>,
    answered: usize,
    electorate: &Electorate,
) -> Vec<Value> {
    let mut counts: Vec<(&Value, usize)> = Vec::new();
    for v in reports {
        match counts.iter_mut().find(|(x, _)| *x == v) {
            Some((_, c)) => *c += 1,
            None => counts.push((v, 1)),
        }
    }
    let silent = electorate.len().saturating_sub(answered);
    counts
        .into_iter()
        .filter(|(_, c)| c + silent >= electorate.majority())
        .map(|(v, _)| v.clone())
        .collect()
}

/// What `maybe_start` does for a voter whose opinion supports the slot's outcome.
pub(super) enum FastStep {
    /// The fast round runs (this voter accepted in it): no classic round yet.
    Wait,
    /// Go on with a classic round.
    Classic,
}

impl Voter {
    /// Takes part in the fast round of `slot` when it may: accepts (or repeats its acceptance
    /// with fresh evidence) and tells every member; falls back to a classic round once the fast
    /// round had its vote timeout, or at once when this voter cannot accept in it.
    pub(super) fn fast_step(
        &mut self,
        now: Time,
        site: &SiteId,
        slot: u64,
        report: &OpinionReport,
    ) -> FastStep {
        if !self.cfg.fast_round {
            return FastStep::Classic;
        }
        let Some(ballot) = fast_ballot(self.known.get(site)) else {
            return FastStep::Classic;
        };
        let max_seen = self.max_epoch_seen(site);
        let sv = self.sites.get_mut(site).expect("site present");
        if let Some(t) = sv.fast_try.as_ref().filter(|t| t.slot == slot) {
            if now >= t.fallback_at && !t.withdrawn {
                return FastStep::Classic;
            }
        }
        let Some(value) = fast_value(site, slot, &ballot, &sv.electorate) else {
            return FastStep::Classic;
        };
        let mine = Accepted {
            slot,
            ballot: ballot.clone(),
            value: value.clone(),
        };
        let repeat = sv.durable.accepted.as_ref() == Some(&mine) && sv.durable.promised == ballot;
        if !repeat {
            if max_seen >= ballot.epoch {
                // A higher promise or a later run term is known here: the fast epoch would not
                // be above it. The classic round outbids it.
                return FastStep::Classic;
            }
            sv.durable.promised = ballot.clone();
            sv.durable.accepted = Some(mine);
            self.durable_all.insert(site.clone(), sv.durable.clone());
            self.actions.push_back(VoterAction::Persist {
                site: site.clone(),
                durable: sv.durable.clone(),
            });
            // Attempt 0: the slot's fast round, as opposed to the classic attempts 1, 2, ...
            self.actions.push_back(VoterAction::RoundStarted {
                site: site.clone(),
                slot,
                target: value.outcome,
                epoch: ballot.epoch,
                attempt: 0,
            });
        }
        let sv = self.sites.get_mut(site).expect("site present");
        // A return within the vote timeout keeps it, so a flapping opinion cannot put the
        // classic fallback off for ever; a return after it starts a new one.
        let fallback_at = match sv
            .fast_try
            .as_ref()
            .filter(|t| t.slot == slot && now < t.fallback_at)
        {
            Some(t) => t.fallback_at,
            None => now + self.cfg.vote_timeout,
        };
        sv.fast_try = Some(FastTry {
            slot,
            fallback_at,
            withdrawn: false,
        });
        sv.retry_at = Some(fallback_at);
        let me = self.me.clone();
        let peers: Vec<NodeId> = sv
            .electorate
            .members()
            .filter(|m| **m != me)
            .cloned()
            .collect();
        for to in peers {
            self.actions.push_back(VoterAction::Send {
                to,
                msg: VoteMsg::FastAccept {
                    site: site.clone(),
                    slot,
                    value: value.clone(),
                    opinion: report.opinion,
                    evidence_age_ms: report.evidence_age_ms,
                },
            });
        }
        self.count_fast(now, site, &me, slot, value, report.evidence_age_ms);
        FastStep::Wait
    }

    /// This voter accepted in the fast round of the pending slot and its opinion just left the
    /// slot's outcome: it tells the members, who stop counting its acceptance, as a voter
    /// answers a classic round again when its opinion changes. The acceptance itself stays
    /// (a classic round still reads it); only its weight as a current opinion goes.
    pub(super) fn withdraw_fast(&mut self, now: Time, site: &SiteId, report: &OpinionReport) {
        let slot = next_slot(self.known.get(site));
        let Some(sv) = self.sites.get_mut(site) else {
            return;
        };
        let Some(t) = sv.fast_try.as_mut().filter(|t| t.slot == slot) else {
            return;
        };
        t.withdrawn = true;
        if now >= t.fallback_at {
            return;
        }
        let Some(value) = sv
            .durable
            .accepted
            .as_ref()
            .filter(|a| a.slot == slot && is_fast(&a.ballot))
            .map(|a| a.value.clone())
        else {
            return;
        };
        if sv.tally.slot == slot {
            sv.tally.accepted.remove(&self.me);
        }
        let me = self.me.clone();
        for to in sv.electorate.members().filter(|m| **m != me) {
            self.actions.push_back(VoterAction::Send {
                to: to.clone(),
                msg: VoteMsg::FastAccept {
                    site: site.clone(),
                    slot,
                    value: value.clone(),
                    opinion: report.opinion,
                    evidence_age_ms: report.evidence_age_ms,
                },
            });
        }
    }

    /// A member's acceptance in the fast round. Counted only for the slot this voter decides
    /// next, only when it is that slot's fast value, and only while its sender's opinion is
    /// the slot's outcome with fresh evidence; otherwise it changes nothing here but to stop
    /// counting that sender (its classic fallback still reaches this voter).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_fast_accept(
        &mut self,
        now: Time,
        from: &NodeId,
        site: &SiteId,
        slot: u64,
        value: Value,
        opinion: Opinion,
        evidence_age_ms: u32,
    ) {
        if slot != next_slot(self.known.get(site)) {
            return;
        }
        if opinion != Outcome::of_slot(slot).as_opinion() {
            if let Some(sv) = self.sites.get_mut(site).filter(|sv| sv.tally.slot == slot) {
                sv.tally.accepted.remove(from);
            }
            return;
        }
        let Some(ballot) = fast_ballot(self.known.get(site)) else {
            return;
        };
        if value.epoch != ballot.epoch || value.outcome != Outcome::of_slot(slot) {
            return;
        }
        if u128::from(evidence_age_ms) > self.cfg.evidence_max_age.as_millis() {
            return;
        }
        self.count_fast(now, site, from, slot, value, evidence_age_ms);
    }

    fn count_fast(
        &mut self,
        now: Time,
        site: &SiteId,
        from: &NodeId,
        slot: u64,
        value: Value,
        evidence_age_ms: u32,
    ) {
        let window = self.cfg.vote_timeout;
        let Some(sv) = self.sites.get_mut(site) else {
            return;
        };
        if !sv.electorate.contains(from) {
            return;
        }
        if sv.tally.slot != slot {
            sv.tally = Tally {
                slot,
                accepted: BTreeMap::new(),
            };
        }
        // Acceptances older than one vote timeout are opinions of another moment: they count
        // no more than a Promise from an earlier round would.
        sv.tally.accepted.retain(|_, h| h.at + window > now);
        let heard = Heard {
            value: value.clone(),
            at: now,
            evidence_age_ms,
        };
        sv.tally.accepted.insert(from.clone(), heard);
        let backers: Vec<(&NodeId, &Heard)> = sv
            .tally
            .accepted
            .iter()
            .filter(|(_, h)| h.value == value)
            .collect();
        if backers.len() < sv.electorate.majority() {
            return;
        }
        let record = RoundRecord {
            site: site.clone(),
            slot,
            target: value.outcome,
            epoch: value.epoch,
            attempt: 0,
            started: backers.iter().map(|(_, h)| h.at).min().unwrap_or(now),
            ended: now,
            outcome: RoundOutcome::Majority,
            answers: backers
                .iter()
                .map(|(who, h)| Answer {
                    voter: (*who).clone(),
                    opinion: h.value.outcome.as_opinion(),
                    evidence_age_ms: h.evidence_age_ms,
                    promised: true,
                })
                .collect(),
        };
        let verdict = Verdict {
            site: site.clone(),
            slot,
            value,
        };
        sv.tally = Tally::default();
        self.actions.push_back(VoterAction::RoundEnded(record));
        self.learn(now, verdict.clone(), true);
        self.actions.push_back(VoterAction::Broadcast {
            msg: VoteMsg::Commit { verdict },
        });
    }

    /// A DOWN verdict naming this node as leader that it did not count itself (it heard the
    /// Commit first, or another voter's classic round re-proposed the fast value): this node
    /// leads it once its own Pinger sees the site DOWN too, so a verdict forged by one member
    /// for a site this node still sees up starts nothing here.
    pub fn resolve_leads(&mut self, now: Time, ops: &impl OpinionSource) {
        let pending: Vec<SiteId> = self.lead_pending.keys().cloned().collect();
        for site in pending {
            let report = ops.report(&site, now);
            let Some(v) = self.lead_pending.get(&site) else {
                continue;
            };
            if self.known.get(&site) != Some(v) {
                self.lead_pending.remove(&site);
                continue;
            }
            if self.supports(&report, Outcome::Down) {
                let verdict = self.lead_pending.remove(&site).expect("present");
                self.actions.push_back(VoterAction::Lead { verdict });
            }
        }
    }
}
