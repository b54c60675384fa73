//! `[[alarm_source]]`: automatic equipment allowed to raise and clear alarms about named
//! sites (`core::alarm`). A source of `kind = "http"` calls `POST /v1/alarms/hooks/{name}`
//! with its own bearer token (the first line of `token_file`, read on every call): that token
//! raises and clears alarms of the source's `sites` only, and nothing else, so a fire panel
//! can hold a credential that cannot start a failover or touch another site. A source of
//! `kind = "exec"` is a poller: its `argv` runs on each of its `nodes` (voters of the
//! electorates of all its sites) every `interval_s`, within `timeout_s`, and its exit code
//! says whether its sites' alarm is raised (`node::alarm_poll` has the contract).

use super::limits;
use crate::core::alarm::check_source;
use crate::core::types::SiteId;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// One `[[alarm_source]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlarmSource {
    name: String,
    sites: Vec<String>,
    kind: String,
    token_file: Option<PathBuf>,
    argv: Option<Vec<String>>,
    nodes: Option<Vec<String>>,
    interval_s: Option<f64>,
    timeout_s: Option<f64>,
}

/// An exec source polls this often unless `interval_s` says otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// One poll may take this long unless `timeout_s` says otherwise (and at most the interval).
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// One `[[alarm_source]]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmSource {
    /// The source name its alarms carry, and the last part of its hook's path.
    pub name: String,
    /// The sites it may raise alarms about.
    pub sites: Vec<SiteId>,
    pub kind: AlarmSourceKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlarmSourceKind {
    /// Calls `POST /v1/alarms/hooks/{name}` with the first line of `token_file` as its bearer
    /// token.
    Http { token_file: PathBuf },
    /// Runs `argv` on each of `nodes` every `interval`, killed after `timeout`.
    Exec {
        argv: Vec<String>,
        nodes: Vec<crate::core::types::NodeId>,
        interval: Duration,
        timeout: Duration,
    },
}

impl AlarmSource {
    pub fn speaks_for(&self, site: &SiteId) -> bool {
        self.sites.contains(site)
    }
}

impl super::Fleet {
    pub fn alarm_source(&self, name: &str) -> Option<&AlarmSource> {
        self.alarm_sources.iter().find(|s| s.name == name)
    }
}

/// Builds the sources of `raw`, reporting every problem with the key at fault.
pub(super) fn build_sources(
    raw: Vec<RawAlarmSource>,
    sites: &[super::Site],
    nodes: &[super::Node],
    problems: &mut Vec<String>,
) -> Vec<AlarmSource> {
    if let Some(p) = limits::too_many("[[alarm_source]]", raw.len(), limits::MAX_ALARM_SOURCES) {
        problems.push(p);
        return Vec::new();
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("alarm_source[{i}]");
        let before = problems.len();
        if let Err(e) = check_source(&r.name) {
            problems.push(format!("{at}.name {e}"));
        } else if !names.insert(r.name.clone()) {
            problems.push(format!(
                "{at}.name {:?} is used by an earlier [[alarm_source]]; names must be unique",
                r.name
            ));
        }
        if r.sites.is_empty() {
            problems.push(format!(
                "{at}.sites is empty: name the sites this source may raise alarms about"
            ));
        }
        if r.sites.len() > limits::MAX_ALARM_SOURCE_SITES {
            problems.push(format!(
                "{at}.sites lists {} sites; at most {} are allowed",
                r.sites.len(),
                limits::MAX_ALARM_SOURCE_SITES
            ));
        }
        for s in &r.sites {
            if !sites.iter().any(|k| k.id.0 == *s) {
                problems.push(format!(
                    "{at}.sites names {s:?}, which is not a [[site]] id"
                ));
            }
        }
        let kind = match r.kind.as_str() {
            "http" => {
                for (key, set) in [
                    ("argv", r.argv.is_some()),
                    ("nodes", r.nodes.is_some()),
                    ("interval_s", r.interval_s.is_some()),
                    ("timeout_s", r.timeout_s.is_some()),
                ] {
                    if set {
                        problems.push(format!(
                            "{at}.{key} is for kind = \"exec\" sources; an http source calls its hook"
                        ));
                    }
                }
                match r.token_file {
                    Some(token_file) => Some(AlarmSourceKind::Http { token_file }),
                    None => {
                        problems.push(format!(
                            "{at}.token_file is missing: an http source needs the file whose \
                             first line is its own bearer token"
                        ));
                        None
                    }
                }
            }
            "exec" => exec_kind(
                &at,
                r.argv,
                r.nodes,
                r.interval_s,
                r.timeout_s,
                r.token_file.is_some(),
                nodes,
                problems,
            ),
            other => {
                problems.push(format!("{at}.kind = {other:?} is not \"http\" or \"exec\""));
                None
            }
        };
        if problems.len() > before {
            continue;
        }
        if let Some(kind) = kind {
            out.push(AlarmSource {
                name: r.name,
                sites: r.sites.into_iter().map(SiteId).collect(),
                kind,
            });
        }
    }
    out
}

