//! What each fuzz target does with its input: feeds it to one parser of outside input and
//! checks the invariants that are cheap to check. The targets in `fuzz_targets/` are one line
//! each; `tests/fuzz_corpus.rs` of the main crate includes this file and replays every
//! committed corpus file and regression input through the same functions, so `cargo test`
//! checks them without the fuzz toolchain. Only quorate's public API is used here.

use quorate::actuators::bgp::{
    bird_answers, bird_reconfigured, parse_bird_routes, parse_exabgp_state, render_bird_routes,
    render_exabgp_state, BgpParams,
};
use quorate::actuators::vpn::check_wg_config_text;
use quorate::actuators::{output_tail, ActuatorKind, OUTPUT_TAIL_BYTES};
use quorate::api::{parse_operator_body, OperatorCall};
use quorate::config::{ConfigError, Fleet};
use quorate::core::net_prefix::{InterfaceAddr, Prefix};
use quorate::core::types::SiteId;
use quorate::net::probe::{self, ProbePacket, ReplayWindow, SessionKeys, PROBE_LEN};
use quorate::node::CommandKind;
use quorate::wire::{
    decode_datagram, decode_message, encode_datagram, encode_message, MAX_DATAGRAM, MAX_MESSAGE,
};

/// What a target does with one input; panics on a broken invariant.
pub type Check = fn(&[u8]);

/// Every target by name, for the corpus replay test.
pub const TARGETS: &[(&str, Check)] = &[
    ("wire_datagram", wire_datagram),
    ("probe_packet", probe_packet),
    ("wire_message", wire_message),
    ("fleet_toml", fleet_toml),
    ("rest_body", rest_body),
    ("step_params", step_params),
    ("prefix", prefix),
    ("bgp_router_output", bgp_router_output),
    ("wg_config", wg_config),
];

