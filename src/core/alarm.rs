//! Alarms of automatic equipment (a fire panel, a power monitor) about a site: evidence that
//! the site may soon be lost, not a verdict. One alarm per (site, source); the call with the
//! newest `set_at` wins fleet-wide, as maintenance windows do. An alarm about site X is an
//! operator-grade call: it is accepted only by a voter of X's electorate (never by an
//! Indicator host inside X), and a replicated alarm is learned only from a member of X's
//! electorate, stamped at most `MAX_SKEW_MS` ahead of this node's wall clock, with a source
//! name and reason within bounds and at most `MAX_SOURCES_PER_SITE` sources per site. Anything
//! else is refused (counted, never clamped) and changes nothing.
//!
//! What an alarm does is the watch's `on_alarm` (`OnAlarm`); `reaction` decides, from the
//! alarms and the site's newest operator-lock decision, which run (if any) the electorate
//! should ask its operator lock for, so that each alarm episode (from the first raised alarm
//! of a site to the clearing of its last) prestages, unstages or fails over at most once.
//!
//! Wall time comes in as milliseconds since the Unix epoch; this module never reads a clock.

use super::maintenance::MAX_SKEW_MS;
use super::oplock::AlarmStamp;
use super::quorum::Electorate;
use super::replica::RunTrigger;
use super::trust::Refusal;
use super::types::{NodeId, SiteId};
use crate::wire::{Alarm, AlarmSeverity};
use std::collections::BTreeMap;

/// The longest source name, in bytes.
pub const MAX_SOURCE_LEN: usize = 64;
/// The longest reason, in characters (at most four bytes each).
pub const MAX_REASON_LEN: usize = 512;
/// How many sources one site's alarms may come from (raised or cleared, each kept as the
/// newest call of its source).
pub const MAX_SOURCES_PER_SITE: usize = 32;

/// What a watch does when one of its site's alarms is raised (`on_alarm` in the fleet file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnAlarm {
    /// Shown and notified only.
    #[default]
    Notify,
    /// The plan's prestage steps run once per episode; clearing the last alarm runs their
    /// compensations once.
    Prestage,
    /// The site's plan runs once per episode, as if the site were lost.
    Failover,
}

impl OnAlarm {
    pub fn as_str(self) -> &'static str {
        match self {
            OnAlarm::Notify => "notify",
            OnAlarm::Prestage => "prestage",
            OnAlarm::Failover => "failover",
        }
    }
}

/// Why an alarm call was not carried out; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlarmError {
    #[error("node {me} is not a voter of site {site}'s electorate; call one of its members")]
    NotOperatorNode { me: NodeId, site: SiteId },
    #[error("source {0}")]
    BadSource(String),
    #[error("reason is longer than {MAX_REASON_LEN} characters")]
    ReasonTooLong,
    #[error("site {site} has alarms of {MAX_SOURCES_PER_SITE} sources already; clear and reuse one of them")]
    TooManySources { site: SiteId },
    #[error("the newest alarm call of site {site} from source {source_name} is stamped too far ahead to outrank")]
    NoLaterStamp { site: SiteId, source_name: String },
}

/// Why a source name is not one: empty, too long, or with characters other than ASCII
/// letters, digits, `-`, `_` and `.` (it goes into URLs, labels and logs).
pub fn check_source(source: &str) -> Result<(), String> {
    if source.is_empty() {
        return Err("must not be empty".into());
    }
    if source.len() > MAX_SOURCE_LEN {
        return Err(format!("is longer than {MAX_SOURCE_LEN} bytes"));
    }
    if !source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "{source:?} may hold only ASCII letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// The bounds every alarm is held to, from a caller or a peer.
fn check_fields(a: &Alarm) -> Result<(), Refusal> {
    if check_source(&a.source).is_err() || a.reason.chars().count() > MAX_REASON_LEN {
        return Err(Refusal::TooLarge);
    }
    Ok(())
}

/// Whether `alarm` from `from` may replace `known` (None: a source new for the site, of which
/// `sources` are known): Ok(false) when it is not newer (no news), Ok(true) when it may, the
/// refusal otherwise.
pub fn admit(
    now_wall_ms: i64,
    from: &NodeId,
    alarm: &Alarm,
    known: Option<&Alarm>,
    sources: usize,
    electorate: &Electorate,
) -> Result<bool, Refusal> {
    if known.is_some_and(|k| k.set_at_unix_ms >= alarm.set_at_unix_ms) {
        return Ok(false);
    }
    if !electorate.contains(from) || !electorate.contains(&alarm.by) {
        return Err(Refusal::NotOperatorNode);
    }
    check_fields(alarm)?;
    if alarm.set_at_unix_ms > now_wall_ms.saturating_add(MAX_SKEW_MS) {
        return Err(Refusal::FromTheFuture);
    }
    if known.is_none() && sources >= MAX_SOURCES_PER_SITE {
        return Err(Refusal::TooLarge);
    }
    Ok(true)
}

/// What learning a peer's alarm did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Not newer than the call known for (site, source): nothing changed.
    Stale,
    /// A newer call; `raised` says which.
    Newer { raised: bool },
}

