//! The acceptor side of a vote: answering Prepares (with this voter's own opinion, held back
//! while it is Suspect) and Accepts. A promise or acceptance is persisted before the answer
//! that reveals it; a lower ballot than the one promised is always refused.

use super::*;

impl Voter {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_prepare(
        &mut self,
        now: Time,
        from: &NodeId,
        site: SiteId,
        slot: u64,
        ballot: Ballot,
        round: u64,
        wait_ms: u32,
        ops: &impl OpinionSource,
    ) {
        let known_slot = next_slot(self.known.get(&site));
        let Some(sv) = self.sites.get_mut(&site) else {
            return;
        };
        if !sv.electorate.contains(from) || ballot.proposer != *from {
            return;
        }
        let report = ops.report(&site, now);
        if slot < known_slot {
            // Already decided: the Promise carries the verdict so the proposer catches up.
            self.answer_prepare(now, &site, from.clone(), slot, round, ballot, report);
            return;
        }
        if ballot > sv.durable.promised {
            sv.durable.promised = ballot.clone();
            self.durable_all.insert(site.clone(), sv.durable.clone());
            self.actions.push_back(VoterAction::Persist {
                site: site.clone(),
                durable: sv.durable.clone(),
            });
        }
        let ok = sv.durable.promised == ballot;
        if ok {
            // Let the other proposer's round run rather than duel with it.
            sv.deferred_until = Some(now + self.cfg.vote_timeout);
            if own_round_ballot(&sv.round).is_some_and(|b| *b < ballot) {
                self.end_round(now, &site, RoundOutcome::Conflict);
            }
        }
        let sv = self.sites.get_mut(&site).expect("site present");
        if ok
            && Outcome::of_slot(slot) == Outcome::Down
            && report.opinion == Opinion::Suspect
            && wait_ms > 0
        {
            let until = now + Duration::from_millis(u64::from(wait_ms));
            sv.held.push(Held {
                to: from.clone(),
                slot,
                round,
                ballot,
                until,
            });
            return;
        }
        self.answer_prepare(now, &site, from.clone(), slot, round, ballot, report);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer_prepare(
        &mut self,
        now: Time,
        site: &SiteId,
        to: NodeId,
        slot: u64,
        round: u64,
        ballot: Ballot,
        opinion: OpinionReport,
    ) {
        let decided = self.known.get(site).filter(|k| k.slot >= slot).cloned();
        let until = now + self.cfg.vote_timeout;
        let Some(sv) = self.sites.get_mut(site) else {
            return;
        };
        let ok = decided.is_none() && sv.durable.promised == ballot;
        if ok {
            sv.answered
                .retain(|h| h.until > now && !(h.to == to && h.round == round));
            sv.answered.push(Held {
                to: to.clone(),
                slot,
                round,
                ballot: ballot.clone(),
                until,
            });
        }
        let accepted = sv.durable.accepted.clone().filter(|a| a.slot == slot);
        let msg = VoteMsg::Promise {
            site: site.clone(),
            slot,
            round,
            ballot,
            ok,
            promised: sv.durable.promised.clone(),
            accepted,
            opinion,
            decided,
        };
        self.actions.push_back(VoterAction::Send { to, msg });
    }

    pub(super) fn on_accept(
        &mut self,
        now: Time,
        from: &NodeId,
        site: SiteId,
        slot: u64,
        ballot: Ballot,
        value: Value,
    ) {
        let decided = self.known.get(&site).filter(|k| k.slot >= slot).cloned();
        let Some(sv) = self.sites.get_mut(&site) else {
            return;
        };
        if !sv.electorate.contains(from)
            || ballot.proposer != *from
            || value.outcome != Outcome::of_slot(slot)
        {
            return;
        }
        let ok = decided.is_none() && ballot >= sv.durable.promised;
        if ok {
            sv.durable.promised = ballot.clone();
            sv.durable.accepted = Some(Accepted {
                slot,
                ballot: ballot.clone(),
                value,
            });
            self.durable_all.insert(site.clone(), sv.durable.clone());
            self.actions.push_back(VoterAction::Persist {
                site: site.clone(),
                durable: sv.durable.clone(),
            });
            if own_round_ballot(&sv.round).is_some_and(|b| *b < ballot) {
                self.end_round(now, &site, RoundOutcome::Conflict);
            }
        }
        let sv = self.sites.get(&site).expect("site present");
        let msg = VoteMsg::AcceptReply {
            site: site.clone(),
            slot,
            ballot,
            ok,
            promised: sv.durable.promised.clone(),
            decided,
        };
        self.actions.push_back(VoterAction::Send {
            to: from.clone(),
            msg,
        });
    }
}
