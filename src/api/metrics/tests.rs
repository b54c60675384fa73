use super::*;
use crate::core::trust::Refusal;
use crate::core::types::{NodeId, SiteId};
use crate::node::snapshot::{
    CertificateExpiry, CertificatesView, FailoverView, PeerView, PingerEvidence, SiteView,
};
use crate::wire::IndicatorView;

fn render_with(s: NodeSnapshot, serve: &ServeStats) -> String {
    let (_tx, rx) = watch::channel(Arc::new(s));
    encode(&registry(rx, serve)).expect("encodes")
}

fn render(s: &NodeSnapshot) -> String {
    render_with(s.clone(), &ServeStats::default())
}

fn site(id: &str, verdict: &'static str, epoch: Option<u64>) -> SiteView {
    SiteView {
        id: SiteId::from(id),
        opinion: "unknown",
        verdict,
        judge: "host",
        epoch,
        slot: epoch.map(|_| 0),
        leader: None,
        decided_at: None,
        hold_down_until: None,
        maintenance_until: None,
        hold_down_until_unix_ms: None,
        maintenance_until_unix_ms: None,
        on_alarm: "notify",
        alarms: Vec::new(),
        failover: "automatic".to_string(),
        electorate: Vec::new(),
        majority: 0,
        evidence: Vec::new(),
        rounds: Vec::new(),
    }
}

fn run(site: &str, epoch: u64, state: &'static str) -> FailoverView {
    FailoverView {
        id: format!("{site}-{epoch}"),
        site: SiteId::from(site),
        epoch,
        term: epoch,
        leader: NodeId::from("b1"),
        trigger: "verdict",
        state,
        summary: None,
        steps: Vec::new(),
    }
}

fn peer(node: &str, site: &str, reachable: bool, hash: Option<&str>) -> PeerView {
    PeerView {
        node: NodeId::from(node),
        site: SiteId::from(site),
        reachable,
        fleet_hash: hash.map(str::to_string),
        last_seen_ms_ago: None,
    }
}

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
    s.mesh.udp_rx_bytes = 1200;
    let text = render(&s);
    assert!(text.contains("# TYPE quorate_mesh_dropped_events_total counter"));
    assert!(text.contains("quorate_mesh_dropped_events_total{peer=\"a3\"} 7"));
    assert!(text.contains("quorate_mesh_dropped_events_total{peer=\"b1\"} 0"));
    assert!(text.contains("quorate_mesh_throttled_handshakes_total 2"));
    assert!(text.contains("quorate_mesh_address_validations_total 0"));
    assert!(text.contains("quorate_mesh_replaced_connections_total 0"));
    assert!(text.contains("quorate_mesh_udp_rx_bytes_total 1200"));
}

#[test]
fn every_vote_outcome_and_learned_verdict_is_a_series() {
    let mut s = NodeSnapshot::default();
    s.counters.vote_rounds.insert("down", 2);
    s.counters.verdicts.insert(("a".to_string(), "down"), 1);
    let text = render(&s);
    assert!(text.contains("quorate_vote_rounds_total{outcome=\"down\"} 2"));
    assert!(text.contains("quorate_vote_rounds_total{outcome=\"superseded\"} 0"));
    assert!(text.contains("quorate_verdicts_total{site=\"a\",verdict=\"down\"} 1"));
}

