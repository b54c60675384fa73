//! The domain vocabulary shared by every state machine: identifiers, virtual time, opinions,
//! ballots and verdicts. Plain data only: nothing here reads a clock or touches IO.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// A node id from the fleet file (also the DNS name in its certificate).
///
/// Shared, not owned: a Pinger names an Indicator in every probe it sends and every answer it
/// gets, so a copy is a reference count, not an allocation, and two copies of one id compare
/// equal without reading the bytes. On the wire and in storage it is the plain string.
#[derive(Clone, Debug, Default, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for NodeId {}

impl Hash for NodeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(Arc::from(s))
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        NodeId(Arc::from(s))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A site id from the fleet file.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SiteId(pub String);

impl SiteId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SiteId {
    fn from(s: &str) -> Self {
        SiteId(s.to_string())
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Virtual or real time in microseconds since an arbitrary origin chosen by the driver.
/// The core never reads a clock: every input carries the time it happened.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);
    pub fn from_micros(us: u64) -> Time {
        Time(us)
    }
    pub fn as_micros(self) -> u64 {
        self.0
    }
    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        // Saturating: a deadline from a huge configured or received duration is "never",
        // not a wrapped-around moment in the past.
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(us))
    }
}

/// Wall-clock time in microseconds since the Unix epoch. Only shown, journaled and compared
/// across nodes with an allowed skew; no deadline ever runs on it (an NTP step would move it).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct WallTime(pub u64);

impl WallTime {
    pub fn from_micros(us: u64) -> WallTime {
        WallTime(us)
    }
    pub fn from_millis(ms: i64) -> WallTime {
        WallTime((ms.max(0) as u64).saturating_mul(1000))
    }
    pub fn as_micros(self) -> u64 {
        self.0
    }
    pub fn as_millis(self) -> i64 {
        (self.0 / 1000).min(i64::MAX as u64) as i64
    }
    /// Wall time elapsed since `earlier`, zero if `earlier` is later (clocks disagree).
    pub fn since(self, earlier: WallTime) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for WallTime {
    type Output = WallTime;
    fn add(self, d: Duration) -> WallTime {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        WallTime(self.0.saturating_add(us))
    }
}

/// Both clocks at one moment, as every core input carries them: `mono` for deadlines,
/// `wall` for what is journaled and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Now {
    pub mono: Time,
    pub wall: WallTime,
}

impl Now {
    pub fn new(mono: Time, wall: WallTime) -> Now {
        Now { mono, wall }
    }
    /// Both clocks reading the same microseconds: for tests and the simulator's calm clocks.
    pub fn at_micros(us: u64) -> Now {
        Now {
            mono: Time(us),
            wall: WallTime(us),
        }
    }
}

/// One observer's view of a site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Opinion {
    /// No Indicator of the site has been seen yet and not all have been missed `retries` times.
    #[default]
    Unknown,
    /// At least one Indicator is reachable and answered its latest probe.
    Up,
    /// Still UP by the rule (an Indicator is reachable) but every Indicator missed its latest
    /// probe: a DOWN opinion may follow within the retry budget.
    Suspect,
    /// Every Indicator is unreachable (`retries` consecutive misses each).
    Down,
}

impl Opinion {
    /// The REST spelling: Suspect is still "up" by the ORBIT rule.
    pub fn as_api_str(self) -> &'static str {
        match self {
            Opinion::Unknown => "unknown",
            Opinion::Up | Opinion::Suspect => "up",
            Opinion::Down => "down",
        }
    }
}

/// What a verdict says about a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Down,
    Up,
}

impl Outcome {
    /// Verdicts of a site alternate, starting with DOWN: slot 0 is DOWN, slot 1 UP (recovery),
    /// slot 2 DOWN again, and so on. So every proposal for a slot has the same outcome.
    pub fn of_slot(slot: u64) -> Outcome {
        if slot % 2 == 0 {
            Outcome::Down
        } else {
            Outcome::Up
        }
    }
    pub fn as_api_str(self) -> &'static str {
        match self {
            Outcome::Down => "down",
            Outcome::Up => "up",
        }
    }
}

