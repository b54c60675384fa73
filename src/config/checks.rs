//! `[[site.check]]`: the local service checks every Indicator of a site runs, and a watch's
//! `judge` that decides whether their result counts. A site's checks are written once for the
//! site (the service is the site's), and each Indicator runs them on its own host; an exec
//! check learns which node runs it from `QUORATE_NODE`. Bounds live in `limits`.

use super::limits::{self, Unit};
use super::*;
use crate::core::health::Judge;
use serde::Deserialize;

/// What a check does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connection to `host:port` opens within the timeout.
    Tcp { target: String },
    /// `GET url` (http only) answers with a 2xx status within the timeout.
    Http { url: String },
    /// The program exits 0 within the timeout. It runs as an exec step does: in a process
    /// group of its own, with an environment of PATH, QUORATE_NODE and QUORATE_SITE only.
    Exec { argv: Vec<String> },
}

impl CheckKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Http { .. } => "http",
            CheckKind::Exec { .. } => "exec",
        }
    }

    /// The target as the operator wrote it (the program and its arguments for exec).
    pub fn target(&self) -> String {
        match self {
            CheckKind::Tcp { target } => target.clone(),
            CheckKind::Http { url } => url.clone(),
            CheckKind::Exec { argv } => argv.join(" "),
        }
    }
}

/// One `[[site.check]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCheck {
    /// Unique within its site; names the check in logs, the REST API and `/metrics`.
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that turn a failing check passing.
    pub rise: u32,
    /// Consecutive failures that turn a passing check failing.
    pub fall: u32,
}

/// The service checks of every site and how each watch judges its site.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePlan {
    /// Sites without checks are absent.
    pub checks: BTreeMap<SiteId, Vec<ServiceCheck>>,
    /// Watches with `judge = "service"`; every other watch judges hosts.
    pub judges: BTreeMap<SiteId, Judge>,
}

impl ServicePlan {
    /// The checks an Indicator of `site` runs.
    pub fn checks_of(&self, site: &SiteId) -> &[ServiceCheck] {
        self.checks.get(site).map_or(&[], Vec::as_slice)
    }

    /// How the watch on `site` judges it.
    pub fn judge(&self, site: &SiteId) -> Judge {
        self.judges.get(site).copied().unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) name: String,
    pub(super) kind: RawCheckKind,
    /// tcp: "host:port"; http: "http://host:port/path".
    pub(super) target: Option<String>,
    /// exec: the program and its arguments.
    pub(super) argv: Option<Vec<String>>,
    pub(super) interval_ms: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) rise: Option<u32>,
    pub(super) fall: Option<u32>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawCheckKind {
    Tcp,
    Http,
    Exec,
}

