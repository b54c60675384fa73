//! The authenticated UDP probe packet (in the spirit of BFD's keyed authentication, RFC 5880
//! §6.7): its layout, the per-connection keys it is sealed with, and the sequence window that
//! refuses replays. Pure: no sockets, no clock; `probe_socket` moves these bytes.
//!
//! Keys come from the mutual-TLS session of the QUIC connection between the two nodes
//! (RFC 5705 / RFC 8446 §7.5 exporter), so a probe speaks for the certificate identity that
//! holds the connection, and its keys die with the connection. One connection joins a pair of
//! nodes and carries two sessions, one per direction of probing, each bound to who probes
//! whom (the exporter context names the Pinger and the Indicator). Within a session the
//! prober and the answerer seal with different keys, and the kind byte is under the MAC too:
//! a probe reflected back at its sender is not an answer.
//!
//! Layout, 52 bytes, big endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind: 0x01 probe, 0x02 answer, 0x03 ready (bits 0xc0 clear: never a QUIC v1 packet) |
//! | 1 | version (4) |
//! | 2 | answer: the Indicator's service health (0 unchecked, 1 passing, 2 failing, 3 pending); probe and ready: zero |
//! | 3 | probe: the Pinger's opinion of the Indicator's site (0 unknown, 1 up, 2 suspect, 3 down); answer and ready: zero |
//! | 4..12 | discriminator of the session (from the exporter) |
//! | 12..20 | sequence number of the sender in this direction, from 1 |
//! | 20..28 | nonce of the Pinger core (echoed in the answer) |
//! | 28..36 | sent_us of the Pinger (echoed in the answer) |
//! | 36..52 | HMAC-SHA256 over bytes 0..36, first 16 bytes |
//!
//! Version 2 gave byte 2 its meaning. The health sits under the MAC, so nobody on the path can
//! turn a failing service into a passing one or back. Version 3 binds the keys to the Pinger
//! and the Indicator instead of the connection's dialer and acceptor (one connection per pair
//! of nodes carries both directions). Version 4 gave byte 3 its meaning: a probe tells the
//! Indicator what its Pinger thinks of the Indicator's site, which is what the site's
//! self-fence listens for (`core::fence`), so a Pinger need not repeat it in a status message
//! to every Indicator every interval. Nodes of different versions derive different keys (the
//! exporter label names the version) and refuse each other's packets: a fleet moves to a new
//! probe version all at once, as it does to a new wire version.

use crate::core::health::ServiceHealth;
use crate::core::types::{NodeId, Opinion};
use ring::hmac;

/// Length of every probe packet, probe or answer.
pub const PROBE_LEN: usize = 52;
/// The TLS exporter label of the probe keys; bump the version with any layout change.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-quorate-probe-v4";
/// The packet version this node speaks.
pub const PROBE_VERSION: u8 = 4;
/// Replays are refused within this many sequence numbers of the newest one seen; older
/// packets are refused outright.
pub const REPLAY_WINDOW: u64 = 64;

const KIND_PROBE: u8 = 0x01;
const KIND_ANSWER: u8 = 0x02;
const KIND_READY: u8 = 0x03;
const MAC_AT: usize = 36;
const MAC_LEN: usize = PROBE_LEN - MAC_AT;
/// Exporter output: discriminator, probe key, answer key.
pub const MATERIAL_LEN: usize = 8 + 32 + 32;

/// Whether a datagram on the mesh port is a probe packet rather than QUIC: a QUIC long
/// header (and a version negotiation packet) has bit 0x80 of its first byte set, a short
/// header the fixed bit 0x40 (RFC 9000 §17). Probe packets have both clear. Peers may only
/// clear the fixed bit ("greasing", RFC 9287) if this node advertises that it accepts it,
/// and the mesh's endpoint does not (`grease_quic_bit(false)`).
pub fn is_probe_datagram(first_byte: u8) -> bool {
    first_byte & 0xc0 == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Pinger -> Indicator.
    Probe,
    /// Indicator -> Pinger: the probe's nonce and sent_us echoed.
    Answer,
    /// Indicator -> Pinger: "my end of the session is open, probe away" (nonce and sent_us
    /// zero), sent when the session opens and once more on the Pinger's first Ready of the
    /// other direction (see `probe_sessions`). Sealed with the answer key.
    Ready,
}

