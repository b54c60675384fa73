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
    /// Seconds the backup's takeover steps wait after the verdict.
    pub(super) takeover_delay_s: Option<f64>,
    /// Seconds a node of the watched site cut from a majority of its electorate waits before
    /// it runs the isolation steps.
    pub(super) self_fence_after_s: Option<f64>,
    pub(super) pipeline: Option<RawPipeline>,
    /// Step tables; read by `plan`, which splits the common keys from the actuator params.
    #[serde(default)]
    pub(super) isolation: Vec<toml::Table>,
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
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawSingleVantage {
    #[default]
    Refuse,
    Manual,
}

impl RawTiming {
    /// Applies the DRL defaults. Returns `None` (with a problem pushed) only when the probe
    /// budget does not fit in a duration; zero values are left to `check_timing`.
    pub(super) fn into_timing(self, problems: &mut Vec<String>) -> Option<Timing> {
        let interval = self.probe_interval_ms.unwrap_or(100);
        let timeout = self.probe_timeout_ms.unwrap_or(100);
        let retries = self.retries.unwrap_or(5);
        let budget_ms = interval
            .checked_mul(u64::from(retries))
            .and_then(|b| b.checked_add(timeout));
        let revote_ms = match (self.revote_after_ms, budget_ms) {
            (Some(ms), Some(_)) => Some(ms),
            (None, Some(b)) => b.checked_mul(5),
            (_, None) => None,
        };
        let Some(revote_ms) = revote_ms else {
            problems.push(
                "timing: the probe budget (probe_interval_ms × retries + probe_timeout_ms, \
                 times 5 for the default revote_after_ms) overflows; use realistic values"
                    .to_string(),
            );
            return None;
        };
        Some(Timing {
            probe_interval: Duration::from_millis(interval),
            probe_timeout: Duration::from_millis(timeout),
            retries,
            vote_timeout: Duration::from_millis(self.vote_timeout_ms.unwrap_or(300)),
            max_vote_rounds: self.max_vote_rounds.unwrap_or(3),
            hold_down: Duration::from_secs(self.hold_down_s.unwrap_or(300)),
            revote_after: Duration::from_millis(revote_ms),
            status_interval: Duration::from_millis(self.status_interval_ms.unwrap_or(1000)),
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
            id: NodeId(self.id),
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
