//! `[[notify]]`: the operator's notifiers — a webhook (`kind = "http"`) or a program
//! (`kind = "exec"`) told of verdicts, failover runs and maintenance calls. This module owns
//! their keys, defaults and limits; the actuator's own keys (`url`, `argv`, ...) are checked
//! by the actuator, as for a step. Who sends a notification is decided in `core::notify`.

use super::limits::{self, Unit};
use super::plan::to_json;
use super::{is_dns_label, Fleet};
use crate::core::actuator_kind::ActuatorKind;
use crate::core::notify::{EventKind, Target};
use crate::core::types::SiteId;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// The keys of `[[notify]]` itself; the others are the actuator's.
pub const NOTIFY_KEYS: &[&str] = &[
    "name",
    "kind",
    "on",
    "sites",
    "timeout_ms",
    "retries",
    "backoff_ms",
];
/// One call of a notifier may take this long by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed call is retried this often by default.
pub const DEFAULT_RETRIES: u32 = 3;
/// The first retry waits this long by default; each further one twice as long.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// One `[[notify]]` table, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notifier {
    pub name: String,
    /// `exec` or `http`.
    pub kind: ActuatorKind,
    /// The events it is told of; default all.
    pub on: Vec<EventKind>,
    /// Only events of these sites; None: every site.
    pub sites: Option<Vec<SiteId>>,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    /// The actuator's keys, as for a step (`url`, `headers`, `token_file`, `argv`, `env`, ...).
    pub params: Value,
}

impl Notifier {
    /// What the core needs of it.
    pub fn target(&self) -> Target {
        Target {
            name: self.name.clone(),
            on: self.on.clone(),
            sites: self.sites.clone(),
            retries: self.retries,
            backoff: self.backoff,
        }
    }
}

impl Fleet {
    /// The `[[notify]]` notifiers as the core's targets.
    pub fn notify_targets(&self) -> Vec<Target> {
        self.notify.iter().map(Notifier::target).collect()
    }

    pub fn notifier(&self, name: &str) -> Option<&Notifier> {
        self.notify.iter().find(|n| n.name == name)
    }
}

/// Builds the notifiers of `tables`, reporting every problem with the key at fault.
pub(super) fn build_notifiers(
    tables: Vec<toml::Table>,
    sites: &[super::Site],
    problems: &mut Vec<String>,
) -> Vec<Notifier> {
    if let Some(p) = limits::too_many("[[notify]]", tables.len(), limits::MAX_NOTIFIERS) {
        problems.push(p);
        return Vec::new();
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, table) in tables.into_iter().enumerate() {
        let before = problems.len();
        let n = build_one(i, table, sites, problems);
        if let Some(n) = n.filter(|_| problems.len() == before) {
            if !names.insert(n.name.clone()) {
                problems.push(format!(
                    "notify[{i}].name: notifier \"{}\" is defined twice; give each its own name \
                     (it is in the \"sent\" notes and the metrics)",
                    n.name
                ));
                continue;
            }
            out.push(n);
        }
    }
    out
}

