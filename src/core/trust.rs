//! Who may say what: the reasons a message from an authenticated fleet member is refused
//! because its sender's role does not entitle it to originate that state, or because a number
//! in it is out of bounds. Mutual TLS says who a peer is; these checks say what it may claim.
//! Every state machine that refuses a message reports one of these reasons, so that the node
//! can count refusals by reason in `/metrics` and log them at most once per peer per minute.

use super::types::{NodeId, Time};
use std::collections::BTreeMap;
use std::time::Duration;

/// The highest epoch, slot or term a node accepts: every number that reaches SQLite must fit
/// an `i64`.
pub const MAX_EPOCH: u64 = i64::MAX as u64;

/// Why a message was refused. `as_str` is the `reason` label in `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The sender is not a voter of the site's electorate.
    NotInElectorate,
    /// A verdict's leader is not a member of the site's electorate.
    LeaderNotInElectorate,
    /// A slot more than one past the newest slot this node knows.
    SlotTooFar,
    /// The verdict's outcome is not the one its slot stands for (DOWN on even, UP on odd).
    OutcomeOfSlot,
    /// An epoch, term or length above `MAX_EPOCH`, or one whose successor would overflow.
    NumberOutOfBounds,
    /// A message about a site the fleet does not watch.
    UnknownSite,
    /// Operator state (maintenance, failback, manual runs) from a node not entitled to accept
    /// operator calls.
    NotOperatorNode,
    /// A timestamp too far in the future (beyond the allowed skew or horizon).
    FromTheFuture,
    /// A sender claiming another node's identity inside the message.
    ImpersonatesAnotherNode,
    /// A message larger than its kind allows.
    TooLarge,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotInElectorate => "not_in_electorate",
            Refusal::LeaderNotInElectorate => "leader_not_in_electorate",
            Refusal::SlotTooFar => "slot_too_far",
            Refusal::OutcomeOfSlot => "outcome_of_slot",
            Refusal::NumberOutOfBounds => "number_out_of_bounds",
            Refusal::UnknownSite => "unknown_site",
            Refusal::NotOperatorNode => "not_operator_node",
            Refusal::FromTheFuture => "from_the_future",
            Refusal::ImpersonatesAnotherNode => "impersonates_another_node",
            Refusal::TooLarge => "too_large",
        }
    }

    pub const ALL: [Refusal; 10] = [
        Refusal::NotInElectorate,
        Refusal::LeaderNotInElectorate,
        Refusal::SlotTooFar,
        Refusal::OutcomeOfSlot,
        Refusal::NumberOutOfBounds,
        Refusal::UnknownSite,
        Refusal::NotOperatorNode,
        Refusal::FromTheFuture,
        Refusal::ImpersonatesAnotherNode,
        Refusal::TooLarge,
    ];
}

/// Refusal counts by reason, and when each peer was last logged: a lying member is logged at
/// most once per `LOG_EVERY`, never once per message.
#[derive(Clone, Debug, Default)]
pub struct Refusals {
    counts: BTreeMap<Refusal, u64>,
    logged: BTreeMap<NodeId, Time>,
}

/// How often one peer's refusals are logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

impl Refusals {
    /// Counts a refusal; true when it should be logged now (first for this peer in a minute).
    pub fn record(&mut self, now: Time, from: &NodeId, why: Refusal) -> bool {
        *self.counts.entry(why).or_default() += 1;
        match self.logged.get(from) {
            Some(at) if now.since(*at) < LOG_EVERY && *at <= now => false,
            _ => {
                self.logged.insert(from.clone(), now);
                true
            }
        }
    }

    pub fn count(&self, why: Refusal) -> u64 {
        self.counts.get(&why).copied().unwrap_or(0)
    }

    pub fn counts(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        self.counts.iter().map(|(r, n)| (*r, *n))
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_logged_once_a_minute_but_every_refusal_counts() {
        let mut r = Refusals::default();
        let p = NodeId::from("liar");
        assert!(r.record(Time(0), &p, Refusal::NotInElectorate));
        assert!(!r.record(Time(1_000_000), &p, Refusal::SlotTooFar));
        assert!(r.record(Time(61_000_000), &p, Refusal::SlotTooFar));
        assert!(r.record(Time(61_000_000), &NodeId::from("other"), Refusal::TooLarge));
        assert_eq!(r.count(Refusal::SlotTooFar), 2);
        assert_eq!(r.total(), 4);
    }
}