/// The fields of a probe packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePacket {
    pub kind: Kind,
    pub discriminator: u64,
    pub seq: u64,
    pub nonce: u64,
    pub sent_us: u64,
    /// Answers only: what the Indicator says of its service. `Unchecked` in probes and ready
    /// packets.
    pub health: ServiceHealth,
    /// Probes only: the Pinger's opinion of the Indicator's site when it sent the probe.
    /// `Unknown` in answers and ready packets.
    pub opinion: Opinion,
}

/// Why a datagram is not a probe packet this node can accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("probe packet of {len} bytes (expected {PROBE_LEN})")]
    Length { len: usize },
    #[error("unknown probe packet kind {kind:#04x}")]
    Kind { kind: u8 },
    #[error("probe packet version {version} is not supported (this node speaks {PROBE_VERSION})")]
    Version { version: u8 },
    #[error("reserved bytes of the probe packet are not zero")]
    Reserved,
    #[error("unknown service health {health:#04x} in a probe answer")]
    Health { health: u8 },
    #[error("unknown site opinion {opinion:#04x} in a probe")]
    Opinion { opinion: u8 },
    #[error("probe packet MAC does not verify")]
    Mac,
}

/// A probe packet whose layout is valid and whose MAC is not checked yet: only the
/// discriminator may be used (to find the session whose key checks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unverified {
    packet: ProbePacket,
    bytes: [u8; PROBE_LEN],
}

impl Unverified {
    pub fn discriminator(&self) -> u64 {
        self.packet.discriminator
    }

    pub fn kind(&self) -> Kind {
        self.packet.kind
    }