fn build_one(
    i: usize,
    mut t: toml::Table,
    sites: &[super::Site],
    problems: &mut Vec<String>,
) -> Option<Notifier> {
    let at = format!("notify[{i}]");
    let name = match t.remove("name") {
        Some(toml::Value::String(s)) if is_dns_label(&s) => Some(s),
        Some(v) => {
            problems.push(format!(
                "{at}.name: {v} is not a valid notifier name; use 1 to 63 lowercase letters, \
                 digits or '-', e.g. name = \"pager\""
            ));
            None
        }
        None => {
            problems.push(format!("{at}.name is missing; add e.g. name = \"pager\""));
            None
        }
    };
    let at = match &name {
        Some(n) => format!("notify {n:?} ({at}"),
        None => format!("{at} ({at}"),
    };
    let kind = match t.remove("kind") {
        Some(toml::Value::String(k)) if k == "exec" => Some(ActuatorKind::Exec),
        Some(toml::Value::String(k)) if k == "http" => Some(ActuatorKind::Http),
        Some(v) => {
            problems.push(format!(
                "{at}.kind): {v} is not a notifier kind; use kind = \"http\" (a webhook) or \
                 kind = \"exec\" (a program)"
            ));
            None
        }
        None => {
            problems.push(format!(
                "{at}.kind) is missing; use kind = \"http\" or kind = \"exec\""
            ));
            None
        }
    };
    let on = match t.remove("on") {
        None => EventKind::ALL.to_vec(),
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            let mut on = Vec::new();
            for v in a {
                match v.as_str().and_then(EventKind::parse) {
                    Some(k) if !on.contains(&k) => on.push(k),
                    Some(_) => {}
                    None => problems.push(format!(
                        "{at}.on): {v} is not an event; use some of {}",
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    )),
                }
            }
            on
        }
        Some(v) => {
            problems.push(format!(
                "{at}.on): must be a non-empty list of events, got {v}; use some of {}",
                EventKind::ALL.map(EventKind::as_str).join(", ")
            ));
            Vec::new()
        }
    };
    let sites = match t.remove("sites") {
        None => None,
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            let mut out = Vec::new();
            for v in a {
                match v.as_str() {
                    Some(s) if sites.iter().any(|x| x.id.0 == s) => out.push(SiteId(s.into())),
                    _ => problems.push(format!(
                        "{at}.sites): {v} is not a site of this fleet; name [[site]] ids"
                    )),
                }
            }
            Some(out)
        }
        Some(v) => {
            problems.push(format!(
                "{at}.sites): must be a non-empty list of site ids, got {v}; leave it out for \
                 every site"
            ));
            None
        }
    };
    let ms =
        |t: &mut toml::Table, key: &str, default: Duration, max: Duration, p: &mut Vec<String>| {
            match t.remove(key) {
                None => default,
                Some(toml::Value::Integer(n)) if n > 0 => {
                    let d = Duration::from_millis(n as u64);
                    if let Some(e) =
                        limits::duration_above(&format!("{at}.{key})"), n, d, max, Unit::Millis)
                    {
                        p.push(e);
                    }
                    d
                }
                Some(v) => {
                    p.push(format!(
                        "{at}.{key}): must be a positive number of milliseconds, got {v}"
                    ));
                    default
                }
            }
        };
    let timeout = ms(
        &mut t,
        "timeout_ms",
        DEFAULT_TIMEOUT,
        limits::MAX_NOTIFY_TIMEOUT,
        problems,
    );
    let backoff = ms(
        &mut t,
        "backoff_ms",
        DEFAULT_BACKOFF,
        limits::MAX_NOTIFY_BACKOFF,
        problems,
    );
    let retries = match t.remove("retries") {
        None => DEFAULT_RETRIES,
        Some(toml::Value::Integer(n)) if n >= 0 => {
            if let Some(e) = limits::count_above(
                &format!("{at}.retries)"),
                n as u64,
                limits::MAX_NOTIFY_RETRIES,
            ) {
                problems.push(e);
            }
            n.min(u32::MAX as i64) as u32
        }
        Some(v) => {
            problems.push(format!(
                "{at}.retries): must be a whole number, 0 or more, got {v}"
            ));
            DEFAULT_RETRIES
        }
    };
    let params = to_json(toml::Value::Table(t));
    if let Some(kind) = kind {
        if params.get("dry_run").is_some() {
            problems.push(format!(
                "{at}.dry_run): notifiers have no dry runs; remove the key"
            ));
        } else if let Err(e) = crate::actuators::validate(kind, &params) {
            problems.push(format!(
                "{at}): {e} (the notifier's own keys are {})",
                NOTIFY_KEYS.join(", ")
            ));
        }
    }
    Some(Notifier {
        name: name?,
        kind: kind?,
        on,
        sites,
        timeout,
        retries,
        backoff,
        params,
    })
}
