//! The acceptor's side of the lock: answering a Prepare and an Accept for the generation
//! after the newest decided one, each answer's state made durable before it leaves.

use super::{LockAccepted, LockMsg, LockValue, OpLock};
use crate::core::types::{Ballot, SiteId};

impl OpLock {
    /// The acceptor's answer to a Prepare (persisting a higher promise first).
    pub(super) fn on_prepare(&mut self, site: &SiteId, gen: u64, ballot: Ballot) -> LockMsg {
        let view = self.view(site);
        let s = self.states.entry(site.clone()).or_default();
        if s.decided_gen() >= gen {
            return LockMsg::Promise {
                site: site.clone(),
                gen,
                ballot,
                ok: false,
                promised: s.promised.clone(),
                accepted: None,
                decided: s.decided.clone(),
                view,
            };
        }
        let raised = ballot > s.promised;
        if raised {
            s.promised = ballot.clone();
        }
        let msg = LockMsg::Promise {
            site: site.clone(),
            gen,
            ok: s.promised == ballot,
            ballot,
            promised: s.promised.clone(),
            accepted: s.accepted.clone().filter(|a| a.gen == gen),
            decided: None,
            view,
        };
        if raised {
            self.persist(site);
        }
        msg
    }

    /// The acceptor's answer to an Accept (persisting the acceptance first).
    pub(super) fn on_accept(
        &mut self,
        site: &SiteId,
        gen: u64,
        ballot: Ballot,
        value: LockValue,
    ) -> LockMsg {
        let s = self.states.entry(site.clone()).or_default();
        if s.decided_gen() >= gen {
            return LockMsg::AcceptReply {
                site: site.clone(),
                gen,
                ballot,
                ok: false,
                promised: s.promised.clone(),
                decided: s.decided.clone(),
            };
        }
        let ok = ballot >= s.promised;
        if ok {
            s.promised = ballot.clone();
            s.accepted = Some(LockAccepted {
                gen,
                ballot: ballot.clone(),
                value,
            });
        }
        let msg = LockMsg::AcceptReply {
            site: site.clone(),
            gen,
            ballot,
            ok,
            promised: s.promised.clone(),
            decided: None,
        };
        if ok {
            self.persist(site);
        }
        msg
    }
}
