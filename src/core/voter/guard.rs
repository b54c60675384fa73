//! Who may tell this voter what: every vote message is acted on only when its sender is a
//! member of the site's electorate and its numbers are in bounds, and a verdict heard from a
//! peer (a `Commit`, a Prepare's `last`, a reply's `decided`, a Status) is learned only when
//! its sender and its leader are members, its outcome is its slot's, and its slot is at most
//! one past the newest this voter knows. A refused message changes nothing but emits
//! `VoterAction::Refused`; it must never be adopted, clamped or half-applied.
//!
//! A voter that missed slots (down across a DOWN and the UP after it) cannot learn a verdict
//! two slots ahead from one peer: one lying member could otherwise skip the site's history.
//! It catches up when a majority of the electorate reports the same verdict ahead.

use super::*;
use crate::core::trust::{Refusal, MAX_EPOCH};

impl Voter {
    /// The electorate of every site of the fleet, judged by this node or not: verdicts of a
    /// site this node does not judge are checked against it. Sites missing here and not
    /// judged are unknown, and their verdicts refused.
    pub fn set_electorates(&mut self, all: Vec<(SiteId, Electorate)>) {
        self.fleet = all.into_iter().collect();
        self.ahead.retain(|site, _| self.fleet.contains_key(site));
    }

    /// The electorate `site` is judged by: this node's own if it judges the site, the
    /// fleet's otherwise.
    pub fn electorate_of(&self, site: &SiteId) -> Option<&Electorate> {
        self.sites
            .get(site)
            .map(|s| &s.electorate)
            .or_else(|| self.fleet.get(site))
    }

    /// A verdict reported by peer `from` (a Status, a Commit, a Prepare's `last`, a reply's
    /// `decided`): learned only if `from` may originate it. `learn` is for this node's own
    /// commits and the store.
    pub fn learn_from(&mut self, now: Time, from: &NodeId, verdict: Verdict) {
        match self.admit(from, &verdict) {
            Ok(false) => {}
            Ok(true) => self.learn(now, verdict, false),
            Err(Refusal::SlotTooFar) => self.vouch(now, from, verdict),
            Err(reason) => self.refuse(from, &verdict.site, reason),
        }
    }

    /// Ok(true) when the verdict is news this voter may learn, Ok(false) when it is not news
    /// (an old slot: whoever repeats it changes nothing, so it is not worth a refusal).
    fn admit(&self, from: &NodeId, v: &Verdict) -> Result<bool, Refusal> {
        let known = self.known.get(&v.site);
        if known.is_some_and(|k| k.slot >= v.slot) {
            return Ok(false);
        }
        let e = self.electorate_of(&v.site).ok_or(Refusal::UnknownSite)?;
        if !e.contains(from) {
            return Err(Refusal::NotInElectorate);
        }
        if !e.contains(&v.value.leader) {
            return Err(Refusal::LeaderNotInElectorate);
        }
        if v.slot > MAX_EPOCH || v.value.epoch > MAX_EPOCH {
            return Err(Refusal::NumberOutOfBounds);
        }
        if v.outcome() != Outcome::of_slot(v.slot) {
            return Err(Refusal::OutcomeOfSlot);
        }
        if v.slot > next_slot(known) {
            return Err(Refusal::SlotTooFar);
        }
        Ok(true)
    }

    /// A verdict more than one slot ahead from a member: refused, but remembered as that
    /// member's claim; once a majority of the electorate claims the same verdict, it is
    /// learned. One claim per member and site, so a liar cannot fill memory.
    fn vouch(&mut self, now: Time, from: &NodeId, verdict: Verdict) {
        let site = verdict.site.clone();
        let Some(majority) = self.electorate_of(&site).map(|e| e.majority()) else {
            return;
        };
        let claims = self.ahead.entry(site.clone()).or_default();
        claims.insert(from.clone(), verdict.clone());
        let backers = claims.values().filter(|v| **v == verdict).count();
        if backers >= majority {
            self.ahead.remove(&site);
            self.learn(now, verdict, false);
        } else {
            self.refuse(from, &site, Refusal::SlotTooFar);
        }
    }