/// The keys of an exec source, checked.
#[allow(clippy::too_many_arguments)]
fn exec_kind(
    at: &str,
    argv: Option<Vec<String>>,
    names: Option<Vec<String>>,
    interval_s: Option<f64>,
    timeout_s: Option<f64>,
    has_token_file: bool,
    nodes: &[super::Node],
    problems: &mut Vec<String>,
) -> Option<AlarmSourceKind> {
    let before = problems.len();
    if has_token_file {
        problems.push(format!(
            "{at}.token_file is for kind = \"http\" sources; an exec source is run, not called"
        ));
    }
    let argv = argv.unwrap_or_default();
    if argv.first().is_none_or(|p| p.is_empty()) {
        problems.push(format!(
            "{at}.argv is missing or empty: name the program and its arguments"
        ));
    }
    let names = names.unwrap_or_default();
    if names.is_empty() {
        problems.push(format!(
            "{at}.nodes is missing or empty: name the voters that run the poller"
        ));
    }
    for n in &names {
        if !nodes.iter().any(|k| k.id.as_str() == n.as_str()) {
            problems.push(format!(
                "{at}.nodes names {n:?}, which is not a [[node]] id"
            ));
        }
    }
    let mut secs =
        |key: &str, v: Option<f64>, default: Duration, max: Duration| -> Option<Duration> {
            let Some(v) = v else { return Some(default) };
            match Duration::try_from_secs_f64(v) {
                Ok(d) if !d.is_zero() && d <= max => Some(d),
                _ => {
                    problems.push(format!(
                        "{at}.{key} = {v} must be more than 0 and at most {} s",
                        max.as_secs()
                    ));
                    None
                }
            }
        };
    let interval = secs(
        "interval_s",
        interval_s,
        DEFAULT_POLL_INTERVAL,
        limits::MAX_ALARM_POLL_INTERVAL,
    );
    let timeout = secs(
        "timeout_s",
        timeout_s,
        DEFAULT_POLL_TIMEOUT,
        limits::MAX_ALARM_POLL_TIMEOUT,
    );
    let (Some(interval), Some(timeout)) = (interval, timeout) else {
        return None;
    };
    let timeout = if timeout_s.is_none() {
        timeout.min(interval)
    } else {
        timeout
    };
    if timeout > interval {
        problems.push(format!(
            "{at}.timeout_s ({} s) is longer than interval_s ({} s): one poll must end before the next",
            timeout.as_secs_f64(),
            interval.as_secs_f64()
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(AlarmSourceKind::Exec {
        argv,
        nodes: names
            .into_iter()
            .map(crate::core::types::NodeId::from)
            .collect(),
        interval,
        timeout,
    })
}

/// An exec source's nodes must be voters of the electorate of every site it speaks for: an
/// alarm about a site is accepted only there.
pub(super) fn check_poller_nodes(fleet: &super::Fleet, problems: &mut Vec<String>) {
    for (i, s) in fleet.alarm_sources.iter().enumerate() {
        let AlarmSourceKind::Exec { nodes, .. } = &s.kind else {
            continue;
        };
        for site in &s.sites {
            let electorate = fleet.electorate(site);
            for n in nodes.iter().filter(|n| !electorate.contains(n)) {
                problems.push(format!(
                    "alarm_source[{i}].nodes names {n}, which is not a voter of site {site}'s \
                     electorate: an alarm about {site} is accepted only by {}",
                    electorate
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, Fleet};

    const FLEET: &str = include_str!("../../config/alarms.toml");

    fn problems(text: &str) -> Vec<String> {
        match Fleet::parse(text) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn the_example_fleet_has_an_http_source_for_site_a() {
        let f = Fleet::parse(FLEET).expect("valid");
        let s = f.alarm_source("fire-a").expect("listed");
        assert!(s.speaks_for(&"a".into()));
        assert!(!s.speaks_for(&"b".into()));
        let plan = f.watch(&"a".into()).unwrap().plan.as_ref().unwrap();
        assert_eq!(plan.on_alarm, crate::core::alarm::OnAlarm::Prestage);
        assert_eq!(plan.prestage.len(), 1);
        assert!(plan.prestage[0].compensation.is_some());
    }

    #[test]
    fn each_key_at_fault_is_named() {
        let text = format!(
            "{FLEET}\n[[alarm_source]]\nname = \"fire a\"\nsites = [\"z\"]\nkind = \"snmp\"\n"
        );
        let p = problems(&text).join("\n");
        assert!(p.contains("alarm_source[2].name"), "{p}");
        assert!(p.contains("alarm_source[2].sites names \"z\""), "{p}");
        assert!(p.contains("alarm_source[2].kind = \"snmp\""), "{p}");
        let exec = |extra: &str| {
            format!("{FLEET}\n[[alarm_source]]\nname = \"ups-x\"\nsites = [\"a\"]\nkind = \"exec\"\n{extra}\n")
        };
        let ok = Fleet::parse(&exec(
            "argv = [\"/bin/true\"]\nnodes = [\"b1\", \"c1\"]\ninterval_s = 2",
        ))
        .unwrap();
        assert!(matches!(
            &ok.alarm_source("ups-x").unwrap().kind,
            super::AlarmSourceKind::Exec { interval, timeout, .. }
                if interval.as_secs() == 2 && timeout.as_secs() == 2
        ));
        let p = problems(&exec(
            "argv = []\nnodes = [\"a1\", \"zz\"]\ninterval_s = 5\ntimeout_s = 9",
        ))
        .join("\n");
        assert!(
            p.contains("alarm_source[2].argv is missing or empty"),
            "{p}"
        );
        assert!(p.contains("alarm_source[2].nodes names \"zz\""), "{p}");
        assert!(
            p.contains("alarm_source[2].timeout_s (9 s) is longer than interval_s"),
            "{p}"
        );
        let p = problems(&exec("argv = [\"/bin/true\"]\nnodes = [\"a1\"]")).join("\n");
        assert!(
            p.contains(
                "alarm_source[2].nodes names a1, which is not a voter of site a's electorate"
            ),
            "{p}"
        );
        let p = problems(&exec(
            "argv = [\"/bin/true\"]\nnodes = [\"b1\"]\ninterval_s = 0",
        ))
        .join("\n");
        assert!(
            p.contains("alarm_source[2].interval_s = 0 must be more than 0"),
            "{p}"
        );
        let text =
            format!("{FLEET}\n[[alarm_source]]\nname = \"x\"\nsites = [\"a\"]\nkind = \"http\"\n");
        assert!(problems(&text)
            .join("\n")
            .contains("alarm_source[2].token_file is missing"));
        let text = FLEET.replace("on_alarm = \"prestage\"", "on_alarm = \"panic\"");
        assert!(problems(&text).join("\n").contains("on_alarm = \"panic\""));
    }
}