/// The newest alarm call per (site, source), as this node knows it.
#[derive(Clone, Debug, Default)]
pub struct Alarms {
    me: NodeId,
    calls: BTreeMap<(SiteId, String), Alarm>,
}

impl Alarms {
    pub fn new(me: NodeId) -> Alarms {
        Alarms {
            me,
            calls: BTreeMap::new(),
        }
    }

    /// Alarms read back from the store; one outside the bounds is dropped and returned.
    pub fn load(
        &mut self,
        now_wall_ms: i64,
        stored: impl IntoIterator<Item = Alarm>,
    ) -> Vec<Alarm> {
        let mut dropped = Vec::new();
        for a in stored {
            let sources = self.sources(&a.site);
            let out_of_bounds = check_fields(&a).is_err()
                || a.set_at_unix_ms > now_wall_ms.saturating_add(MAX_SKEW_MS)
                || (sources >= MAX_SOURCES_PER_SITE
                    && !self.calls.contains_key(&(a.site.clone(), a.source.clone())));
            if out_of_bounds {
                dropped.push(a);
            } else {
                self.stored(a);
            }
        }
        dropped
    }

    fn sources(&self, site: &SiteId) -> usize {
        self.calls.keys().filter(|(s, _)| s == site).count()
    }

    /// A peer's alarm; `electorate` is the site's. Nothing changes here yet: the caller makes
    /// a newer call durable, then hands it to `stored`.
    pub fn learn(
        &self,
        now_wall_ms: i64,
        from: &NodeId,
        alarm: &Alarm,
        electorate: &Electorate,
    ) -> Result<Learned, Refusal> {
        let key = (alarm.site.clone(), alarm.source.clone());
        let sources = self.sources(&alarm.site);
        if !admit(
            now_wall_ms,
            from,
            alarm,
            self.calls.get(&key),
            sources,
            electorate,
        )? {
            return Ok(Learned::Stale);
        }
        Ok(Learned::Newer {
            raised: alarm.raised,
        })
    }

