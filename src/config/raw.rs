//! The TOML as written: private serde mirrors of the fleet file that refuse unknown keys.

use super::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    #[serde(default)]
    pub(super) timing: RawTiming,
    #[serde(default, rename = "site")]
    pub(super) sites: Vec<RawSite>,
    #[serde(default, rename = "node")]
    pub(super) nodes: Vec<RawNode>,
    #[serde(default, rename = "watch")]
    pub(super) watches: Vec<RawWatch>,
    pub(super) api: Option<RawApi>,
    #[serde(default)]
    pub(super) anycast: Vec<RawAnycast>,
    /// `[[notify]]`: checked in `notify`, whose keys include the actuator's own.
    #[serde(default)]
    pub(super) notify: Vec<toml::Table>,
    /// `[[alarm_source]]`: checked in `alarm`.
    #[serde(default)]
    pub(super) alarm_source: Vec<super::alarm::RawAlarmSource>,
}

/// `[[anycast]]`: a prefix that several sites may announce, kept announced by at least one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnycast {
    /// IPv4 or IPv6 CIDR, e.g. "198.19.255.0/24".
    pub(super) prefix: String,
    /// The sites that may announce it.
    pub(super) sites: Vec<String>,
    /// The sites that announce it in normal operation; default: the primary sites of `sites`,
    /// or its first site.
    pub(super) announced_by: Option<Vec<String>>,
}

