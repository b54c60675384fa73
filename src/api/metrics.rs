//! Prometheus text exposition of a node snapshot.

use super::ServeStats;
use crate::core::trust::Refusal;
use crate::node::snapshot::{Histogram, NodeSnapshot};
use std::fmt::Write;

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (b, c) in h.bounds.iter().zip(&h.counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
}

pub fn render(s: &NodeSnapshot) -> String {
    let c = &s.counters;
    let m = &s.mesh;
    let mut out = String::new();
    counter(
        &mut out,
        "quorate_probes_sent_total",
        "Probes this node's Pinger sent.",
        c.probes_sent,
    );
    counter(
        &mut out,
        "quorate_probes_answered_total",
        "Probe answers received within the timeout.",
        c.probes_answered,
    );
    counter(
        &mut out,
        "quorate_probes_late_total",
        "Probe answers received after their timeout.",
        c.probes_late,
    );
    counter(
        &mut out,
        "quorate_probe_misses_total",
        "Probes not answered within the timeout.",
        c.probe_misses,
    );
    counter(
        &mut out,
        "quorate_indicator_answers_total",
        "Probes this node answered as an Indicator.",
        m.probes_answered_by_me,
    );
    counter(
        &mut out,
        "quorate_false_positives_external_total",
        "Indicators believed unreachable that answered again.",
        c.false_positives_external,
    );
    counter(
        &mut out,
        "quorate_false_positives_internal_total",
        "Vote rounds this node started for DOWN that the electorate contradicted.",
        c.false_positives_internal,
    );
    counter(
        &mut out,
        "quorate_retries_until_up_total",
        "Unreachable Indicators that became reachable again.",
        c.retries_until_up,
    );
    let _ = writeln!(
        out,
        "# HELP quorate_vote_rounds_total Vote rounds this node ran, by outcome.\n# TYPE quorate_vote_rounds_total counter"
    );
    for outcome in [
        "down",
        "up",
        "false_positive",
        "still_down",
        "undecided",
        "conflict",
        "superseded",
    ] {
        let v = c.vote_rounds.get(outcome).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "quorate_vote_rounds_total{{outcome=\"{outcome}\"}} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP quorate_verdicts_total Committed verdicts this node learned.\n# TYPE quorate_verdicts_total counter"
    );
    for ((site, verdict), v) in &c.verdicts {
        let _ = writeln!(
            out,
            "quorate_verdicts_total{{site=\"{site}\",verdict=\"{verdict}\"}} {v}"
        );
    }
    histogram(
        &mut out,
        "quorate_detection_delay_seconds",
        "First missed probe of the DOWN streak -> committed DOWN verdict known here.",
        &c.detection_delay,
    );
    histogram(
        &mut out,
        "quorate_decision_delay_seconds",
        "This node's DOWN opinion -> committed DOWN verdict known here.",
        &c.decision_delay,
    );
    counter(
        &mut out,
        "quorate_mesh_messages_sent_total",
        "Stream messages sent.",
        m.messages_sent,
    );
    counter(
        &mut out,
        "quorate_mesh_messages_received_total",
        "Stream messages received.",
        m.messages_received,
    );
    counter(
        &mut out,
        "quorate_mesh_malformed_datagrams_total",
        "QUIC datagrams dropped (the mesh uses none).",
        m.malformed_datagrams,
    );
    counter(
        &mut out,
        "quorate_mesh_probe_unauthenticated_total",
        "Probe packets dropped unanswered: malformed, for no live session, wrong direction or failed MAC.",
        m.probe_unauthenticated,
    );
    counter(
        &mut out,
        "quorate_mesh_probe_replayed_total",
        "Authenticated probe packets dropped as replays.",
        m.probe_replayed,
    );
    counter(
        &mut out,
        "quorate_mesh_malformed_messages_total",
        "Stream messages dropped as malformed.",
        m.malformed_messages,
    );
    counter(
        &mut out,
        "quorate_mesh_oversized_messages_total",
        "Stream messages dropped as too large.",
        m.oversized_messages,
    );
    counter(
        &mut out,
        "quorate_mesh_unsendable_messages_total",
        "Messages not sent because a peer would drop them as too large.",
        m.unsendable_messages,
    );
    counter(
        &mut out,
        "quorate_mesh_rejected_handshakes_total",
        "Incoming connections refused (certificate).",
        m.rejected_handshakes,
    );
    counter(
        &mut out,
        "quorate_mesh_address_validations_total",
        "Connection attempts answered with a QUIC Retry (source address not yet validated).",
        m.address_validations,
    );
    counter(
        &mut out,
        "quorate_mesh_throttled_handshakes_total",
        "Connection attempts refused by the handshake rate limit (per source IP or node-wide).",
        m.throttled_handshakes,
    );
    counter(
        &mut out,
        "quorate_mesh_replaced_connections_total",
        "Incoming connections closed because the same peer connected again.",
        m.replaced_connections,
    );
    let _ = writeln!(
        out,
        "# HELP quorate_mesh_dropped_events_total Probe answers and messages of a peer dropped because its queue into the node was full, by peer.\n# TYPE quorate_mesh_dropped_events_total counter"
    );
    for (peer, n) in &m.dropped_events {
        let _ = writeln!(
            out,
            "quorate_mesh_dropped_events_total{{peer=\"{peer}\"}} {n}"
        );
    }
    counter(
        &mut out,
        "quorate_mesh_udp_tx_bytes_total",
        "UDP payload bytes sent.",
        m.udp_tx_bytes,
    );
    counter(
        &mut out,
        "quorate_mesh_udp_tx_datagrams_total",
        "UDP datagrams sent.",
        m.udp_tx_datagrams,
    );
    counter(
        &mut out,
        "quorate_fleet_reloads_total",
        "Fleet file changes applied.",
        c.fleet_reloads,
    );
    counter(
        &mut out,
        "quorate_fleet_reload_errors_total",
        "Fleet file changes refused.",
        c.fleet_reload_errors,
    );
    counter(
        &mut out,
        "quorate_persist_errors_total",
        "Durable writes that failed.",
        c.persist_errors,
    );
    let _ = writeln!(
        out,
        "# HELP quorate_refused_messages_total Messages refused because the sender may not originate them or a number is out of bounds, by reason.\n# TYPE quorate_refused_messages_total counter"
    );
    for reason in Refusal::ALL {
        let r = reason.as_str();
        let v = c.refused.get(r).copied().unwrap_or(0);
        let _ = writeln!(out, "quorate_refused_messages_total{{reason=\"{r}\"}} {v}");
    }
    let peers_up = s.peers.iter().filter(|p| p.reachable).count();
    let _ = writeln!(
        out,
        "# HELP quorate_tilt 1 while this node distrusts its clocks (wall-clock jump or stalled loop) and abstains.\n# TYPE quorate_tilt gauge\nquorate_tilt {}",
        u8::from(s.tilt.active)
    );
    counter(
        &mut out,
        "quorate_tilts_total",
        "Times this node started distrusting its clocks.",
        s.tilt.tilts,
    );
    if let Some(c) = &s.certificates {
        let _ = writeln!(
            out,
            "# HELP quorate_certificate_expiry_seconds Seconds until the certificate the node started with stops being valid (negative: expired), for this node's own certificate and the fleet CA's.\n# TYPE quorate_certificate_expiry_seconds gauge\nquorate_certificate_expiry_seconds{{certificate=\"node\"}} {}\nquorate_certificate_expiry_seconds{{certificate=\"ca\"}} {}",
            c.node_expires_in_s, c.ca_expires_in_s
        );
        let _ = writeln!(
            out,
            "# HELP quorate_certificate_not_after_timestamp_seconds When the certificate the node started with stops being valid, Unix seconds.\n# TYPE quorate_certificate_not_after_timestamp_seconds gauge\nquorate_certificate_not_after_timestamp_seconds{{certificate=\"node\"}} {}\nquorate_certificate_not_after_timestamp_seconds{{certificate=\"ca\"}} {}",
            c.expiry.node_not_after_unix_s, c.expiry.ca_not_after_unix_s
        );
    }
    let _ = writeln!(out, "# HELP quorate_peers_reachable Peers heard from recently.\n# TYPE quorate_peers_reachable gauge\nquorate_peers_reachable {peers_up}");
    out
}

