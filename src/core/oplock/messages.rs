//! The operator lock's wire vocabulary and who may say what in it: the value a generation
//! decides, each member's durable acceptor state, the messages between members, and the trust
//! rules every incoming message passes before the lock looks at it (a member of the site's
//! electorate, speaking for itself, about runs led by members, with numbers in bounds).

use crate::core::alarm::{check_source, MAX_SOURCES_PER_SITE};
use crate::core::quorum::Electorate;
use crate::core::replica::RunTrigger;
use crate::core::trust::{Refusal, MAX_EPOCH};
use crate::core::types::{Ballot, NodeId, SiteId};
use serde::{Deserialize, Serialize};

/// What one generation decides: the operator run that goes ahead.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockValue {
    /// The run's epoch (its journal key and first fencing token).
    pub run: u64,
    /// The node that leads the run.
    pub leader: NodeId,
    pub trigger: RunTrigger,
    /// The operator forced it: the anycast rule does not hold back its bgp steps.
    pub forced: bool,
    /// The site's alarm calls the proposer knew of (newest stamp per source, sorted by
    /// source): an alarm reaction is asked for only by a member whose own calls are at least
    /// this new, so that a member that missed a call cannot undo the decision made on it
    /// (see `core::node::alarm`). Each decision's basis is at least its predecessor's.
    #[serde(default)]
    pub alarms: Vec<AlarmStamp>,
}

/// One source's newest alarm call (its stamp, and whether it raised or cleared the alarm).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlarmStamp {
    pub source: String,
    pub set_at_unix_ms: i64,
    pub raised: bool,
}

/// What an acceptor knows of its site beyond the lock, told in its Promise so that the
/// proposer's own value fits what the electorate knows: `epoch` is the highest epoch it
/// knows of the site (verdicts, votes promised or accepted, runs, the lock), `down` the epoch
/// of the newest DOWN verdict it knows (committed, or whose failover's register it holds: an
/// UP verdict since does not undo that failover), `alarms` the newest call of each source of
/// the site (sorted by source).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteView {
    pub epoch: u64,
    pub down: Option<u64>,
    pub alarms: Vec<AlarmStamp>,
}

/// Generation `gen` of a site's lock decided `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub gen: u64,
    pub value: LockValue,
}

/// A value an acceptor accepted for generation `gen` under `ballot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockAccepted {
    pub gen: u64,
    pub ballot: Ballot,
    pub value: LockValue,
}

/// One member's acceptor state for one site, durable before it answers. One promised ballot
/// serves every generation: ballots only grow, so a promise for a later generation refuses at
/// least what the earlier one did.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockState {
    pub promised: Ballot,
    /// Only for a generation after `decided`; cleared once that generation is decided.
    pub accepted: Option<LockAccepted>,
    /// The newest decided generation this member knows.
    pub decided: Option<Decided>,
}

impl LockState {
    pub(super) fn decided_gen(&self) -> u64 {
        self.decided.as_ref().map_or(0, |d| d.gen)
    }

    /// The runs this member accepted or learned decided: fencing tokens of the site.
    pub fn runs(&self) -> impl Iterator<Item = u64> + '_ {
        let accepted = self.accepted.iter().map(|a| a.value.run);
        accepted.chain(self.decided.iter().map(|d| d.value.run))
    }
}

/// Messages of the lock between the members of a site's electorate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMsg {
    /// Phase 1. `last`: the proposer's newest decided generation (gen - 1), so that an acceptor
    /// that missed its Commit learns it before it promises anything for `gen`.
    Prepare {
        site: SiteId,
        gen: u64,
        ballot: Ballot,
        last: Option<Decided>,
    },
    Promise {
        site: SiteId,
        gen: u64,
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        /// What this acceptor accepted for `gen`, if anything.
        accepted: Option<LockAccepted>,
        /// Set when this acceptor knows `gen` (or a later generation) decided.
        decided: Option<Decided>,
        /// What this acceptor knows of the site beyond the lock.
        view: SiteView,
    },
    /// Phase 2.
    Accept {
        site: SiteId,
        gen: u64,
        ballot: Ballot,
        value: LockValue,
        last: Option<Decided>,
    },
    AcceptReply {
        site: SiteId,
        gen: u64,
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        decided: Option<Decided>,
    },
    /// The generation is decided; sent to every member.
    Commit { site: SiteId, decided: Decided },
}

