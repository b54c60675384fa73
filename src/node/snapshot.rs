//! What a node shows the outside world: a plain-data picture of its state that the driver
//! publishes after every change (`tokio::sync::watch`). REST handlers read it and never touch
//! the running state machines.

use crate::core::types::{NodeId, SiteId};
use crate::net::MeshStats;
use crate::wire::IndicatorView;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeSnapshot {
    pub node: NodeId,
    pub site: SiteId,
    pub roles: Vec<&'static str>,
    pub fleet_hash: String,
    /// The last fleet file change that could not be applied, and why.
    pub fleet_error: Option<String>,
    pub peers: Vec<PeerView>,
    pub sites: Vec<SiteView>,
    /// Newest first.
    pub history: Vec<VerdictView>,
    pub counters: Counters,
    pub mesh: MeshStats,
    /// Set when this node could not make its vote durable and stopped voting.
    pub voting_disabled: Option<String>,
    /// Whether this node distrusts its own clocks (TILT) and abstains.
    pub tilt: TiltView,
    /// Failover runs this node leads: waiting for the takeover delay, running, finished.
    pub failovers: Vec<FailoverView>,
    /// Self-fencing of this node's own site; None when the site has no isolation steps.
    pub isolation: Option<IsolationView>,
    /// When this node's certificate and the fleet CA's expire; None before the first snapshot.
    pub certificates: Option<CertificatesView>,
    /// What this node's probe answers say of its service: "unchecked" (no `[[site.check]]`
    /// for its site, or not an Indicator), "pending", "passing" or "failing".
    pub service_health: &'static str,
    /// This node's own service checks, in file order.
    pub service_checks: Vec<crate::health::CheckView>,
    /// Every alarm call this node knows, raised or cleared (the newest per site and source).
    pub alarms: Vec<AlarmView>,
    /// `[[alarm_source]]` of the running fleet: the hooks read each source's token file.
    #[serde(skip)]
    pub alarm_sources: Vec<crate::config::alarm::AlarmSource>,
    /// `[api] token_file` of the running fleet: read by the REST API on each mutating call.
    #[serde(skip)]
    pub api_token_file: Option<std::path::PathBuf>,
    /// `[api] read_token_file`: read on each call that shows failover step output.
    #[serde(skip)]
    pub api_read_token_file: Option<std::path::PathBuf>,
    /// When the driver built this snapshot; None for the placeholder before the first one.
    #[serde(skip)]
    pub published_at: Option<std::time::Instant>,
    /// How old the snapshot may grow before `/healthz` says the node is not working: the
    /// driver publishes at least once per status interval, so an older snapshot means its
    /// loop is stuck or gone while the REST server still answers.
    #[serde(skip)]
    pub stale_after: std::time::Duration,
}

/// When the certificates a node started with stop being valid (Unix seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CertificateExpiry {
    pub node_not_after_unix_s: i64,
    pub ca_not_after_unix_s: i64,
}

/// [`CertificateExpiry`] and how long is left of each as the snapshot was built (negative:
/// expired).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CertificatesView {
    #[serde(flatten)]
    pub expiry: CertificateExpiry,
    pub node_expires_in_s: i64,
    pub ca_expires_in_s: i64,
}

impl CertificatesView {
    pub fn at(expiry: CertificateExpiry, now_unix_s: i64) -> CertificatesView {
        CertificatesView {
            expiry,
            node_expires_in_s: expiry.node_not_after_unix_s.saturating_sub(now_unix_s),
            ca_expires_in_s: expiry.ca_not_after_unix_s.saturating_sub(now_unix_s),
        }
    }
}

