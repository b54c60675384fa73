//! What the node counted since it started, read off the published snapshot at each scrape:
//! probes, vote rounds, verdicts, detection and decision delays, mesh traffic and what the
//! mesh dropped or refused, fleet reloads, durable-write failures, refused messages and
//! TILTs.

use super::Out;
use crate::core::trust::Refusal;
use crate::node::snapshot::NodeSnapshot;
use std::fmt;

type Read = fn(&NodeSnapshot) -> u64;

/// Plain counters: name (no prefix, no `_total`), help, and the snapshot field behind it.
const COUNTERS: &[(&str, &str, Read)] = &[
    ("probes_sent", "Probes this node's Pinger sent.", |s| s.counters.probes_sent),
    (
        "probes_answered",
        "Probe answers received within the timeout.",
        |s| s.counters.probes_answered,
    ),
    (
        "probes_late",
        "Probe answers received after their timeout.",
        |s| s.counters.probes_late,
    ),
    (
        "probe_misses",
        "Probes not answered within the timeout.",
        |s| s.counters.probe_misses,
    ),
    (
        "indicator_answers",
        "Probes this node answered as an Indicator.",
        |s| s.mesh.probes_answered_by_me,
    ),
    (
        "false_positives_external",
        "Indicators believed unreachable that answered again.",
        |s| s.counters.false_positives_external,
    ),
    (
        "false_positives_internal",
        "Vote rounds this node started for DOWN that the electorate contradicted.",
        |s| s.counters.false_positives_internal,
    ),
    (
        "retries_until_up",
        "Unreachable Indicators that became reachable again.",
        |s| s.counters.retries_until_up,
    ),
    ("mesh_messages_sent", "Stream messages sent.", |s| s.mesh.messages_sent),
    (
        "mesh_messages_received",
        "Stream messages received.",
        |s| s.mesh.messages_received,
    ),
    (
        "mesh_malformed_datagrams",
        "QUIC datagrams dropped (the mesh uses none).",
        |s| s.mesh.malformed_datagrams,
    ),
    (
        "mesh_probe_unauthenticated",
        "Probe packets dropped unanswered: malformed, for no live session, wrong direction or failed MAC.",
        |s| s.mesh.probe_unauthenticated,
    ),
    (
        "mesh_probe_replayed",
        "Authenticated probe packets dropped as replays.",
        |s| s.mesh.probe_replayed,
    ),
    (
        "mesh_probe_unsolicited",
        "Authenticated probe answers dropped: more answers than probes sent in their session.",
        |s| s.mesh.probe_unsolicited,
    ),
    (
        "mesh_malformed_messages",
        "Stream messages dropped as malformed.",
        |s| s.mesh.malformed_messages,
    ),
    (
        "mesh_oversized_messages",
        "Stream messages dropped as too large.",
        |s| s.mesh.oversized_messages,
    ),
    (
        "mesh_unsendable_messages",
        "Messages not sent because a peer would drop them as too large.",
        |s| s.mesh.unsendable_messages,
    ),
    (
        "mesh_rejected_handshakes",
        "Incoming connections refused (certificate).",
        |s| s.mesh.rejected_handshakes,
    ),
    (
        "mesh_address_validations",
        "Connection attempts answered with a QUIC Retry (source address not yet validated).",
        |s| s.mesh.address_validations,
    ),
    (
        "mesh_throttled_handshakes",
        "Connection attempts refused by the handshake rate limit (per source IP or node-wide).",
        |s| s.mesh.throttled_handshakes,
    ),
    (
        "mesh_replaced_connections",
        "Incoming connections closed because the same peer connected again.",
        |s| s.mesh.replaced_connections,
    ),
    (
        "mesh_parked_connections",
        "Connections of pairs that speak only through probes, closed once idle; their probe sessions stay open.",
        |s| s.mesh.parked_connections,
    ),
    (
        "mesh_pending_dropped",
        "Messages held for a parked peer and dropped unsent: older than a handshake timeout when its connection came up, or pushed out by newer ones.",
        |s| s.mesh.pending_dropped,
    ),
    (
        "mesh_dial_failures",
        "Outgoing connection attempts to peers that failed.",
        |s| s.mesh.dial_failures,
    ),
    (
        "mesh_send_failures",
        "Probes, probe answers and messages not sent: no live connection to the peer, or it failed while sending.",
        |s| s.mesh.send_failures,
    ),
    ("mesh_udp_tx_bytes", "UDP payload bytes sent.", |s| s.mesh.udp_tx_bytes),
    (
        "mesh_udp_tx_datagrams",
        "UDP datagrams sent.",
        |s| s.mesh.udp_tx_datagrams,
    ),
    (
        "mesh_udp_rx_bytes",
        "UDP payload bytes received.",
        |s| s.mesh.udp_rx_bytes,
    ),
    (
        "mesh_udp_rx_datagrams",
        "UDP datagrams received.",
        |s| s.mesh.udp_rx_datagrams,
    ),
    (
        "fleet_reloads",
        "Fleet file changes applied.",
        |s| s.counters.fleet_reloads,
    ),
    (
        "fleet_reload_errors",
        "Fleet file changes refused.",
        |s| s.counters.fleet_reload_errors,
    ),
    (
        "persist_errors",
        "Durable writes that failed.",
        |s| s.counters.persist_errors,
    ),
    (
        "notifications_sent",
        "Calls of [[notify]] notifiers that succeeded, from this node.",
        |s| s.counters.notifications_sent,
    ),
    (
        "notifications_failed",
        "Calls of [[notify]] notifiers that failed (each attempt), from this node.",
        |s| s.counters.notifications_failed,
    ),
    (
        "notifications_taken_over",
        "Notifications this node called for a leader that had not said it sent them.",
        |s| s.counters.notifications_taken_over,
    ),
    (
        "notifications_cancelled",
        "Notifications this node held and dropped on another voter's sent note.",
        |s| s.counters.notifications_cancelled,
    ),
    (
        "tilts",
        "Times this node started distrusting its clocks.",
        |s| s.tilt.tilts,
    ),
];

