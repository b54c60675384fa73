//! Every message that crosses the mesh, and its codec: one version byte, then bincode (2.x,
//! varint) under a hard size limit. Decoding never panics and never allocates past the limit;
//! a bad frame is an error value the transport counts and drops.

use crate::core::replica::RunMsg;
use crate::core::types::{Accepted, Ballot, NodeId, Opinion, SiteId, Value, Verdict};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of the messages below.
pub const WIRE_VERSION: u8 = 1;
/// Largest datagram (probe or answer) we send or accept, before QUIC framing.
pub const MAX_DATAGRAM: usize = 48;
/// Largest stream message we send or accept.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// How many Indicators an opinion report lists individually; the rest are only counted.
pub const MAX_REPORTED_INDICATORS: usize = 32;

/// QUIC datagrams between a Pinger and an Indicator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datagram {
    /// Pinger -> Indicator. `sent_us` is the Pinger's own clock, echoed back untouched.
    Probe { nonce: u64, sent_us: u64 },
    /// Indicator -> Pinger: the probe's fields echoed.
    Answer { nonce: u64, sent_us: u64 },
}

/// What one Pinger saw of one Indicator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndicatorView {
    pub node: NodeId,
    /// None until the Indicator answered once or was missed `retries` times.
    pub reachable: Option<bool>,
    pub misses: u32,
    pub last_rtt_us: Option<u32>,
    pub last_seen_age_ms: Option<u32>,
}

/// One Pinger's opinion of one site with the evidence behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpinionReport {
    pub opinion: Opinion,
    /// Age of the newest probe result (answer or miss) behind the opinion.
    pub evidence_age_ms: u32,
    pub indicators_total: u32,
    pub indicators_reachable: u32,
    /// At most MAX_REPORTED_INDICATORS entries.
    pub indicators: Vec<IndicatorView>,
}

impl OpinionReport {
    pub fn unknown() -> OpinionReport {
        OpinionReport {
            opinion: Opinion::Unknown,
            evidence_age_ms: u32::MAX,
            indicators_total: 0,
            indicators_reachable: 0,
            indicators: Vec::new(),
        }
    }
}

/// A node's periodic status to every peer: liveness, fleet version and anti-entropy for
/// committed verdicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node: NodeId,
    pub fleet_hash: String,
    pub opinions: Vec<(SiteId, OpinionReport)>,
    /// The newest committed verdict per site this node knows.
    pub verdicts: Vec<Verdict>,
    /// The newest maintenance call per site this node knows (anti-entropy: the newest wins).
    pub maintenance: Vec<MaintenanceWindow>,
}

/// An operator's maintenance call for a site: no automatic failover starts before
/// `until_unix_ms` (0: the window was ended). The call with the newest `set_at_unix_ms` wins
/// everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    pub site: SiteId,
    pub until_unix_ms: i64,
    pub set_at_unix_ms: i64,
}

/// Vote rounds and commits between Voters (Paxos per verdict slot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoteMsg {
    /// Phase 1 and opinion poll in one: "promise `ballot` for `slot` and tell me your opinion".
    /// A suspecting voter may hold its answer up to `wait_ms` until its opinion settles.
    Prepare {
        site: SiteId,
        slot: u64,
        ballot: Ballot,
        round: u64,
        wait_ms: u32,
        last: Option<Verdict>,
    },
    Promise {
        site: SiteId,
        slot: u64,
        round: u64,
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        accepted: Option<Accepted>,
        opinion: OpinionReport,
        /// Set when the responder already knows slot `slot` (or a later one) decided.
        decided: Option<Verdict>,
    },
    /// Phase 2.
    Accept {
        site: SiteId,
        slot: u64,
        ballot: Ballot,
        value: Value,
    },
    AcceptReply {
        site: SiteId,
        slot: u64,
        ballot: Ballot,
        ok: bool,
        promised: Ballot,
        decided: Option<Verdict>,
    },
    /// The slot is decided; sent to every peer.
    Commit { verdict: Verdict },
}

