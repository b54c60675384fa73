//! `[[alarm_source]]`: automatic equipment allowed to raise and clear alarms about named
//! sites (`core::alarm`). A source of `kind = "http"` calls `POST /v1/alarms/hooks/{name}`
//! with its own bearer token (the first line of `token_file`, read on every call): that token
//! raises and clears alarms of the source's `sites` only, and nothing else, so a fire panel
//! can hold a credential that cannot start a failover or touch another site.

use super::limits;
use crate::core::alarm::check_source;
use crate::core::types::SiteId;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// One `[[alarm_source]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlarmSource {
    name: String,
    sites: Vec<String>,
    kind: String,
    token_file: Option<PathBuf>,
}

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
        let kind = match (r.kind.as_str(), r.token_file) {
            ("http", Some(token_file)) => Some(AlarmSourceKind::Http { token_file }),
            ("http", None) => {
                problems.push(format!(
                    "{at}.token_file is missing: an http source needs the file whose first \
                     line is its own bearer token"
                ));
                None
            }
            (other, _) => {
                problems.push(format!("{at}.kind = {other:?} is not \"http\""));
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
        assert!(p.contains("alarm_source[1].name"), "{p}");
        assert!(p.contains("alarm_source[1].sites names \"z\""), "{p}");
        assert!(p.contains("alarm_source[1].kind = \"snmp\""), "{p}");
        let text =
            format!("{FLEET}\n[[alarm_source]]\nname = \"x\"\nsites = [\"a\"]\nkind = \"http\"\n");
        assert!(problems(&text)
            .join("\n")
            .contains("alarm_source[1].token_file is missing"));
        let text = FLEET.replace("on_alarm = \"prestage\"", "on_alarm = \"panic\"");
        assert!(problems(&text).join("\n").contains("on_alarm = \"panic\""));
    }
}