    pub(super) fn refuse(&mut self, from: &NodeId, site: &SiteId, reason: Refusal) {
        self.actions.push_back(VoterAction::Refused {
            from: from.clone(),
            site: site.clone(),
            reason,
        });
    }

    /// Whether `from` may send `msg` at all, and its numbers fit: a vote message from outside
    /// the electorate, or naming another proposer than its sender, is refused whole, so its
    /// piggybacked verdict is never looked at either.
    pub(super) fn authorize(&self, from: &NodeId, msg: &VoteMsg) -> Result<(), Refusal> {
        let e = self
            .electorate_of(site_of(msg))
            .ok_or(Refusal::UnknownSite)?;
        if !e.contains(from) {
            return Err(Refusal::NotInElectorate);
        }
        let in_bounds = |b: &Ballot| b.epoch <= MAX_EPOCH;
        let accepted_ok = |a: &Option<Accepted>| {
            a.as_ref().is_none_or(|a| {
                a.slot <= MAX_EPOCH && in_bounds(&a.ballot) && a.value.epoch <= MAX_EPOCH
            })
        };
        let ok = match msg {
            VoteMsg::Prepare { slot, ballot, .. } => {
                if ballot.proposer != *from {
                    return Err(Refusal::ImpersonatesAnotherNode);
                }
                *slot <= MAX_EPOCH && in_bounds(ballot)
            }
            VoteMsg::Promise {
                slot,
                ballot,
                promised,
                accepted,
                ..
            } => {
                if accepted
                    .as_ref()
                    .is_some_and(|a| !e.contains(&a.value.leader))
                {
                    return Err(Refusal::LeaderNotInElectorate);
                }
                *slot <= MAX_EPOCH
                    && in_bounds(ballot)
                    && in_bounds(promised)
                    && accepted_ok(accepted)
            }
            VoteMsg::Accept {
                slot,
                ballot,
                value,
                ..
            } => {
                if ballot.proposer != *from {
                    return Err(Refusal::ImpersonatesAnotherNode);
                }
                if !e.contains(&value.leader) {
                    return Err(Refusal::LeaderNotInElectorate);
                }
                if value.outcome != Outcome::of_slot(*slot) {
                    return Err(Refusal::OutcomeOfSlot);
                }
                *slot <= MAX_EPOCH && in_bounds(ballot) && value.epoch <= MAX_EPOCH
            }
            VoteMsg::AcceptReply {
                slot,
                ballot,
                promised,
                ..
            } => *slot <= MAX_EPOCH && in_bounds(ballot) && in_bounds(promised),
            // The verdict itself is checked when it is learned.
            VoteMsg::Commit { .. } => true,
            // The sender speaks for itself only: the message names no acceptor.
            VoteMsg::FastAccept { slot, value, .. } => {
                if !e.contains(&value.leader) {
                    return Err(Refusal::LeaderNotInElectorate);
                }
                if value.outcome != Outcome::of_slot(*slot) {
                    return Err(Refusal::OutcomeOfSlot);
                }
                *slot <= MAX_EPOCH && value.epoch <= MAX_EPOCH
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Refusal::NumberOutOfBounds)
        }
    }
}

/// The site a vote message is about.
pub(super) fn site_of(msg: &VoteMsg) -> &SiteId {
    match msg {
        VoteMsg::Prepare { site, .. }
        | VoteMsg::Promise { site, .. }
        | VoteMsg::Accept { site, .. }
        | VoteMsg::AcceptReply { site, .. }
        | VoteMsg::FastAccept { site, .. } => site,
        VoteMsg::Commit { verdict } => &verdict.site,
    }
}

/// The electorate of every watched site of `fleet`, for [`Voter::set_electorates`].
pub fn fleet_electorates(fleet: &crate::config::Fleet) -> Vec<(SiteId, Electorate)> {
    fleet
        .watches
        .iter()
        .map(|w| (w.site.clone(), Electorate::new(fleet.electorate(&w.site))))
        .collect()
}