/// `[api]`: the REST API's settings.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    /// File whose first line (trimmed) is the bearer token of mutating REST calls.
    pub(super) token_file: Option<PathBuf>,
    /// File whose first line (trimmed) is the bearer token that reads failover step output.
    pub(super) read_token_file: Option<PathBuf>,
    /// PEM certificate chain and private key the REST API serves HTTPS with; `{node}` stands
    /// for the node's id.
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTiming {
    pub(super) probe_interval_ms: Option<u64>,
    pub(super) probe_timeout_ms: Option<u64>,
    pub(super) retries: Option<u32>,
    pub(super) vote_timeout_ms: Option<u64>,
    pub(super) max_vote_rounds: Option<u32>,
    pub(super) hold_down_s: Option<u64>,
    pub(super) revote_after_ms: Option<u64>,
    pub(super) status_interval_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub(super) id: String,
    pub(super) kind: RawSiteKind,
    /// `[[site.check]]`: the service checks every Indicator of the site runs.
    #[serde(default, rename = "check")]
    pub(super) checks: Vec<super::checks::RawCheck>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawSiteKind {
    Primary,
    Backup,
    Witness,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) id: String,
    pub(super) site: String,
    pub(super) roles: Vec<RawRole>,
    pub(super) mesh: SocketAddr,
    pub(super) api: SocketAddr,
    pub(super) mesh_bind: Option<SocketAddr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawRole {
    Indicator,
    Pinger,
    Voter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    pub(super) site: String,
    pub(super) by: Vec<String>,
    #[serde(default)]
    pub(super) single_vantage: RawSingleVantage,
    /// "host" (default) or "service": whether an Indicator whose checks fail counts as missed.
    #[serde(default)]
    pub(super) judge: crate::core::health::Judge,
    /// Seconds the backup's takeover steps wait after the verdict.
    pub(super) takeover_delay_s: Option<f64>,
    /// Seconds a node of the watched site cut from a majority of its electorate waits before
    /// it runs the isolation steps.
    pub(super) self_fence_after_s: Option<f64>,
    pub(super) pipeline: Option<RawPipeline>,
    /// Step tables; read by `plan`, which splits the common keys from the actuator params.
    #[serde(default)]
    pub(super) isolation: Vec<toml::Table>,
    /// "notify" (default), "prestage" or "failover": what an alarm of the site does.
    pub(super) on_alarm: Option<String>,
}

/// `[watch.pipeline]`: each entry is a step table (common keys plus actuator params).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    #[serde(default)]
    pub(super) precheck: Vec<toml::Table>,
    #[serde(default)]
    pub(super) step: Vec<toml::Table>,
    #[serde(default)]
    pub(super) post: Vec<toml::Table>,
    /// Fences of the old primary, each with its `confirm` table; run after the prechecks.
    #[serde(default)]
    pub(super) fence: Vec<toml::Table>,
    /// Steps run when an alarm of the site is raised (`on_alarm = "prestage"`).
    #[serde(default)]
    pub(super) prestage: Vec<toml::Table>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawSingleVantage {
    #[default]
    Refuse,
    Manual,
}

impl RawTiming {
    /// Applies the DRL defaults. Returns `None` (with a problem pushed per key) when a value
    /// is above its limit (`limits`); zero values are left to `check_timing`. Within the
    /// limits no sum or product of these values can overflow.
    pub(super) fn into_timing(self, problems: &mut Vec<String>) -> Option<Timing> {
        let interval = self.probe_interval_ms.unwrap_or(100);
        let timeout = self.probe_timeout_ms.unwrap_or(100);
        let retries = self.retries.unwrap_or(5);
        let vote_timeout = self.vote_timeout_ms.unwrap_or(300);
        let max_vote_rounds = self.max_vote_rounds.unwrap_or(3);
        let hold_down = self.hold_down_s.unwrap_or(300);
        let status = self.status_interval_ms.unwrap_or(1000);
        let before = problems.len();
        let ms = |key: &str, v: u64, max| {
            limits::duration_above(
                &format!("timing.{key}"),
                v,
                Duration::from_millis(v),
                max,
                limits::Unit::Millis,
            )
        };
        let found = [
            ms("probe_interval_ms", interval, limits::MAX_PROBE_INTERVAL),
            ms("probe_timeout_ms", timeout, limits::MAX_PROBE_TIMEOUT),
            limits::count_above(
                "timing.retries",
                u64::from(retries),
                limits::MAX_PROBE_RETRIES,
            ),
            ms("vote_timeout_ms", vote_timeout, limits::MAX_VOTE_TIMEOUT),
            limits::count_above(
                "timing.max_vote_rounds",
                u64::from(max_vote_rounds),
                limits::MAX_VOTE_ROUNDS,
            ),
            limits::duration_above(
                "timing.hold_down_s",
                hold_down,
                Duration::from_secs(hold_down),
                limits::MAX_HOLD_DOWN,
                limits::Unit::Secs,
            ),
            self.revote_after_ms
                .and_then(|v| ms("revote_after_ms", v, limits::MAX_REVOTE_AFTER)),
            ms("status_interval_ms", status, limits::MAX_STATUS_INTERVAL),
        ];
        problems.extend(found.into_iter().flatten());
        if problems.len() > before {
            return None;
        }
        // Within the limits: at most 100 × 60 s + 60 s, times 5.
        let budget_ms = interval * u64::from(retries) + timeout;
        let revote_ms = self.revote_after_ms.unwrap_or(budget_ms * 5);
        Some(Timing {
            probe_interval: Duration::from_millis(interval),
            probe_timeout: Duration::from_millis(timeout),
            retries,
            vote_timeout: Duration::from_millis(vote_timeout),
            max_vote_rounds,
            hold_down: Duration::from_secs(hold_down),
            revote_after: Duration::from_millis(revote_ms),
            status_interval: Duration::from_millis(status),
        })
    }
}

impl RawNode {
    pub(super) fn into_node(self) -> Node {
        let mut roles = Roles::default();
        for role in self.roles {
            match role {
                RawRole::Indicator => roles.indicator = true,
                RawRole::Pinger => roles.pinger = true,
                RawRole::Voter => roles.voter = true,
            }
        }
        Node {
            id: NodeId::from(self.id),
            site: SiteId(self.site),
            roles,
            mesh: self.mesh,
            mesh_bind: self.mesh_bind,
            api: self.api,
        }
    }
}

/// Turns a toml error into one line: position, the offending line's text, the message.
pub(super) fn syntax_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', "; ");
    let Some(span) = err.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line_text: String = text[line_start..]
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(60)
        .collect();
    format!("line {line_no}, column {column} (`{line_text}`): {message}")
}