    /// A call accepted at this node (from the operator or an alarm source entitled for the
    /// site), stamped after every call known for (site, source) so that it wins fleet-wide.
    /// It takes effect when the caller hands it to `stored`, once it is durable.
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &self,
        now_wall_ms: i64,
        site: &SiteId,
        source: &str,
        severity: AlarmSeverity,
        reason: &str,
        raised: bool,
        electorate: &Electorate,
    ) -> Result<Alarm, AlarmError> {
        if !electorate.contains(&self.me) {
            return Err(AlarmError::NotOperatorNode {
                me: self.me.clone(),
                site: site.clone(),
            });
        }
        check_source(source).map_err(AlarmError::BadSource)?;
        if reason.chars().count() > MAX_REASON_LEN {
            return Err(AlarmError::ReasonTooLong);
        }
        let key = (site.clone(), source.to_string());
        let known = self.calls.get(&key);
        // A clear keeps the severity of the alarm it clears, so the record still says it.
        let severity = match known {
            Some(k) if !raised => k.severity,
            _ => severity,
        };
        let set_at_unix_ms = match known {
            None if self.sources(site) >= MAX_SOURCES_PER_SITE => {
                return Err(AlarmError::TooManySources { site: site.clone() })
            }
            None => now_wall_ms,
            Some(k) => k
                .set_at_unix_ms
                .checked_add(1)
                .map(|next| next.max(now_wall_ms))
                .ok_or_else(|| AlarmError::NoLaterStamp {
                    site: site.clone(),
                    source_name: source.to_string(),
                })?,
        };
        Ok(Alarm {
            site: site.clone(),
            source: source.to_string(),
            severity,
            reason: reason.to_string(),
            raised,
            set_at_unix_ms,
            by: self.me.clone(),
        })
    }

    /// A call from `learn` or `call`, now durable: it takes effect unless a newer call for
    /// (site, source) arrived meanwhile.
    pub fn stored(&mut self, a: Alarm) {
        let key = (a.site.clone(), a.source.clone());
        if self
            .calls
            .get(&key)
            .is_none_or(|k| k.set_at_unix_ms < a.set_at_unix_ms)
        {
            self.calls.insert(key, a);
        }
    }

    /// The newest call of (site, source).
    pub fn get(&self, site: &SiteId, source: &str) -> Option<&Alarm> {
        self.calls.get(&(site.clone(), source.to_string()))
    }

    /// Every call known, raised or cleared, by site and source.
    pub fn all(&self) -> impl Iterator<Item = &Alarm> {
        self.calls.values()
    }

    /// The raised alarms of `site`.
    pub fn raised(&self, site: &SiteId) -> impl Iterator<Item = &Alarm> {
        let site = site.clone();
        self.calls
            .values()
            .filter(move |a| a.site == site && a.raised)
    }

    pub fn is_raised(&self, site: &SiteId) -> bool {
        self.raised(site).next().is_some()
    }

    /// The newest stamp of each source of `site`, sorted by source: the basis a lock value
    /// names (see `LockValue::alarms`).
    pub fn stamps(&self, site: &SiteId) -> Vec<AlarmStamp> {
        self.calls
            .values()
            .filter(|a| &a.site == site)
            .map(|a| AlarmStamp {
                source: a.source.clone(),
                set_at_unix_ms: a.set_at_unix_ms,
                raised: a.raised,
            })
            .collect()
    }

    /// Whether this node knows, for every source of `basis`, a call at least that new: what
    /// it sees of the site then includes everything the basis's decision was made on.
    pub fn dominates(&self, site: &SiteId, basis: &[AlarmStamp]) -> bool {
        basis.iter().all(|b| {
            self.calls
                .get(&(site.clone(), b.source.clone()))
                .is_some_and(|a| a.set_at_unix_ms >= b.set_at_unix_ms)
        })
    }
}

/// Which run an alarm episode asks the site's operator lock for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    Prestage,
    Unstage,
    Failover,
}

impl Reaction {
    pub fn trigger(self) -> RunTrigger {
        match self {
            Reaction::Prestage => RunTrigger::Prestage,
            Reaction::Unstage => RunTrigger::Unstage,
            Reaction::Failover => RunTrigger::Alarm,
        }
    }
}

/// The run an alarm episode of a site still needs, if any. `raised`: an alarm of the site is
/// raised; `last`: the trigger of the newest run the site's operator lock decided (every
/// prestage, unstage, alarm failover, manual failover and failback is one); `failed_over`: an
/// automatic (verdict) run of the site began after that decision (or at all, without one).
///
/// The site is *at rest* when nothing was decided yet or the newest decision put it back
/// (a failback or an unstage) and no verdict run came after it; *prestaged* when the newest
/// decision is a prestage and no verdict run came after it. A raised alarm prestages (or
/// fails over) a site at rest, once: the decision makes it prestaged (or failed over), so no
/// second call of the same episode asks again. The clearing of the last alarm unstages a
/// prestaged site, once; a site failed over since (by a verdict, an alarm or an operator) is
/// not unstaged: that would undo what the failover relies on.
pub fn reaction(
    mode: OnAlarm,
    has_prestage: bool,
    raised: bool,
    last: Option<RunTrigger>,
    failed_over: bool,
) -> Option<Reaction> {
    let at_rest = !failed_over
        && matches!(
            last,
            None | Some(RunTrigger::Failback) | Some(RunTrigger::Unstage)
        );
    let prestaged = !failed_over && last == Some(RunTrigger::Prestage);
    match (mode, raised) {
        // Cleared: whatever the mode now, a prestage still standing is undone.
        (_, false) => prestaged.then_some(Reaction::Unstage),
        (OnAlarm::Notify, true) => None,
        (OnAlarm::Prestage, true) => (at_rest && has_prestage).then_some(Reaction::Prestage),
        (OnAlarm::Failover, true) => (at_rest || prestaged).then_some(Reaction::Failover),
    }
}

#[cfg(test)]
#[path = "alarm_tests.rs"]
mod tests;