/// Every outcome label of a vote round, listed even before it first happens.
const VOTE_OUTCOMES: [&str; 7] = [
    "down",
    "up",
    "false_positive",
    "still_down",
    "undecided",
    "conflict",
    "superseded",
];

pub(super) fn encode(s: &NodeSnapshot, out: &mut Out) -> fmt::Result {
    for (name, help, read) in COUNTERS {
        out.counter(name, help, read(s))?;
    }
    let c = &s.counters;
    out.counters(
        "vote_rounds",
        "Vote rounds this node ran, by outcome.",
        ["outcome"],
        VOTE_OUTCOMES.map(|o| ([o], c.vote_rounds.get(o).copied().unwrap_or(0))),
    )?;
    out.counters(
        "verdicts",
        "Committed verdicts this node learned.",
        ["site", "verdict"],
        c.verdicts
            .iter()
            .map(|((site, verdict), n)| ([site.as_str(), *verdict], *n)),
    )?;
    out.counters(
        "refused_messages",
        "Messages refused because the sender may not originate them or a number is out of bounds, by reason.",
        ["reason"],
        Refusal::ALL.map(|r| {
            let r = r.as_str();
            ([r], c.refused.get(r).copied().unwrap_or(0))
        }),
    )?;
    out.counters(
        "mesh_dropped_events",
        "Probe answers and messages of a peer dropped because its queue into the node was full, by peer.",
        ["peer"],
        s.mesh
            .dropped_events
            .iter()
            .map(|(peer, n)| ([peer.as_str()], *n)),
    )?;
    out.histogram(
        "detection_delay_seconds",
        "First missed probe of the DOWN streak -> committed DOWN verdict known here.",
        &c.detection_delay,
    )?;
    out.histogram(
        "decision_delay_seconds",
        "This node's DOWN opinion -> committed DOWN verdict known here.",
        &c.decision_delay,
    )
}