/// Builds the checks of `site` (its position `si` in the file), pushing one problem per fault.
pub(super) fn build_checks(
    si: usize,
    site: &str,
    raw: Vec<RawCheck>,
    problems: &mut Vec<String>,
) -> Vec<ServiceCheck> {
    if let Some(p) = limits::too_many(
        &format!("site[{si}].check"),
        raw.len(),
        limits::MAX_CHECKS_PER_SITE,
    ) {
        problems.push(p);
        return Vec::new();
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (ci, c) in raw.into_iter().enumerate() {
        let at = format!("site {site} (site[{si}].check[{ci}]");
        let before = problems.len();
        if !is_dns_label(&c.name) {
            problems.push(format!(
                "{at}.name): \"{}\" is not a valid check name; use 1 to 63 lowercase letters, \
                 digits or '-'",
                c.name
            ));
        } else if !names.insert(c.name.clone()) {
            problems.push(format!(
                "{at}.name): check \"{}\" is defined twice in this site; give each check its \
                 own name",
                c.name
            ));
        }
        let interval_ms = c.interval_ms.unwrap_or(1000);
        let timeout_ms = c.timeout_ms.unwrap_or(interval_ms.min(1000));
        let rise = c.rise.unwrap_or(2);
        let fall = c.fall.unwrap_or(3);
        let key = |k: &str| format!("site[{si}].check[{ci}].{k}");
        let ms = |k: &str, v: u64, max| {
            limits::duration_above(&key(k), v, Duration::from_millis(v), max, Unit::Millis)
        };
        problems.extend(
            [
                ms("interval_ms", interval_ms, limits::MAX_CHECK_INTERVAL),
                ms("timeout_ms", timeout_ms, limits::MAX_CHECK_TIMEOUT),
                limits::count_above(&key("rise"), u64::from(rise), limits::MAX_CHECK_RISE_FALL),
                limits::count_above(&key("fall"), u64::from(fall), limits::MAX_CHECK_RISE_FALL),
            ]
            .into_iter()
            .flatten(),
        );
        for (k, v) in [
            ("interval_ms", interval_ms),
            ("timeout_ms", timeout_ms),
            ("rise", u64::from(rise)),
            ("fall", u64::from(fall)),
        ] {
            if v == 0 {
                problems.push(format!("{at}.{k}): must be at least 1"));
            }
        }
        if timeout_ms > interval_ms {
            problems.push(format!(
                "{at}.timeout_ms): timeout_ms = {timeout_ms} is longer than interval_ms = \
                 {interval_ms}; a check must end before the next one starts"
            ));
        }
        let kind = match (c.kind, c.target, c.argv) {
            (RawCheckKind::Tcp, Some(target), None) => {
                if !valid_host_port(&target) {
                    problems.push(format!(
                        "{at}.target): \"{target}\" is not host:port (e.g. \"127.0.0.1:443\")"
                    ));
                }
                CheckKind::Tcp { target }
            }
            (RawCheckKind::Http, Some(url), None) => {
                if !url.starts_with("http://") || url.len() <= "http://".len() {
                    problems.push(format!(
                        "{at}.target): \"{url}\" is not an http:// URL (a local check speaks \
                         plain HTTP, e.g. \"http://127.0.0.1:8080/healthz\")"
                    ));
                }
                CheckKind::Http { url }
            }
            (RawCheckKind::Exec, None, Some(argv)) => {
                if argv.is_empty() || argv[0].is_empty() {
                    problems.push(format!(
                        "{at}.argv): argv is empty; give the program and its arguments"
                    ));
                }
                CheckKind::Exec { argv }
            }
            (RawCheckKind::Exec, _, _) => {
                problems.push(format!(
                    "{at}): an exec check takes `argv` (and no `target`)"
                ));
                continue;
            }
            (_, _, _) => {
                problems.push(format!(
                    "{at}): a tcp or http check takes `target` (and no `argv`)"
                ));
                continue;
            }
        };
        if problems.len() == before {
            out.push(ServiceCheck {
                name: c.name,
                kind,
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(timeout_ms),
                rise,
                fall,
            });
        }
    }
    out
}

fn valid_host_port(target: &str) -> bool {
    match target.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// What `check-config` says of the service checks: one line per check, then how each watch
/// with checks on its site judges it.
pub(super) fn summary(fleet: &Fleet) -> Vec<String> {
    let mut lines = Vec::new();
    for (site, checks) in &fleet.service.checks {
        for c in checks {
            lines.push(format!(
                "site {site}: check {} ({} {}) every {} ms, timeout {} ms, rise {}, fall {}",
                c.name,
                c.kind.as_str(),
                c.kind.target(),
                c.interval.as_millis(),
                c.timeout.as_millis(),
                c.rise,
                c.fall
            ));
        }
    }
    for w in &fleet.watches {
        let judge = fleet.service.judge(&w.site);
        if judge == Judge::Service || !fleet.service.checks_of(&w.site).is_empty() {
            lines.push(format!(
                "watch on {}: judge = \"{}\"{}",
                w.site,
                judge.as_str(),
                if judge == Judge::Host {
                    " (the checks are shown, not counted)"
                } else {
                    " (answers saying a check fails count as misses)"
                }
            ));
        }
    }
    lines
}

/// A watch's `judge`: "service" needs checks on the watched site.
pub(super) fn check_judges(plan: &ServicePlan, watches: &[Watch], problems: &mut Vec<String>) {
    for (i, w) in watches.iter().enumerate() {
        if plan.judge(&w.site) == Judge::Service && plan.checks_of(&w.site).is_empty() {
            problems.push(format!(
                "watch on {} (watch[{i}].judge): judge = \"service\" but site {} has no \
                 [[site.check]]; add one or use judge = \"host\"",
                w.site, w.site
            ));
        }
    }
}
