//! Every message that crosses the mesh, and its codec: one version byte, then bincode (2.x,
//! varint) under a hard size limit, checked on both ends. Decoding never panics and never
//! allocates past the limit; a bad frame is an error value the transport counts and drops.
//! Encoding refuses a message the receiver would drop, so a sender learns (and says) which
//! message kind grew too large instead of sending bytes no peer will read.

use crate::core::replica::RunMsg;
use crate::core::types::{Accepted, Ballot, NodeId, Opinion, SiteId, Value, Verdict};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of the messages below (3: `VoteMsg::FastAccept` and the
/// service health of status messages; 4: alarms, the operator lock's value naming the alarm
/// calls it was decided on, and its Promise telling the acceptor's floor).
pub const WIRE_VERSION: u8 = 4;
/// Largest datagram (probe or answer) we send or accept, before QUIC framing.
pub const MAX_DATAGRAM: usize = 48;
/// Largest stream message we send or accept.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// How many Indicators an opinion report lists individually; the rest are only counted.
pub const MAX_REPORTED_INDICATORS: usize = 32;

/// A probe and its answer as the simulator moves them between nodes (the mesh's own probe
/// packets are `net::probe`, authenticated and of a fixed layout; these carry the same fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datagram {
    /// Pinger -> Indicator. `sent_us` is the Pinger's own clock, echoed back untouched;
    /// `opinion` is the Pinger's opinion of the Indicator's site.
    Probe {
        nonce: u64,
        sent_us: u64,
        opinion: Opinion,
    },
    /// Indicator -> Pinger: the probe's fields echoed.
    Answer { nonce: u64, sent_us: u64 },
}

/// What one Pinger saw of one Indicator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IndicatorView {
    pub node: NodeId,
    /// None until the Indicator answered once or was missed `retries` times.
    pub reachable: Option<bool>,
    pub misses: u32,
    pub last_rtt_us: Option<u32>,
    pub last_seen_age_ms: Option<u32>,
    /// What the Indicator's last answer said of its service checks (`unchecked` when its
    /// site has none or it never answered).
    pub service: crate::core::health::ServiceHealth,
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

/// A Pinger's or voter's periodic status to every node it holds a connection with: liveness,
/// fleet version, its opinions and anti-entropy for committed verdicts. Indicator-only nodes
/// send none.
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
    /// "I accepted `value` in the fast round of `slot`", to every member of the electorate:
    /// the sender's own acceptance (made durable before it was sent) of the one value the
    /// slot's fast ballot may hold, with the sender's opinion now and the age of the evidence
    /// behind it. Sent again when that opinion leaves the slot's outcome (the acceptance then
    /// counts no more at those who hear it) and when it comes back.
    FastAccept {
        site: SiteId,
        slot: u64,
        value: Value,
        opinion: Opinion,
        evidence_age_ms: u32,
    },
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
    /// "I called this notifier for this event": the other voters of the site's electorate do
    /// not take the notification over (see `core::notify`).
    Notified(NotifiedMsg),
    /// The newest alarm calls per (site, source) the sender knows, to the voters of each
    /// site's electorate (see `core::alarm`): at most `MAX_SOURCES_PER_SITE` per message, one
    /// site's. Last, so that earlier encodings stay the same.
    Alarms(Vec<Alarm>),
}

/// An alarm of automatic equipment (fire panel, power monitor) about a site: evidence that
/// the site may soon be lost, raised or cleared by one `source`. The call with the newest
/// `set_at_unix_ms` per (site, source) wins everywhere; strings are bounded by
/// `core::alarm` (longer ones are refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub site: SiteId,
    /// The alarm source (`[[alarm_source]]` name, or an operator-given name).
    pub source: String,
    pub severity: AlarmSeverity,
    pub reason: String,
    /// True while raised; false once cleared.
    pub raised: bool,
    pub set_at_unix_ms: i64,
    /// The voter that accepted the call (from the caller or the source).
    pub by: NodeId,
}

/// How grave an alarm is; shown and notified, the watch's `on_alarm` decides what it does.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AlarmSeverity {
    Warning,
    Critical,
}

impl AlarmSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmSeverity::Warning => "warning",
            AlarmSeverity::Critical => "critical",
        }
    }
}

/// A notification sent, told to the voters of its site's electorate. Key and notifier are at
/// most `core::notify::MAX_NOTE_FIELD` bytes each; longer ones are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifiedMsg {
    pub site: SiteId,
    pub key: String,
    pub notifier: String,
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

/// Why a message was not encoded; nothing was sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The frame would exceed what every receiver drops unread.
    #[error("{kind} message of {len} bytes exceeds the wire limit of {limit}; not sent")]
    TooLarge {
        kind: &'static str,
        len: usize,
        limit: usize,
    },
    /// The frame fits, but decoding it would claim more than the limit (the decoder counts
    /// every integer at its in-memory size), so receivers would drop it.
    #[error("{kind} message of {len} bytes decodes past the limit of {limit} bytes; not sent")]
    DecodesTooLarge {
        kind: &'static str,
        len: usize,
        limit: usize,
    },
    /// The serializer refused the value (not expected for the types above).
    #[error("{kind} message cannot be encoded: {reason}")]
    Unencodable { kind: &'static str, reason: String },
}