/// A Pinger/Indicator datagram as `net::link` receives it: decodes or is refused, and what
/// decodes encodes again (never longer) to the same value.
pub fn wire_datagram(data: &[u8]) {
    match decode_datagram(data) {
        Ok(d) => {
            assert!(data.len() <= MAX_DATAGRAM);
            let again = encode_datagram(&d);
            assert!(again.len() <= data.len(), "re-encoding grew: {d:?}");
            assert_eq!(decode_datagram(&again).as_ref(), Ok(&d));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The exporter output the `probe_packet` target's keys come from; the seed corpus seals its
/// packets with them, so that verification is reached.
/// Every byte differs, so the two direction keys differ as the exporter's would.
pub const PROBE_FUZZ_MATERIAL: [u8; probe::MATERIAL_LEN] = {
    let mut m = [0u8; probe::MATERIAL_LEN];
    let mut i = 0;
    while i < m.len() {
        m[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    m
};

/// A probe packet as the mesh socket receives it (`net::probe`): parses or is refused with a
/// reason; a packet that verifies under a key re-seals to the very same bytes and does not
/// verify under the other direction's key. The input read as big-endian sequence numbers also
/// drives a replay window: a number it accepts is never accepted twice.
pub fn probe_packet(data: &[u8]) {
    let keys = SessionKeys::from_material(&PROBE_FUZZ_MATERIAL);
    match probe::parse(data) {
        Ok(u) => {
            assert_eq!(data.len(), PROBE_LEN);
            assert!(probe::is_probe_datagram(data[0]));
            for (key, other) in [(&keys.probe, &keys.answer), (&keys.answer, &keys.probe)] {
                if let Ok(p) = u.verify(key) {
                    let p: ProbePacket = p;
                    assert_eq!(&probe::seal(&p, key)[..], data);
                    assert!(u.verify(other).is_err(), "verified under both keys");
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let mut window = ReplayWindow::default();
    for chunk in data.chunks_exact(8) {
        let seq = u64::from_be_bytes(chunk.try_into().unwrap());
        if window.accept(seq) {
            assert!(!window.accept(seq), "sequence {seq} accepted twice");
        }
    }
}

/// A stream message (status, votes, run journal, operator lock) as `net::link` receives it:
/// decodes or is refused; what decodes encodes again to the same value, and a frame within
/// the limit never encodes to one past it.
pub fn wire_message(data: &[u8]) {
    match decode_message(data) {
        Ok(m) => {
            assert!(data.len() <= MAX_MESSAGE);
            let again = encode_message(&m)
                .unwrap_or_else(|e| panic!("a decoded {} message does not encode: {e}", m.kind()));
            assert!(again.len() <= data.len(), "re-encoding grew: {}", m.kind());
            assert_eq!(decode_message(&again).as_ref(), Ok(&m));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A fleet file through `Fleet::parse`, the path `quorate check-config` takes, then the
/// queries a node and check-config make of an accepted fleet.
pub fn fleet_toml(data: &[u8]) {
    // A fleet file is read with read_to_string: text that is not UTF-8 never gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Fleet::parse(text) {
        Ok(fleet) => {
            assert_eq!(fleet.hash.len(), 64);
            let _ = fleet.warnings();
            let _ = fleet.api.note();
            let _ = fleet.anycast();
            for site in &fleet.sites {
                let _ = fleet.electorate(&site.id);
                let _ = fleet.indicators(&site.id);
                let _ = fleet.watched_by_site(&site.id);
            }
            for node in &fleet.nodes {
                assert_eq!(fleet.node(&node.id).map(|n| &n.id), Some(&node.id));
            }
        }
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "refused without a problem");
            assert!(problems.iter().all(|p| !p.trim().is_empty()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Fixed for reproducibility: a `duration_s` counts from here.
const NOW_MS: i64 = 1_767_225_600_000;

/// A mutating REST call's body: the first byte picks the call, the rest is the body, read by
/// the function the handlers use. An accepted body becomes the command of that call.
pub fn rest_body(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let calls = [
        OperatorCall::Failover,
        OperatorCall::Drill,
        OperatorCall::Failback,
        OperatorCall::SetMaintenance,
    ];
    let call = calls[usize::from(pick) % calls.len()];
    match (call, parse_operator_body(call, "a", body, NOW_MS)) {
        (OperatorCall::Failover, Ok(CommandKind::Failover { reason, .. })) => {
            assert!(!reason.trim().is_empty());
        }
        (OperatorCall::Drill, Ok(CommandKind::Drill { .. }))
        | (OperatorCall::Failback, Ok(CommandKind::Failback { .. })) => {}
        (
            OperatorCall::SetMaintenance,
            Ok(CommandKind::SetMaintenance {
                site,
                until_unix_ms,
            }),
        ) => {
            assert_eq!(site, SiteId::from("a"));
            assert!(until_unix_ms >= 0);
        }
        (call, Ok(other)) => panic!("{call:?} became {other:?}"),
        (_, Err(e)) => assert!(!e.is_empty()),
    }
}

/// A plan step's params: the first byte picks the actuator kind, the rest is the step's table
/// as JSON (what the fleet's TOML table becomes), checked as check-config checks it.
pub fn step_params(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let kind = ActuatorKind::ALL[usize::from(pick) % ActuatorKind::ALL.len()];
    let Ok(params) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let checked = quorate::actuators::validate(kind, &params);
    if let Err(e) = &checked {
        assert!(!e.is_empty());
    }
    if kind == ActuatorKind::Bgp {
        let bgp = BgpParams::from_params(&params);
        assert_eq!(bgp.is_ok(), checked.is_ok());
        if let Ok(bgp) = bgp {
            assert!(!bgp.prefixes.is_empty());
            let effect = bgp.effect(SiteId::from("a"));
            assert_eq!(effect.prefixes, bgp.prefixes);
            for p in &bgp.prefixes {
                assert_eq!(Prefix::parse(&p.to_string()).as_ref(), Ok(p));
            }
        }
    }
}

/// A prefix or interface address as operators write them: what parses displays as text that
/// parses to the same value (also through serde), and a prefix is its own network.
pub fn prefix(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let as_prefix = Prefix::parse(text);
    match &as_prefix {
        Ok(p) => {
            assert!(p.length() <= p.family().max_len());
            let shown = p.to_string();
            assert_eq!(
                Prefix::parse(&shown).as_ref(),
                Ok(p),
                "{text:?} shown as {shown:?}"
            );
            let json = serde_json::to_string(p).expect("a prefix serializes");
            assert_eq!(serde_json::from_str::<Prefix>(&json).ok().as_ref(), Some(p));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match InterfaceAddr::parse(text) {
        Ok(a) => {
            let net = a.network();
            assert_eq!(Prefix::parse(&net.to_string()), Ok(net));
            assert_eq!(InterfaceAddr::parse(&a.to_string()), Ok(a));
            if let Ok(p) = as_prefix {
                assert_eq!(net, p);
            }
        }
        Err(_) => assert!(as_prefix.is_err(), "{text:?} is a prefix but no address"),
    }
}

/// What the bgp actuator reads back from the router side: the BIRD route file, the ExaBGP
/// state file (both round trip through what the actuator writes) and a CLI's output, whose
/// chunks (split at NUL) go through the output tail before birdc's answer is judged.
pub fn bgp_router_output(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(routes) = parse_bird_routes(&text) {
        let written = render_bird_routes(&routes);
        assert_eq!(parse_bird_routes(&written), Ok(routes));
    }
    if let Some(announced) = parse_exabgp_state(&text) {
        let written = render_exabgp_state(&announced);
        assert_eq!(parse_exabgp_state(&written), Some(announced));
    }
    let output = output_tail(data.split(|&b| b == 0));
    assert!(output.len() <= OUTPUT_TAIL_BYTES);
    let _ = bird_answers(&output) || bird_reconfigured(&output);
}

/// A WireGuard config a vpn step brings up, checked before `wg setconf` sees it.
pub fn wg_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = check_wg_config_text("fuzz.conf", text) {
        assert!(e.starts_with("config fuzz.conf"), "{e}");
    }
}