    /// The packet, if `key` sealed it.
    pub fn verify(&self, key: &hmac::Key) -> Result<ProbePacket, ProbeError> {
        let tag = hmac::sign(key, &self.bytes[..MAC_AT]);
        // Every byte compared whatever the first difference (no early exit to time).
        let difference = tag.as_ref()[..MAC_LEN]
            .iter()
            .zip(&self.bytes[MAC_AT..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference != 0 {
            return Err(ProbeError::Mac);
        }
        Ok(self.packet)
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Checks the layout of a datagram (not its MAC).
/// The discriminator a datagram would have as a probe packet, unchecked: only to find its
/// session early (`prefetch`). None when it is not one (by its first byte and length).
pub fn peek_discriminator(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != PROBE_LEN || !is_probe_datagram(bytes[0]) {
        return None;
    }
    Some(u64::from_be_bytes(bytes[4..12].try_into().ok()?))
}

pub fn parse(bytes: &[u8]) -> Result<Unverified, ProbeError> {
    let bytes: [u8; PROBE_LEN] = bytes
        .try_into()
        .map_err(|_| ProbeError::Length { len: bytes.len() })?;
    let kind = match bytes[0] {
        KIND_PROBE => Kind::Probe,
        KIND_ANSWER => Kind::Answer,
        KIND_READY => Kind::Ready,
        kind => return Err(ProbeError::Kind { kind }),
    };
    if bytes[1] != PROBE_VERSION {
        return Err(ProbeError::Version { version: bytes[1] });
    }
    if (kind != Kind::Answer && bytes[2] != 0) || (kind != Kind::Probe && bytes[3] != 0) {
        return Err(ProbeError::Reserved);
    }
    let health = match bytes[2] {
        0 => ServiceHealth::Unchecked,
        1 => ServiceHealth::Passing,
        2 => ServiceHealth::Failing,
        3 => ServiceHealth::Pending,
        health => return Err(ProbeError::Health { health }),
    };
    let opinion = match bytes[3] {
        0 => Opinion::Unknown,
        1 => Opinion::Up,
        2 => Opinion::Suspect,
        3 => Opinion::Down,
        opinion => return Err(ProbeError::Opinion { opinion }),
    };
    Ok(Unverified {
        packet: ProbePacket {
            kind,
            discriminator: u64_at(&bytes, 4),
            seq: u64_at(&bytes, 12),
            nonce: u64_at(&bytes, 20),
            sent_us: u64_at(&bytes, 28),
            health,
            opinion,
        },
        bytes,
    })
}

/// Lays out and seals a packet with `key`.
pub fn seal(packet: &ProbePacket, key: &hmac::Key) -> [u8; PROBE_LEN] {
    let mut b = [0u8; PROBE_LEN];
    b[0] = match packet.kind {
        Kind::Probe => KIND_PROBE,
        Kind::Answer => KIND_ANSWER,
        Kind::Ready => KIND_READY,
    };
    b[1] = PROBE_VERSION;
    if packet.kind == Kind::Answer {
        b[2] = match packet.health {
            ServiceHealth::Unchecked => 0,
            ServiceHealth::Passing => 1,
            ServiceHealth::Failing => 2,
            ServiceHealth::Pending => 3,
        };
    }
    if packet.kind == Kind::Probe {
        b[3] = match packet.opinion {
            Opinion::Unknown => 0,
            Opinion::Up => 1,
            Opinion::Suspect => 2,
            Opinion::Down => 3,
        };
    }
    b[4..12].copy_from_slice(&packet.discriminator.to_be_bytes());
    b[12..20].copy_from_slice(&packet.seq.to_be_bytes());
    b[20..28].copy_from_slice(&packet.nonce.to_be_bytes());
    b[28..36].copy_from_slice(&packet.sent_us.to_be_bytes());
    let tag = hmac::sign(key, &b[..MAC_AT]);
    b[MAC_AT..].copy_from_slice(&tag.as_ref()[..MAC_LEN]);
    b
}

/// The keys of one probe session (one direction of probing over one connection), the same
/// on both ends.
pub struct SessionKeys {
    pub discriminator: u64,
    /// Seals probes (Pinger -> Indicator).
    pub probe: hmac::Key,
    /// Seals answers and ready packets (Indicator -> Pinger).
    pub answer: hmac::Key,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("discriminator", &self.discriminator)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Splits exporter output into the discriminator and the two direction keys.
    pub fn from_material(material: &[u8; MATERIAL_LEN]) -> SessionKeys {
        SessionKeys {
            discriminator: u64_at(material, 0),
            probe: hmac::Key::new(hmac::HMAC_SHA256, &material[8..40]),
            answer: hmac::Key::new(hmac::HMAC_SHA256, &material[40..72]),
        }
    }

    /// Derives the keys with which `pinger` probes `indicator` over `conn` (a connection
    /// between the two, whichever dialed): both ends get the same keys, which nobody without
    /// that TLS session can compute. The other direction has its own, unrelated keys.
    pub fn derive(
        conn: &quinn::Connection,
        pinger: &NodeId,
        indicator: &NodeId,
    ) -> Result<SessionKeys, quinn::crypto::ExportKeyingMaterialError> {
        let mut material = [0u8; MATERIAL_LEN];
        conn.export_keying_material(&mut material, EXPORTER_LABEL, &context(pinger, indicator))?;
        Ok(SessionKeys::from_material(&material))
    }
}

/// Binds the keys to who probes whom (length-prefixed, so no two pairs share a context).
fn context(pinger: &NodeId, indicator: &NodeId) -> Vec<u8> {
    let mut c = Vec::with_capacity(4 + pinger.as_str().len() + indicator.as_str().len());
    for id in [pinger.as_str(), indicator.as_str()] {
        c.extend_from_slice(&(id.len() as u16).to_be_bytes());
        c.extend_from_slice(id.as_bytes());
    }
    c
}

/// The receive side of one direction of a session: which sequence numbers were seen (IPsec's
/// anti-replay window, RFC 4303 §3.4.3). Sequence 0 is never valid.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    newest: u64,
    /// Bit i set: `newest - i` was seen.
    seen: u64,
}

impl ReplayWindow {
    /// Records `seq` if it is new; false for a replay or a packet older than the window.
    /// Call only for packets whose MAC verified, or a forger could move the window.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.newest {
            let shift = seq - self.newest;
            self.seen = if shift >= REPLAY_WINDOW {
                1
            } else {
                (self.seen << shift) | 1
            };
            self.newest = seq;
            return true;
        }
        let age = self.newest - seq;
        if age >= REPLAY_WINDOW || self.seen & (1 << age) != 0 {
            return false;
        }
        self.seen |= 1 << age;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exporter-like material: every byte differs, so do the two direction keys.
    fn keys(seed: u8) -> SessionKeys {
        let mut m = [0u8; MATERIAL_LEN];
        for (i, b) in m.iter_mut().enumerate() {
            *b = seed.wrapping_add((i as u8).wrapping_mul(31));
        }
        SessionKeys::from_material(&m)
    }

    fn probe(seq: u64) -> ProbePacket {
        ProbePacket {
            kind: Kind::Probe,
            discriminator: 0x0102_0304_0506_0708,
            seq,
            nonce: 42,
            sent_us: u64::MAX - 1,
            health: ServiceHealth::Unchecked,
            opinion: Opinion::Up,
        }
    }

    #[test]
    fn a_sealed_packet_parses_and_verifies_to_itself() {
        let k = keys(1);
        let bytes = seal(&probe(9), &k.probe);
        assert!(is_probe_datagram(bytes[0]));
        let u = parse(&bytes).unwrap();
        assert_eq!(u.discriminator(), 0x0102_0304_0506_0708);
        assert_eq!(u.verify(&k.probe), Ok(probe(9)));
    }

    #[test]
    fn a_probe_does_not_verify_under_the_answer_key_or_another_session() {
        let k = keys(1);
        let bytes = seal(&probe(9), &k.probe);
        let u = parse(&bytes).unwrap();
        assert_eq!(u.verify(&k.answer), Err(ProbeError::Mac));
        assert_eq!(u.verify(&keys(2).probe), Err(ProbeError::Mac));
    }

    #[test]
    fn a_probe_relabelled_as_an_answer_does_not_verify() {
        let k = keys(1);
        // A probe without an opinion: an answer must have byte 3 clear.
        let p = ProbePacket {
            opinion: Opinion::Unknown,
            ..probe(9)
        };
        let mut bytes = seal(&p, &k.probe);
        bytes[0] = KIND_ANSWER;
        let u = parse(&bytes).unwrap();
        assert_eq!(u.kind(), Kind::Answer);
        assert_eq!(u.verify(&k.answer), Err(ProbeError::Mac));
        assert_eq!(u.verify(&k.probe), Err(ProbeError::Mac));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let k = keys(3);
        let bytes = seal(&probe(1), &k.probe);
        for bit in 0..PROBE_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            let ok = parse(&b).and_then(|u| u.verify(&k.probe)).is_ok();
            assert!(!ok, "bit {bit} flipped and still accepted");
        }
    }

    #[test]
    fn bad_layouts_are_named() {
        let k = keys(1);
        let good = seal(&probe(1), &k.probe);
        assert_eq!(parse(&good[..51]), Err(ProbeError::Length { len: 51 }));
        let mut b = good;
        b[0] = 0x04;
        assert_eq!(parse(&b), Err(ProbeError::Kind { kind: 4 }));
        let mut b = good;
        b[1] = 1;
        assert_eq!(
            parse(&b),
            Err(ProbeError::Version { version: 1 }),
            "version 1 refused"
        );
        let mut b = good;
        b[3] = 4;
        assert_eq!(parse(&b), Err(ProbeError::Opinion { opinion: 4 }));
        let mut b = seal(&answer(ServiceHealth::Passing), &k.answer);
        b[3] = 1;
        assert_eq!(
            parse(&b),
            Err(ProbeError::Reserved),
            "an opinion in an answer"
        );
        let mut b = good;
        b[2] = 1;
        assert_eq!(parse(&b), Err(ProbeError::Reserved), "health in a probe");
        let mut b = seal(&answer(ServiceHealth::Passing), &k.answer);
        b[2] = 4;
        assert_eq!(parse(&b), Err(ProbeError::Health { health: 4 }));
    }

    fn answer(health: ServiceHealth) -> ProbePacket {
        ProbePacket {
            kind: Kind::Answer,
            health,
            opinion: Opinion::Unknown,
            ..probe(10)
        }
    }

    #[test]
    fn an_answer_carries_the_service_health_under_its_mac() {
        let k = keys(4);
        for health in [
            ServiceHealth::Unchecked,
            ServiceHealth::Pending,
            ServiceHealth::Passing,
            ServiceHealth::Failing,
        ] {
            let bytes = seal(&answer(health), &k.answer);
            assert_eq!(parse(&bytes).unwrap().verify(&k.answer), Ok(answer(health)));
        }
        // A failing answer turned passing on the path does not verify.
        let mut b = seal(&answer(ServiceHealth::Failing), &k.answer);
        b[2] = 1;
        assert_eq!(parse(&b).unwrap().verify(&k.answer), Err(ProbeError::Mac));
    }

    #[test]
    fn a_probe_seals_no_health_whatever_its_field_says() {
        let k = keys(5);
        let p = ProbePacket {
            health: ServiceHealth::Failing,
            ..probe(3)
        };
        let bytes = seal(&p, &k.probe);
        assert_eq!(bytes[2], 0);
        assert_eq!(parse(&bytes).unwrap().verify(&k.probe), Ok(probe(3)));
    }

    #[test]
    fn a_probe_carries_the_pingers_opinion_under_its_mac_and_an_answer_none() {
        let k = keys(6);
        for opinion in [
            Opinion::Unknown,
            Opinion::Up,
            Opinion::Suspect,
            Opinion::Down,
        ] {
            let p = ProbePacket {
                opinion,
                ..probe(7)
            };
            let bytes = seal(&p, &k.probe);
            assert_eq!(parse(&bytes).unwrap().verify(&k.probe), Ok(p));
        }
        // A DOWN opinion turned UP on the path does not verify.
        let mut b = seal(
            &ProbePacket {
                opinion: Opinion::Down,
                ..probe(8)
            },
            &k.probe,
        );
        b[3] = 1;
        assert_eq!(parse(&b).unwrap().verify(&k.probe), Err(ProbeError::Mac));
        let a = ProbePacket {
            opinion: Opinion::Up,
            ..answer(ServiceHealth::Passing)
        };
        let bytes = seal(&a, &k.answer);
        assert_eq!(bytes[3], 0);
        assert_eq!(
            parse(&bytes).unwrap().verify(&k.answer).map(|p| p.opinion),
            Ok(Opinion::Unknown)
        );
    }

    #[test]
    fn keys_depend_on_the_pair_and_its_direction() {
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        assert_ne!(context(&a, &b), context(&b, &a));
        assert_ne!(
            context(&NodeId::from("ab"), &NodeId::from("c")),
            context(&a, &NodeId::from("bc"))
        );
    }

    #[test]
    fn the_window_refuses_replays_zero_and_packets_older_than_it() {
        let mut w = ReplayWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(1));
        assert!(!w.accept(1));
        assert!(w.accept(3));
        assert!(w.accept(2), "late but new");
        assert!(!w.accept(2));
        assert!(w.accept(100));
        assert!(!w.accept(100 - REPLAY_WINDOW), "older than the window");
        assert!(w.accept(100 - REPLAY_WINDOW + 1));
        assert!(!w.accept(3));
        assert!(w.accept(u64::MAX));
        assert!(!w.accept(u64::MAX));
    }
}