impl Message {
    /// The message's kind for logs and errors, e.g. "run/append".
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Status(_) => "status",
            Message::Vote(VoteMsg::Prepare { .. }) => "vote/prepare",
            Message::Vote(VoteMsg::Promise { .. }) => "vote/promise",
            Message::Vote(VoteMsg::Accept { .. }) => "vote/accept",
            Message::Vote(VoteMsg::AcceptReply { .. }) => "vote/accept-reply",
            Message::Vote(VoteMsg::Commit { .. }) => "vote/commit",
            Message::Vote(VoteMsg::FastAccept { .. }) => "vote/fast-accept",
            Message::Run(RunMsg::Append { .. }) => "run/append",
            Message::Run(RunMsg::Heartbeat { .. }) => "run/heartbeat",
            Message::Run(RunMsg::Ack { .. }) => "run/ack",
            Message::Run(RunMsg::Prepare { .. }) => "run/prepare",
            Message::Run(RunMsg::Promise { .. }) => "run/promise",
            Message::Lock(_) => "lock",
            Message::Notified(_) => "notified",
            Message::Alarms(_) => "alarms",
        }
    }
}

fn encode<T: Serialize + for<'de> Deserialize<'de>, const LIMIT: usize>(
    kind: &'static str,
    msg: &T,
) -> Result<Vec<u8>, EncodeError> {
    // Measured first without a limit, so the error can say how large the message was; the
    // receiver's limit applies to the whole frame, version byte included.
    let body = bincode::serde::encode_to_vec(msg, bincode::config::standard()).map_err(|e| {
        EncodeError::Unencodable {
            kind,
            reason: e.to_string(),
        }
    })?;
    let len = body.len() + 1;
    if len > LIMIT {
        return Err(EncodeError::TooLarge {
            kind,
            len,
            limit: LIMIT,
        });
    }
    let mut out = Vec::with_capacity(len);
    out.push(WIRE_VERSION);
    out.extend_from_slice(&body);
    // The decoder's limit counts at most 8 bytes per encoded byte (a one-byte varint decodes
    // to a u64); only a frame above an eighth of the limit can exceed it, so only those are
    // decoded once here, exactly as a receiver will.
    if len > LIMIT / 8 && decode::<T, LIMIT>(&out).is_err() {
        return Err(EncodeError::DecodesTooLarge {
            kind,
            len,
            limit: LIMIT,
        });
    }
    Ok(out)
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

/// A datagram is two integers and an opinion, at most 22 bytes encoded: it always fits.
pub fn encode_datagram(d: &Datagram) -> Vec<u8> {
    let kind = match d {
        Datagram::Probe { .. } => "probe",
        Datagram::Answer { .. } => "answer",
    };
    encode::<_, MAX_DATAGRAM>(kind, d).expect("a datagram is at most 22 bytes")
}

pub fn decode_datagram(bytes: &[u8]) -> Result<Datagram, WireError> {
    decode::<_, MAX_DATAGRAM>(bytes)
}

/// Encodes a stream message, or says which kind it was and how large, when a receiver would
/// drop it for its size.
pub fn encode_message(m: &Message) -> Result<Vec<u8>, EncodeError> {
    encode::<_, MAX_MESSAGE>(m.kind(), m)
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
            opinion: Opinion::Down,
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
            opinion: Opinion::Down,
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
            opinion: Opinion::Down,
        });
        b.push(0);
        assert_eq!(
            decode_datagram(&b),
            Err(WireError::Trailing { trailing: 1 })
        );
    }

    #[test]
    fn an_oversized_message_is_refused_on_encode_with_its_kind_and_size() {
        let big = Message::Status(PeerStatus {
            node: NodeId::from("b1"),
            fleet_hash: "x".repeat(MAX_MESSAGE),
            opinions: vec![],
            verdicts: vec![],
            maintenance: vec![],
        });
        let err = encode_message(&big).unwrap_err();
        let EncodeError::TooLarge { kind, len, limit } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*kind, "status");
        assert!(*len > MAX_MESSAGE);
        assert_eq!(*limit, MAX_MESSAGE);
        assert!(err.to_string().contains("status message of"), "{err}");
    }

    #[test]
    fn whatever_encodes_near_the_limit_also_decodes_and_the_rest_is_refused_by_name() {
        let empty = PeerStatus {
            node: NodeId::from("b1"),
            fleet_hash: String::new(),
            opinions: vec![],
            verdicts: vec![],
            maintenance: vec![],
        };
        let with = |fill: usize| {
            Message::Status(PeerStatus {
                fleet_hash: "x".repeat(fill),
                ..empty.clone()
            })
        };
        let (mut sent, mut refused) = (0, 0);
        for fill in MAX_MESSAGE - 80..MAX_MESSAGE + 4 {
            let m = with(fill);
            match encode_message(&m) {
                Ok(b) => {
                    assert!(b.len() <= MAX_MESSAGE);
                    assert_eq!(decode_message(&b).unwrap(), m);
                    sent += 1;
                }
                Err(
                    EncodeError::TooLarge { kind, .. } | EncodeError::DecodesTooLarge { kind, .. },
                ) => {
                    assert_eq!(kind, "status");
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(sent > 0 && refused > 0, "{sent} sent, {refused} refused");
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A string claiming 2^60 bytes must fail on the limit, not try to allocate.
        let mut b = vec![WIRE_VERSION, 0, 0xff];
        b.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode_message(&b).is_err());
    }
}