/// `stale_after` for a fleet's status interval: three intervals, at least 2 s.
pub fn stale_after(status_interval: std::time::Duration) -> std::time::Duration {
    status_interval
        .saturating_mul(3)
        .max(std::time::Duration::from_secs(2))
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TiltView {
    /// The node saw its wall clock jump or its event loop stall by more than one probe
    /// budget, and abstains from voting and from starting steps until its cool-off ends.
    pub active: bool,
    pub reason: Option<String>,
    /// Tilts since the node started.
    pub tilts: u64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct IsolationView {
    /// Cut off from a majority of this site's electorate right now.
    pub isolated: bool,
    /// Members of the electorate heard from within self_fence_after, and how many must be
    /// heard for the site to stay in (enough that the others cannot form a majority).
    pub heard: usize,
    pub needed: usize,
    /// How many times this node fenced its site since it started.
    pub isolations: u64,
    /// The outcome of the last isolation steps, or "running".
    pub last_steps: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FailoverView {
    /// `SITE-EPOCH`, e.g. `a-3`.
    pub id: String,
    pub site: SiteId,
    pub epoch: u64,
    /// The fencing token of its newest leader: `epoch`, or higher after a takeover.
    pub term: u64,
    /// The node that leads the run (as far as this node knows).
    pub leader: NodeId,
    /// What started the run: "verdict" (a DOWN verdict led here), "manual" (POST
    /// /v1/failovers) or "failback" (POST /v1/failbacks).
    #[schema(schema_with = crate::api::words::trigger)]
    pub trigger: &'static str,
    /// "waiting" (takeover delay), "running", "dropped" (its verdict changed during the
    /// takeover delay), or the outcome: "succeeded", "precheck_failed", "aborted",
    /// "compensated".
    #[schema(schema_with = crate::api::words::run_state)]
    pub state: &'static str,
    pub summary: Option<String>,
    pub steps: Vec<FailoverStepView>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FailoverStepView {
    pub step: String,
    pub name: String,
    pub attempts: u32,
    pub ok: bool,
    pub detail: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<f64>,
}

impl FailoverStepView {
    pub fn of(r: &crate::core::pipeline::StepReport) -> FailoverStepView {
        FailoverStepView {
            step: r.step.to_string(),
            name: r.name.clone(),
            attempts: r.attempts,
            ok: r.ok,
            detail: r.detail.clone(),
            started_at: rfc3339(r.started_at.as_millis()),
            finished_at: r.finished_at.map(|t| rfc3339(t.as_millis())),
            duration_ms: r
                .finished_at
                .map(|t| t.since(r.started_at).as_secs_f64() * 1000.0),
        }
    }
}

/// The REST name of a run's outcome.
pub fn run_state(o: &crate::core::pipeline::RunOutcome) -> &'static str {
    use crate::core::pipeline::RunOutcome;
    match o {
        RunOutcome::Succeeded { .. } => "succeeded",
        RunOutcome::PrecheckFailed { .. } => "precheck_failed",
        RunOutcome::Aborted { .. } => "aborted",
        RunOutcome::Compensated { .. } => "compensated",
        RunOutcome::Dropped { .. } => "dropped",
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PeerView {
    pub node: NodeId,
    pub site: SiteId,
    /// A status message (or, from a Pinger that probes this node and so sends its status only
    /// now and then, a probe) arrived within three status intervals; for an Indicator-only
    /// peer (whose status comes rarely, and to voters only), its mesh connection is up or
    /// parked (a quiet pair's, docs/trust.md) and, where this node probes it, it answers its
    /// probes.
    pub reachable: bool,
    pub fleet_hash: Option<String>,
    pub last_seen_ms_ago: Option<u64>,
}

/// One alarm call: the newest of its site and source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AlarmView {
    pub site: SiteId,
    #[schema(example = "fire-a")]
    pub source: String,
    pub severity: crate::wire::AlarmSeverity,
    /// "raised" or "cleared".
    #[schema(schema_with = crate::api::words::alarm_state)]
    pub state: &'static str,
    pub reason: String,
    /// When the call was made (RFC 3339, UTC).
    pub set_at: String,
    /// The voter that accepted the call.
    pub by: NodeId,
}

impl AlarmView {
    pub fn of(a: &crate::wire::Alarm) -> AlarmView {
        AlarmView {
            site: a.site.clone(),
            source: a.source.clone(),
            severity: a.severity,
            state: if a.raised { "raised" } else { "cleared" },
            reason: a.reason.clone(),
            set_at: rfc3339(a.set_at_unix_ms),
            by: a.by.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SiteView {
    pub id: SiteId,
    /// This node's own opinion: "up" | "down" | "unknown".
    #[schema(schema_with = crate::api::words::opinion)]
    pub opinion: &'static str,
    /// The committed verdict: "up" | "down" | "none".
    #[schema(schema_with = crate::api::words::verdict)]
    pub verdict: &'static str,
    /// How the watch judges the site: "host" or "service" (answers saying the service checks
    /// fail count as misses).
    pub judge: &'static str,
    pub epoch: Option<u64>,
    pub slot: Option<u64>,
    pub leader: Option<NodeId>,
    /// When this node learned the verdict (RFC 3339, UTC).
    pub decided_at: Option<String>,
    /// No second automatic failover of this site before this time (RFC 3339, UTC).
    pub hold_down_until: Option<String>,
    /// No automatic failover of this site starts on this node before this time (RFC 3339,
    /// UTC); set with POST /v1/sites/{id}/maintenance.
    pub maintenance_until: Option<String>,
    /// `hold_down_until` and `maintenance_until` as Unix milliseconds, for `/metrics`.
    #[serde(skip)]
    pub hold_down_until_unix_ms: Option<i64>,
    #[serde(skip)]
    pub maintenance_until_unix_ms: Option<i64>,
    /// "automatic", or "manual: <why>" when the watch opted into single_vantage = "manual".
    pub failover: String,
    /// What an alarm of the site does: "notify", "prestage" or "failover".
    #[schema(schema_with = crate::api::words::on_alarm)]
    pub on_alarm: &'static str,
    /// The raised alarms of the site (evidence, not a verdict), by source.
    pub alarms: Vec<AlarmView>,
    pub electorate: Vec<NodeId>,
    pub majority: usize,
    /// Every Pinger's view of every Indicator, as last reported to this node.
    pub evidence: Vec<PingerEvidence>,
    /// The last vote rounds this node ran for the site, newest first.
    pub rounds: Vec<RoundView>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PingerEvidence {
    pub pinger: NodeId,
    #[schema(schema_with = crate::api::words::opinion)]
    pub opinion: &'static str,
    pub suspect: bool,
    pub evidence_age_ms: Option<u32>,
    /// How old this report is (0 for this node's own Pinger).
    pub reported_ms_ago: u64,
    pub indicators: Vec<IndicatorView>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RoundView {
    pub slot: u64,
    pub target: &'static str,
    pub epoch: u64,
    pub attempt: u32,
    pub outcome: &'static str,
    pub duration_ms: f64,
    pub ended_at: String,
    pub answers: Vec<AnswerView>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AnswerView {
    pub voter: NodeId,
    #[schema(schema_with = crate::api::words::opinion)]
    pub opinion: &'static str,
    pub suspect: bool,
    pub evidence_age_ms: Option<u32>,
    pub promised: bool,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct VerdictView {
    pub site: SiteId,
    #[schema(schema_with = crate::api::words::outcome)]
    pub verdict: &'static str,
    pub epoch: u64,
    pub slot: u64,
    pub leader: NodeId,
    pub decided_at: String,
}

/// Counters behind `/metrics`; only the driver writes them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub probes_sent: u64,
    pub probes_answered: u64,
    pub probes_late: u64,
    pub probe_misses: u64,
    pub false_positives_external: u64,
    pub false_positives_internal: u64,
    pub retries_until_up: u64,
    /// By outcome label.
    pub vote_rounds: BTreeMap<&'static str, u64>,
    /// By (site, verdict).
    pub verdicts: BTreeMap<(String, &'static str), u64>,
    pub detection_delay: Histogram,
    /// First DOWN opinion of this node -> committed verdict.
    pub decision_delay: Histogram,
    pub fleet_reloads: u64,
    pub fleet_reload_errors: u64,
    pub persist_errors: u64,
    /// Calls of `[[notify]]` notifiers that succeeded.
    pub notifications_sent: u64,
    /// Calls of `[[notify]]` notifiers that failed (each attempt).
    pub notifications_failed: u64,
    /// Notifications this node called for another sender that had not said it sent them.
    pub notifications_taken_over: u64,
    /// Notifications this node held and dropped on another voter's "sent" note.
    pub notifications_cancelled: u64,
    /// Messages refused because the sender may not originate them, by `Refusal::as_str`.
    pub refused: BTreeMap<&'static str, u64>,
}

/// A Prometheus histogram with fixed buckets, in seconds.
#[derive(Clone, Debug, Serialize)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

const DELAY_BUCKETS: &[f64] = &[
    0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds: DELAY_BUCKETS,
            counts: vec![0; DELAY_BUCKETS.len()],
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// The last millisecond RFC 3339 can spell (9999-12-31T23:59:59.999Z).
const RFC3339_MAX_MS: i64 = 253_402_300_799_999;

/// Formats a Unix time in milliseconds as RFC 3339 UTC. Never panics: a time before 1970 shows
/// as the epoch and one after year 9999 as the last millisecond of 9999, since a peer's number
/// must not be able to stop the node that shows it.
pub fn rfc3339(unix_ms: i64) -> String {
    let ms = unix_ms.clamp(0, RFC3339_MAX_MS) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_spells_out_of_range_times_instead_of_panicking() {
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_800_000), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