impl LockMsg {
    pub fn site(&self) -> &SiteId {
        match self {
            LockMsg::Prepare { site, .. }
            | LockMsg::Promise { site, .. }
            | LockMsg::Accept { site, .. }
            | LockMsg::AcceptReply { site, .. }
            | LockMsg::Commit { site, .. } => site,
        }
    }
}

/// The trust rules of a lock message from `from`: a member of the electorate, speaking for
/// itself, about values led by members, with numbers in bounds.
pub(super) fn check(from: &NodeId, msg: &LockMsg, e: &Electorate) -> Result<(), Refusal> {
    if !e.contains(from) {
        return Err(Refusal::NotInElectorate);
    }
    let stamps_ok = |alarms: &[AlarmStamp]| {
        alarms.len() <= MAX_SOURCES_PER_SITE
            && alarms.windows(2).all(|w| w[0].source < w[1].source)
            && alarms.iter().all(|a| check_source(&a.source).is_ok())
    };
    let value_ok = |v: &LockValue| {
        if v.run > MAX_EPOCH || v.run == 0 {
            Err(Refusal::NumberOutOfBounds)
        } else if !e.contains(&v.leader) {
            Err(Refusal::LeaderNotInElectorate)
        } else if !stamps_ok(&v.alarms) {
            Err(Refusal::TooLarge)
        } else {
            Ok(())
        }
    };
    let decided_ok = |d: &Decided| {
        if d.gen == 0 || d.gen > MAX_EPOCH {
            return Err(Refusal::NumberOutOfBounds);
        }
        value_ok(&d.value)
    };
    let gen_ok = |gen: u64, ballot: &Ballot| {
        if gen == 0 || gen > MAX_EPOCH || ballot.epoch > MAX_EPOCH {
            Err(Refusal::NumberOutOfBounds)
        } else {
            Ok(())
        }
    };
    match msg {
        LockMsg::Prepare {
            gen, ballot, last, ..
        } => {
            gen_ok(*gen, ballot)?;
            if ballot.proposer != *from {
                return Err(Refusal::ImpersonatesAnotherNode);
            }
            if let Some(d) = last {
                decided_ok(d)?;
                if d.gen >= *gen {
                    return Err(Refusal::NumberOutOfBounds);
                }
            }
        }
        LockMsg::Accept {
            gen,
            ballot,
            value,
            last,
            ..
        } => {
            gen_ok(*gen, ballot)?;
            if ballot.proposer != *from {
                return Err(Refusal::ImpersonatesAnotherNode);
            }
            value_ok(value)?;
            if let Some(d) = last {
                decided_ok(d)?;
                if d.gen >= *gen {
                    return Err(Refusal::NumberOutOfBounds);
                }
            }
        }
        LockMsg::Promise {
            gen,
            ballot,
            promised,
            accepted,
            decided,
            view,
            ..
        } => {
            gen_ok(*gen, ballot)?;
            gen_ok(*gen, promised)?;
            if view.epoch > MAX_EPOCH || view.down.is_some_and(|d| d > view.epoch) {
                return Err(Refusal::NumberOutOfBounds);
            }
            if !stamps_ok(&view.alarms) {
                return Err(Refusal::TooLarge);
            }
            if let Some(a) = accepted {
                gen_ok(a.gen, &a.ballot)?;
                value_ok(&a.value)?;
            }
            if let Some(d) = decided {
                decided_ok(d)?;
            }
        }
        LockMsg::AcceptReply {
            gen,
            ballot,
            promised,
            decided,
            ..
        } => {
            gen_ok(*gen, ballot)?;
            gen_ok(*gen, promised)?;
            if let Some(d) = decided {
                decided_ok(d)?;
            }
        }
        LockMsg::Commit { decided, .. } => decided_ok(decided)?,
    }
    Ok(())
}