/// Which of a site's two deciders gave a run its epoch. A site's verdicts and its operator
/// lock's runs share one epoch space (a run's journal key and its fencing token), each picking
/// above the newest it knows; but a member may pick without knowing the other's newest (it
/// just restarted, a commit was lost, the fast round's epoch is fixed in advance), so they
/// take disjoint halves of it: verdicts odd epochs, operator-lock runs even ones. Two runs
/// then never share an epoch, whatever either knew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochKind {
    Verdict,
    LockRun,
}

impl EpochKind {
    /// The lowest epoch of this kind above `e`, if one is left below the bound.
    pub fn above(self, e: u64) -> Option<u64> {
        let next = e.checked_add(1)?;
        let odd = self == EpochKind::Verdict;
        let next = if (next % 2 == 1) == odd {
            next
        } else {
            next.checked_add(1)?
        };
        (next <= crate::core::trust::MAX_EPOCH).then_some(next)
    }

    /// The kind an epoch belongs to.
    pub fn of(epoch: u64) -> EpochKind {
        if epoch % 2 == 1 {
            EpochKind::Verdict
        } else {
            EpochKind::LockRun
        }
    }
}

/// A proposal number: ordered by epoch, then by proposer id so that two proposers never
/// share a ballot. The epoch part is what operators and actuators see.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Ballot {
    pub epoch: u64,
    pub proposer: NodeId,
}

impl Ballot {
    pub fn zero() -> Ballot {
        Ballot {
            epoch: 0,
            proposer: NodeId::default(),
        }
    }
}

/// The value a slot decides: the outcome, the epoch it was first proposed in (the fencing
/// token) and the voter that leads the pipeline for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Value {
    pub outcome: Outcome,
    pub epoch: u64,
    pub leader: NodeId,
}

/// A committed verdict: slot `slot` of `site` decided `value`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Verdict {
    pub site: SiteId,
    pub slot: u64,
    pub value: Value,
}

impl Verdict {
    pub fn outcome(&self) -> Outcome {
        self.value.outcome
    }
    pub fn epoch(&self) -> u64 {
        self.value.epoch
    }
}

/// What a voter has accepted for the slot that is not decided yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Accepted {
    pub slot: u64,
    pub ballot: Ballot,
    pub value: Value,
}

/// The per-site state a voter must hold durably (fsync) before it answers: the highest
/// ballot it promised and what it accepted. Losing it could let a lower epoch win.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Durable {
    pub promised: Ballot,
    pub accepted: Option<Accepted>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of(id: &NodeId) -> u64 {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        h.finish()
    }

    #[test]
    fn node_ids_are_equal_by_their_text_whether_shared_or_not() {
        let a = NodeId::from("a1");
        let shared = a.clone();
        let separate = NodeId::from(String::from("a1"));
        assert_eq!(a, shared);
        assert_eq!(a, separate);
        assert_eq!(hash_of(&a), hash_of(&separate));
        assert_ne!(a, NodeId::from("a2"));
        assert!(NodeId::from("a10") < NodeId::from("a2"), "ordered as text");
    }

    #[test]
    fn a_node_id_is_its_plain_string_in_json_and_bincode() {
        let id = NodeId::from("b2");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"b2\"");
        let cfg = bincode::config::standard();
        let as_id = bincode::serde::encode_to_vec(&id, cfg).unwrap();
        let as_string = bincode::serde::encode_to_vec("b2", cfg).unwrap();
        assert_eq!(as_id, as_string);
        let (back, _): (NodeId, usize) = bincode::serde::decode_from_slice(&as_id, cfg).unwrap();
        assert_eq!(back, id);
    }
}