#[test]
fn delay_histograms_keep_their_buckets_cumulative() {
    let mut s = NodeSnapshot::default();
    s.counters.detection_delay.observe(0.03);
    s.counters.detection_delay.observe(0.5);
    s.counters.detection_delay.observe(45.0);
    let text = render(&s);
    for line in [
        "# TYPE quorate_detection_delay_seconds histogram",
        "quorate_detection_delay_seconds_bucket{le=\"0.025\"} 0",
        "quorate_detection_delay_seconds_bucket{le=\"0.05\"} 1",
        "quorate_detection_delay_seconds_bucket{le=\"0.4\"} 1",
        "quorate_detection_delay_seconds_bucket{le=\"0.5\"} 2",
        "quorate_detection_delay_seconds_bucket{le=\"30\"} 2",
        "quorate_detection_delay_seconds_bucket{le=\"+Inf\"} 3",
        "quorate_detection_delay_seconds_sum 45.53",
        "quorate_detection_delay_seconds_count 3",
        "quorate_decision_delay_seconds_count 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

#[test]
fn certificate_expiry_is_a_gauge_per_certificate() {
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
    assert!(text
        .contains("quorate_certificate_not_after_timestamp_seconds{certificate=\"node\"} 1086400"));
    // Expired: negative, so an alert on `< 30 * 86400` keeps firing.
    s.certificates = Some(CertificatesView::at(expiry, 1_000_000 + 2 * 86_400));
    assert!(render(&s).contains("quorate_certificate_expiry_seconds{certificate=\"node\"} -86400"));
}

#[test]
fn each_site_shows_its_verdict_opinion_epoch_and_windows() {
    let mut s = NodeSnapshot::default();
    let mut a = site("a", "down", Some(7));
    a.opinion = "down";
    a.hold_down_until_unix_ms = Some(1_800_000_000_999);
    let mut b = site("b", "none", None);
    b.opinion = "up";
    b.maintenance_until_unix_ms = Some(1_800_000_600_000);
    b.failover = "manual: single_vantage = \"manual\"".to_string();
    s.sites = vec![a, b];
    let text = render(&s);
    for line in [
        "quorate_site_verdict{site=\"a\",verdict=\"down\"} 1",
        "quorate_site_verdict{site=\"a\",verdict=\"up\"} 0",
        "quorate_site_verdict{site=\"a\",verdict=\"none\"} 0",
        "quorate_site_verdict{site=\"b\",verdict=\"none\"} 1",
        "quorate_site_opinion{site=\"a\",opinion=\"down\"} 1",
        "quorate_site_opinion{site=\"b\",opinion=\"up\"} 1",
        "quorate_site_opinion{site=\"b\",opinion=\"unknown\"} 0",
        "quorate_site_epoch{site=\"a\"} 7",
        "quorate_site_epoch{site=\"b\"} 0",
        "quorate_site_hold_down_until_timestamp_seconds{site=\"a\"} 1800000000",
        "quorate_site_hold_down_until_timestamp_seconds{site=\"b\"} 0",
        "quorate_site_maintenance_until_timestamp_seconds{site=\"a\"} 0",
        "quorate_site_maintenance_until_timestamp_seconds{site=\"b\"} 1800000600",
        "quorate_site_automatic_failover{site=\"a\"} 1",
        "quorate_site_automatic_failover{site=\"b\"} 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

#[test]
fn the_newest_run_of_each_site_is_its_failover_state() {
    let mut s = NodeSnapshot {
        sites: vec![site("a", "down", Some(9)), site("b", "none", None)],
        failovers: vec![run("a", 9, "aborted"), run("a", 4, "succeeded")],
        ..NodeSnapshot::default()
    };
    let text = render(&s);
    assert!(text.contains("quorate_site_failover_state{site=\"a\",state=\"aborted\"} 1"));
    assert!(text.contains("quorate_site_failover_state{site=\"a\",state=\"succeeded\"} 0"));
    assert!(text.contains("quorate_site_failover_state{site=\"b\",state=\"none\"} 1"));
    let a_states = text
        .lines()
        .filter(|l| l.starts_with("quorate_site_failover_state{site=\"a\""))
        .count();
    assert_eq!(a_states, state::RUN_STATES.len());
    // A state this list does not know yet still shows, as the one that holds.
    s.failovers = vec![run("a", 10, "paused")];
    let text = render(&s);
    assert!(text.contains("quorate_site_failover_state{site=\"a\",state=\"paused\"} 1"));
    assert!(text.contains("quorate_site_failover_state{site=\"a\",state=\"none\"} 0"));
}

#[test]
fn peers_show_reachability_and_fleet_mismatch() {
    let mut s = NodeSnapshot {
        fleet_hash: "h1".to_string(),
        ..NodeSnapshot::default()
    };
    s.peers = vec![
        peer("a1", "a", true, Some("h1")),
        peer("a2", "a", false, Some("h2")),
        peer("c1", "c", true, Some("h3")),
        peer("c2", "c", false, None),
    ];
    let text = render(&s);
    for line in [
        "quorate_peers_reachable 2",
        "quorate_peer_reachable{peer=\"a1\",site=\"a\"} 1",
        "quorate_peer_reachable{peer=\"a2\",site=\"a\"} 0",
        "quorate_fleet_mismatched_peers 2",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

#[test]
fn indicators_come_from_this_nodes_own_pinger_only() {
    let indicator = |node: &str, reachable, misses, rtt| IndicatorView {
        node: NodeId::from(node),
        reachable,
        misses,
        last_rtt_us: rtt,
        last_seen_age_ms: None,
        service: Default::default(),
    };
    let evidence = |pinger: &str, indicators| PingerEvidence {
        pinger: NodeId::from(pinger),
        opinion: "up",
        suspect: false,
        evidence_age_ms: None,
        reported_ms_ago: 0,
        indicators,
    };
    let mut a = site("a", "none", None);
    a.evidence = vec![
        evidence(
            "b1",
            vec![
                indicator("a1", Some(true), 0, Some(1250)),
                indicator("a2", Some(false), 6, None),
                indicator("a3", None, 1, None),
            ],
        ),
        evidence("c1", vec![indicator("a1", Some(false), 9, Some(9))]),
    ];
    let s = NodeSnapshot {
        node: NodeId::from("b1"),
        sites: vec![a],
        ..NodeSnapshot::default()
    };
    let text = render(&s);
    for line in [
        "quorate_indicator_rtt_seconds{site=\"a\",indicator=\"a1\"} 0.00125",
        "quorate_indicator_misses{site=\"a\",indicator=\"a1\"} 0",
        "quorate_indicator_misses{site=\"a\",indicator=\"a2\"} 6",
        "quorate_indicator_misses{site=\"a\",indicator=\"a3\"} 1",
        "quorate_indicator_reachable{site=\"a\",indicator=\"a1\"} 1",
        "quorate_indicator_reachable{site=\"a\",indicator=\"a2\"} 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    assert!(!text.contains("indicator=\"a3\"} 0\nquorate_indicator_reachable"));
    assert!(!text.contains("quorate_indicator_rtt_seconds{site=\"a\",indicator=\"a2\"}"));
    assert!(!text.contains("quorate_indicator_reachable{site=\"a\",indicator=\"a3\"}"));
    assert_eq!(text.matches("indicator=\"a1\"").count(), 3, "{text}");
}

#[test]
fn build_node_and_rest_server_are_described() {
    let serve = ServeStats::default();
    serve.header_timeouts.inc();
    let s = NodeSnapshot {
        node: NodeId::from("b1"),
        site: SiteId::from("b"),
        roles: vec!["indicator", "pinger", "voter"],
        fleet_hash: "abc".to_string(),
        ..NodeSnapshot::default()
    };
    let text = render_with(s, &serve);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(
            "quorate_build_info{{version=\"{version}\",profile=\""
        )),
        "{text}"
    );
    assert!(text.contains(
        "quorate_node_info{node=\"b1\",site=\"b\",roles=\"indicator,pinger,voter\",fleet_hash=\"abc\"} 1"
    ));
    assert!(text.contains("quorate_api_header_timeouts_total 1"));
    assert!(text.contains("quorate_api_evicted_connections_total 0"));
    assert!(text.contains("quorate_tilts_total 0"));
    assert!(text.contains("quorate_voting_disabled 0"));
}

#[test]
fn every_family_is_described_once_and_prefixed() {
    let s = NodeSnapshot {
        sites: vec![site("a", "up", Some(1))],
        ..NodeSnapshot::default()
    };
    let text = render(&s);
    let mut seen = std::collections::BTreeSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = l.split(' ').nth(2).expect("a name");
        assert!(name.starts_with("quorate_"), "{l}");
        assert!(seen.insert(name.to_string()), "{name} twice");
    }
    let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
    assert_eq!(helps.len(), seen.len());
    for h in helps {
        assert!(h.ends_with('.') && !h.ends_with(".."), "{h}");
    }
}