/// The REST server's own counters (its bounds at work).
pub fn render_rest(out: &mut String, s: &ServeStats) {
    use std::sync::atomic::Ordering::Relaxed;
    counter(
        out,
        "quorate_api_evicted_connections_total",
        "REST connections closed at the connection cap to make room (idle, or still sending headers).",
        s.evicted.load(Relaxed),
    );
    counter(
        out,
        "quorate_api_refused_connections_total",
        "REST connections refused at the connection cap (every open one inside a handler).",
        s.refused.load(Relaxed),
    );
    counter(
        out,
        "quorate_api_header_timeouts_total",
        "REST connections closed because a request head did not arrive in time.",
        s.header_timeouts.load(Relaxed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reason_has_a_line_zero_included() {
        let mut s = NodeSnapshot::default();
        s.counters.refused.insert("not_in_electorate", 3);
        let text = render(&s);
        assert!(text.contains("quorate_refused_messages_total{reason=\"not_in_electorate\"} 3"));
        for r in Refusal::ALL {
            let line = format!(
                "quorate_refused_messages_total{{reason=\"{}\"}} ",
                r.as_str()
            );
            assert!(text.contains(&line), "{line}");
        }
        assert!(text.contains("quorate_refused_messages_total{reason=\"too_large\"} 0"));
    }

    #[test]
    fn mesh_bounds_are_exported_with_drops_by_peer() {
        let mut s = NodeSnapshot::default();
        s.mesh.dropped_events.insert("a3".into(), 7);
        s.mesh.dropped_events.insert("b1".into(), 0);
        s.mesh.throttled_handshakes = 2;
        let text = render(&s);
        assert!(text.contains("quorate_mesh_dropped_events_total{peer=\"a3\"} 7"));
        assert!(text.contains("quorate_mesh_dropped_events_total{peer=\"b1\"} 0"));
        assert!(text.contains("quorate_mesh_throttled_handshakes_total 2"));
        assert!(text.contains("quorate_mesh_address_validations_total 0"));
        assert!(text.contains("quorate_mesh_replaced_connections_total 0"));
    }

    #[test]
    fn certificate_expiry_is_a_gauge_per_certificate() {
        use crate::node::snapshot::{CertificateExpiry, CertificatesView};
        let mut s = NodeSnapshot::default();
        assert!(!render(&s).contains("quorate_certificate_expiry_seconds"));
        let expiry = CertificateExpiry {
            node_not_after_unix_s: 1_000_000 + 86_400,
            ca_not_after_unix_s: 1_000_000 + 50 * 86_400,
        };
        s.certificates = Some(CertificatesView::at(expiry, 1_000_000));
        let text = render(&s);
        assert!(
            text.contains("# TYPE quorate_certificate_expiry_seconds gauge"),
            "{text}"
        );
        assert!(text.contains("quorate_certificate_expiry_seconds{certificate=\"node\"} 86400"));
        assert!(text.contains("quorate_certificate_expiry_seconds{certificate=\"ca\"} 4320000"));
        assert!(text.contains(
            "quorate_certificate_not_after_timestamp_seconds{certificate=\"node\"} 1086400"
        ));
        // Expired: negative, so an alert on `< 30 * 86400` keeps firing.
        s.certificates = Some(CertificatesView::at(expiry, 1_000_000 + 2 * 86_400));
        assert!(
            render(&s).contains("quorate_certificate_expiry_seconds{certificate=\"node\"} -86400")
        );
    }
}