/// Stream messages; one message per QUIC unidirectional stream.
// Status is the large variant; boxing it would cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Status(PeerStatus),
    Vote(VoteMsg),
    /// A failover run's journal, lease and takeover between the members of its electorate.
    Run(RunMsg),
    /// The operator lock of a site between the members of its electorate.
    Lock(crate::core::oplock::LockMsg),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty frame")]
    Empty,
    #[error("wire version {got} is not supported (this node speaks {WIRE_VERSION})")]
    Version { got: u8 },
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("{trailing} trailing bytes after the message")]
    Trailing { trailing: usize },
}

fn encode<T: Serialize, const LIMIT: usize>(msg: &T) -> Vec<u8> {
    let cfg = bincode::config::standard().with_limit::<LIMIT>();
    let mut out = vec![WIRE_VERSION];
    // Encoding our own well-formed values into a Vec cannot fail except past the limit,
    // which the messages are sized never to reach; a failure is a programming error.
    bincode::serde::encode_into_std_write(msg, &mut out, cfg).expect("message within wire limit");
    out
}

fn decode<T: for<'de> Deserialize<'de>, const LIMIT: usize>(bytes: &[u8]) -> Result<T, WireError> {
    let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if bytes.len() > LIMIT {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            limit: LIMIT,
        });
    }
    if version != WIRE_VERSION {
        return Err(WireError::Version { got: version });
    }
    let cfg = bincode::config::standard().with_limit::<LIMIT>();
    let (msg, used) = bincode::serde::decode_from_slice(body, cfg)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(WireError::Trailing {
            trailing: body.len() - used,
        });
    }
    Ok(msg)
}

pub fn encode_datagram(d: &Datagram) -> Vec<u8> {
    encode::<_, MAX_DATAGRAM>(d)
}

pub fn decode_datagram(bytes: &[u8]) -> Result<Datagram, WireError> {
    decode::<_, MAX_DATAGRAM>(bytes)
}

pub fn encode_message(m: &Message) -> Vec<u8> {
    encode::<_, MAX_MESSAGE>(m)
}

pub fn decode_message(bytes: &[u8]) -> Result<Message, WireError> {
    decode::<_, MAX_MESSAGE>(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trips_and_stays_small() {
        let d = Datagram::Probe {
            nonce: u64::MAX,
            sent_us: u64::MAX,
        };
        let b = encode_datagram(&d);
        assert!(b.len() <= 24, "probe is {} bytes", b.len());
        assert_eq!(decode_datagram(&b).unwrap(), d);
    }

    #[test]
    fn truncated_datagrams_are_errors_not_panics() {
        let b = encode_datagram(&Datagram::Answer {
            nonce: 12345678901,
            sent_us: 99,
        });
        for n in 0..b.len() {
            assert!(
                decode_datagram(&b[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
    }

    #[test]
    fn wrong_version_is_named() {
        let mut b = encode_datagram(&Datagram::Probe {
            nonce: 1,
            sent_us: 2,
        });
        b[0] = 9;
        assert_eq!(decode_datagram(&b), Err(WireError::Version { got: 9 }));
    }

    #[test]
    fn oversized_datagram_is_refused() {
        let b = vec![WIRE_VERSION; MAX_DATAGRAM + 1];
        assert!(matches!(
            decode_datagram(&b),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut b = encode_datagram(&Datagram::Probe {
            nonce: 1,
            sent_us: 2,
        });
        b.push(0);
        assert_eq!(
            decode_datagram(&b),
            Err(WireError::Trailing { trailing: 1 })
        );
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A string claiming 2^60 bytes must fail on the limit, not try to allocate.
        let mut b = vec![WIRE_VERSION, 0, 0xff];
        b.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode_message(&b).is_err());
    }
}
