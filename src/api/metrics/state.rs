//! What the node believes right now, as gauges read off the published snapshot: each watched
//! site's committed verdict, this node's own opinion, the epoch, the newest failover run,
//! maintenance and hold-down; the peers and whether their fleet file matches; the Indicators
//! this node's Pinger probes; clocks, voting, self-fencing and certificates. The same values
//! `/v1/status` and `/v1/sites` show, from the same snapshot.

use super::Out;
use crate::node::snapshot::{NodeSnapshot, SiteView};
use std::fmt;

/// Values of `site_verdict{verdict}`: `SiteView::verdict`.
pub(super) const VERDICTS: [&str; 3] = ["up", "down", "none"];
/// Values of `site_opinion{opinion}`: `SiteView::opinion`.
pub(super) const OPINIONS: [&str; 3] = ["up", "down", "unknown"];
/// Values of `site_failover_state{state}`: `FailoverView::state`, and "none" before any run.
pub(super) const RUN_STATES: [&str; 8] = [
    "none",
    "waiting",
    "running",
    "succeeded",
    "dropped",
    "precheck_failed",
    "aborted",
    "compensated",
];

/// One series per known value, 1 for `actual` and 0 for the others, so that a query such as
/// `site_verdict{verdict="down"} == 1` works without `absent()`. A value the list does not
/// know yet is listed too, with 1, rather than hidden.
fn one_hot<'a>(known: &'a [&'a str], actual: &'a str) -> impl Iterator<Item = (&'a str, u32)> + 'a {
    let extra = (!known.contains(&actual)).then_some((actual, 1));
    known
        .iter()
        .map(move |k| (*k, u32::from(*k == actual)))
        .chain(extra)
}

/// Per site, one-hot rows of `value(site)` over `known`, labelled `[site, value]`.
fn per_site<'a>(
    sites: &'a [SiteView],
    known: &'a [&'a str],
    value: impl Fn(&'a SiteView) -> &'a str + 'a,
) -> impl Iterator<Item = ([&'a str; 2], u32)> + 'a {
    sites
        .iter()
        .flat_map(move |v| one_hot(known, value(v)).map(move |(k, on)| ([v.id.as_str(), k], on)))
}

/// Unix seconds of a Unix-millisecond time, 0 for none.
fn unix_s(ms: Option<i64>) -> i64 {
    ms.map_or(0, |ms| ms.div_euclid(1000))
}

pub(super) fn encode(s: &NodeSnapshot, out: &mut Out) -> fmt::Result {
    let roles = s.roles.join(",");
    out.info(
        "node",
        "This node: its id, site, roles and the SHA-256 of its fleet file (always 1).",
        [
            ("node", s.node.as_str()),
            ("site", s.site.as_str()),
            ("roles", roles.as_str()),
            ("fleet_hash", s.fleet_hash.as_str()),
        ],
    )?;
    sites(s, out)?;
    peers(s, out)?;
    indicators(s, out)?;
    out.gauges(
        "service_check_passing",
        "1 while this Indicator's service check passes, 0 while it fails (after rise/fall); absent before its first result.",
        ["check", "kind"],
        s.service_checks.iter().filter_map(|c| {
            let on = match c.state {
                crate::core::health::CheckState::Pending => return None,
                crate::core::health::CheckState::Passing => 1u32,
                crate::core::health::CheckState::Failing => 0,
            };
            Some(([c.name.as_str(), c.kind], on))
        }),
    )?;
    out.gauge(
        "tilt",
        "1 while this node distrusts its clocks (wall-clock jump or stalled loop) and abstains.",
        u32::from(s.tilt.active),
    )?;
    out.gauge(
        "voting_disabled",
        "1 once this node could not make its vote durable and stopped voting.",
        u32::from(s.voting_disabled.is_some()),
    )?;
    if let Some(iso) = &s.isolation {
        out.gauge(
            "isolated",
            "1 while this node is cut off from a majority of its site's electorate (self-fencing).",
            u32::from(iso.isolated),
        )?;
    }
    if let Some(c) = &s.certificates {
        out.gauges(
            "certificate_expiry_seconds",
            "Seconds until the certificate the node started with stops being valid (negative: expired), for this node's own certificate and the fleet CA's.",
            ["certificate"],
            [(["node"], c.node_expires_in_s), (["ca"], c.ca_expires_in_s)],
        )?;
        out.gauges(
            "certificate_not_after_timestamp_seconds",
            "When the certificate the node started with stops being valid, Unix seconds.",
            ["certificate"],
            [
                (["node"], c.expiry.node_not_after_unix_s),
                (["ca"], c.expiry.ca_not_after_unix_s),
            ],
        )?;
    }
    Ok(())
}

fn sites(s: &NodeSnapshot, out: &mut Out) -> fmt::Result {
    let sites = &s.sites;
    out.gauges(
        "site_verdict",
        "The committed verdict on a watched site, one-hot: up, down, or none yet.",
        ["site", "verdict"],
        per_site(sites, &VERDICTS, |v| v.verdict),
    )?;
    out.gauges(
        "site_opinion",
        "This node's own Pinger's opinion of a site, one-hot: up, down, or unknown (not probed by this node, or not yet decided).",
        ["site", "opinion"],
        per_site(sites, &OPINIONS, |v| v.opinion),
    )?;
    out.gauges(
        "site_epoch",
        "The epoch of the committed verdict on a site (0 before the first).",
        ["site"],
        sites
            .iter()
            .map(|v| ([v.id.as_str()], v.epoch.unwrap_or(0))),
    )?;
    out.gauges(
        "site_failover_state",
        "The newest failover run of a site this node leads or holds the journal of, one-hot: none, waiting, running, succeeded, dropped, precheck_failed, aborted, compensated.",
        ["site", "state"],
        per_site(sites, &RUN_STATES, |v| {
            s.failovers
                .iter()
                .filter(|f| f.site == v.id)
                .max_by_key(|f| (f.epoch, f.term))
                .map_or("none", |f| f.state)
        }),
    )?;
    out.gauges(
        "site_automatic_failover",
        "1 when a DOWN verdict on the site starts its failover by itself; 0 when it waits for an operator (single_vantage = \"manual\").",
        ["site"],
        sites
            .iter()
            .map(|v| ([v.id.as_str()], u32::from(v.failover == "automatic"))),
    )?;
    out.gauges(
        "site_maintenance_until_timestamp_seconds",
        "End of the site's maintenance window (no automatic failover before it), Unix seconds; 0 when none.",
        ["site"],
        sites
            .iter()
            .map(|v| ([v.id.as_str()], unix_s(v.maintenance_until_unix_ms))),
    )?;
    out.gauges(
        "alarms_active",
        "Raised alarms of the site (one per source): evidence that it may soon be lost; what they do is the watch's on_alarm.",
        ["site"],
        sites
            .iter()
            .map(|v| ([v.id.as_str()], v.alarms.len() as u64)),
    )?;
    out.gauges(
        "site_hold_down_until_timestamp_seconds",
        "End of the site's hold-down (no second automatic failover before it), Unix seconds; 0 when none.",
        ["site"],
        sites
            .iter()
            .map(|v| ([v.id.as_str()], unix_s(v.hold_down_until_unix_ms))),
    )
}

fn peers(s: &NodeSnapshot, out: &mut Out) -> fmt::Result {
    out.gauge(
        "peers_reachable",
        "Peers heard from recently.",
        s.peers.iter().filter(|p| p.reachable).count() as u64,
    )?;
    out.gauges(
        "peer_reachable",
        "1 when the peer's status (or, from a Pinger that probes this node, a probe) arrived within three status intervals (an Indicator-only peer: while its connection is up and, where this node probes it, it answers), by peer.",
        ["peer", "site"],
        s.peers
            .iter()
            .map(|p| ([p.node.as_str(), p.site.as_str()], u32::from(p.reachable))),
    )?;
    out.gauge(
        "fleet_mismatched_peers",
        "Peers whose fleet file hash differs from this node's (GET /v1/status lists them).",
        crate::api::fleet_mismatch(s).count() as u64,
    )
}

/// The Indicators this node's own Pinger probes: the freshest evidence it has of each.
fn indicators(s: &NodeSnapshot, out: &mut Out) -> fmt::Result {
    let own = || {
        s.sites.iter().flat_map(|v| {
            v.evidence
                .iter()
                .filter(|e| e.pinger == s.node)
                .flat_map(move |e| e.indicators.iter().map(move |i| (v.id.as_str(), i)))
        })
    };
    out.gauges(
        "indicator_rtt_seconds",
        "Round-trip time of the last answered probe to an Indicator, by this node's Pinger.",
        ["site", "indicator"],
        own().filter_map(|(site, i)| {
            let rtt = i.last_rtt_us? as f64 / 1e6;
            Some(([site, i.node.as_str()], rtt))
        }),
    )?;
    out.gauges(
        "indicator_misses",
        "Consecutive probes to an Indicator not answered in time (0 after an answer).",
        ["site", "indicator"],
        own().map(|(site, i)| ([site, i.node.as_str()], i.misses)),
    )?;
    out.gauges(
        "indicator_reachable",
        "1 when this node's Pinger holds an Indicator reachable, 0 after its misses reached the retries; absent before either.",
        ["site", "indicator"],
        own().filter_map(|(site, i)| Some(([site, i.node.as_str()], u32::from(i.reachable?)))),
    )
}
