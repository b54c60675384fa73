//! Alarms at this node: a call from the operator or an `[[alarm_source]]` (accepted only by a
//! voter of the site's electorate, and from a source only for its own sites), a peer's
//! alarms (learned only from the site's electorate, within bounds), their replication to the
//! electorate (after every change and again every status interval, so a member that missed
//! one catches up), and what an alarm episode starts: the watch's `on_alarm` decides
//! (`core::alarm::reaction`), and the run goes through the site's operator lock exactly as a
//! manual run does, so the electorate's majority decides it once, and the run replica takes
//! it over if its leader dies.
//!
//! Which member asks the lock: the one that accepted the call at once, every other member
//! after a stagger by its rank (so that a leader dying before it proposed delays the episode
//! by a few rounds, not forever); concurrent proposals are settled by the lock itself, and a
//! member that learns the decision asks nothing more for the episode.

use super::operator::{CommandOk, OperatorError};
use super::{Action, NodeCore};
use crate::core::alarm::{reaction, Alarms, Learned, Reaction, MAX_SOURCES_PER_SITE};
use crate::core::notify::{Event, EventKind};
use crate::core::oplock::{newest_calls, AlarmStamp};
use crate::core::replica::RunTrigger;
use crate::core::trust::Refusal;
use crate::core::types::{NodeId, Now, SiteId, Time};
use crate::wire::{Alarm, AlarmSeverity, Message};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// Command ids of the lock proposals this node makes for alarm episodes: far above the ids
/// the driver gives operator calls, so that no answer reaches a caller.
const ALARM_CALL_IDS: u64 = 1 << 62;

/// A learned alarm call older than this is not notified again here (its notification was
/// sent, or taken over, by the members that held it when it was made).
const NOTIFY_FRESH_MS: i64 = 60_000;

/// What this node keeps of alarms.
pub struct AlarmState {
    pub alarms: Alarms,
    /// The reaction this node found due per site, and since when (monotonic).
    due: BTreeMap<SiteId, (Reaction, Time)>,
    /// No new proposal for the site before this (monotonic): one is under way or just ended
    /// undecided.
    retry_at: BTreeMap<SiteId, Time>,
    next_id: u64,
}

impl AlarmState {
    pub fn new(me: &NodeId, stored: Vec<Alarm>, now: Now) -> AlarmState {
        let mut alarms = Alarms::new(me.clone());
        for a in alarms.load(now.wall.as_millis(), stored) {
            warn!(site = %a.site, source = %a.source, "a stored alarm is out of bounds (stamped too far ahead, or too long); forgotten");
        }
        AlarmState {
            alarms,
            due: BTreeMap::new(),
            retry_at: BTreeMap::new(),
            next_id: 0,
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.retry_at.values().copied().min()
    }
}

/// An alarm call, as the operator API or a source's hook makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmCall {
    pub site: SiteId,
    pub source: String,
    pub severity: AlarmSeverity,
    pub reason: String,
    pub raised: bool,
    /// The `[[alarm_source]]` whose own token made the call; None: the operator token.
    pub via: Option<String>,
}

impl NodeCore {
    /// The newest alarm call per (site, source) this node knows.
    pub fn alarms(&self) -> &Alarms {
        &self.alarm.alarms
    }

    pub(super) fn alarm_call(
        &mut self,
        now: Now,
        c: AlarmCall,
    ) -> Result<CommandOk, OperatorError> {
        if self.fleet.watch(&c.site).is_none() {
            return Err(OperatorError::UnknownSite(c.site));
        }
        if let Some(name) = &c.via {
            let entitled = self
                .fleet
                .alarm_source(name)
                .is_some_and(|s| s.speaks_for(&c.site) && *name == c.source);
            if !entitled {
                return Err(OperatorError::SourceNotEntitled {
                    name: name.clone(),
                    site: c.site,
                });
            }
        }
        self.entitled(&c.site)?;
        if !c.raised && self.alarm.alarms.get(&c.site, &c.source).is_none() {
            return Err(OperatorError::NoSuchAlarm {
                site: c.site,
                name: c.source,
            });
        }
        let e = self.electorate(&c.site);
        let a = self.alarm.alarms.call(
            now.wall.as_millis(),
            &c.site,
            &c.source,
            c.severity,
            &c.reason,
            c.raised,
            &e,
        )?;
        warn!(site = %a.site, source = %a.source, severity = a.severity.as_str(), raised = a.raised, reason = %a.reason,
              "alarm {}", if a.raised { "raised" } else { "cleared" });
        self.store_alarm(now, a.clone(), true);
        self.send_alarms_to_electorate(&a);
        self.react_to_alarms(now);
        Ok(CommandOk::Alarm(a))
    }

    /// Durable first, then in effect, then notified when `notify` (the node that accepted the
    /// call sends the notification; the electorate takes it over if it cannot).
    fn store_alarm(&mut self, now: Now, a: Alarm, notify: bool) {
        self.actions.push_back(Action::SaveAlarm(a.clone()));
        let was = self.alarm.alarms.is_raised(&a.site);
        self.alarm.alarms.stored(a.clone());
        let is = self.alarm.alarms.is_raised(&a.site);
        if was != is {
            info!(site = %a.site, raised = is, "alarm episode of the site {}", if is { "began" } else { "ended" });
        }
        if !notify {
            return;
        }
        let kind = if a.raised {
            EventKind::AlarmRaised
        } else {
            EventKind::AlarmCleared
        };
        let event = Event {
            kind,
            site: a.site.clone(),
            epoch: 0,
            detail: format!(
                "{} {} from {}: {}",
                a.severity.as_str(),
                kind.as_str(),
                a.source,
                a.reason
            ),
            idempotency_key: format!(
                "alarm/{}/{}/{}/{}",
                a.site,
                a.source,
                a.set_at_unix_ms,
                if a.raised { "raised" } else { "cleared" }
            ),
            at_unix_ms: now.wall.as_millis(),
        };
        let electorate = self.electorate(&a.site);
        let targets = self.fleet.notify_targets();
        self.notify
            .event(now.mono, event, &a.by, Some(&electorate), &targets);
    }

    fn send_alarms_to_electorate(&mut self, a: &Alarm) {
        for to in self.fleet.electorate(&a.site) {
            if to != self.me.id {
                self.actions.push_back(Action::Send {
                    to,
                    msg: Message::Alarms(vec![a.clone()]),
                });
            }
        }
    }

    /// Every status interval: each member of an electorate gets the calls this node knows of
    /// that electorate's sites (anti-entropy; the newest call wins at the receiver), one
    /// message per site, so that a message holds at most `MAX_SOURCES_PER_SITE` calls.
    pub(super) fn send_alarms(&mut self) {
        let mut by_peer: BTreeMap<(NodeId, SiteId), Vec<Alarm>> = BTreeMap::new();
        for a in self.alarm.alarms.all() {
            for m in self.fleet.electorate(&a.site) {
                if m != self.me.id {
                    by_peer
                        .entry((m, a.site.clone()))
                        .or_default()
                        .push(a.clone());
                }
            }
        }
        for ((to, _), alarms) in by_peer {
            self.actions.push_back(Action::Send {
                to,
                msg: Message::Alarms(alarms),
            });
        }
    }

    /// A peer's alarms: a newer call than this node knows replaces it, when the peer may
    /// originate it (see `core::alarm::admit`); this node keeps only alarms of sites whose
    /// electorate it is in.
    pub(super) fn learn_alarms(&mut self, now: Now, from: &NodeId, alarms: Vec<Alarm>) {
        if alarms.len() > MAX_SOURCES_PER_SITE {
            self.refused(now, from, &self.me.site.clone(), Refusal::TooLarge);
            return;
        }
        for a in alarms {
            if self.fleet.watch(&a.site).is_none() {
                self.refused(now, from, &a.site, Refusal::UnknownSite);
                continue;
            }
            let e = self.electorate(&a.site);
            if !e.contains(&self.me.id) {
                continue;
            }
            match self.alarm.alarms.learn(now.wall.as_millis(), from, &a, &e) {
                Ok(Learned::Stale) => {}
                Ok(Learned::Newer { raised }) => {
                    info!(site = %a.site, source = %a.source, raised, peer = %from, "alarm learned from the electorate");
                    // A call learned long after it was made (this node was away) was notified
                    // by then; only a fresh one is held for a takeover of its notification.
                    let fresh =
                        now.wall.as_millis().saturating_sub(a.set_at_unix_ms) < NOTIFY_FRESH_MS;
                    self.store_alarm(now, a, fresh);
                }
                Err(why) => self.refused(now, from, &a.site, why),
            }
        }
        self.react_to_alarms(now);
    }

    /// Asks the site's operator lock for the run an alarm episode needs, where one is due.
    pub(super) fn react_to_alarms(&mut self, now: Now) {
        // A deadline passed is no deadline: poll_timeout must not keep returning it.
        self.alarm.retry_at.retain(|_, t| *t > now.mono);
        // Only sites with alarm calls can need a run: this runs on every tick.
        let sites: std::collections::BTreeSet<SiteId> =
            self.alarm.alarms.all().map(|a| a.site.clone()).collect();
        self.alarm.due.retain(|s, _| sites.contains(s));
        for site in sites {
            match self.due_reaction(&site) {
                Some(r) => self.ask_for(now, &site, r),
                None => {
                    self.alarm.due.remove(&site);
                }
            }
        }
    }

    /// The reaction due for `site` as this node sees it (see `core::alarm::reaction`).
    fn due_reaction(&self, site: &SiteId) -> Option<Reaction> {
        let plan = self.fleet.watch(site)?.plan.as_ref()?;
        if !self.fleet.electorate(site).contains(&self.me.id) {
            return None;
        }
        let last = self.oplock.decided(site).map(|d| &d.value);
        // A decision made on calls this node has not all learned (a clear that reached
        // another member first) is not second-guessed: this node waits until it knows them.
        if last.is_some_and(|l| !self.alarm.alarms.dominates(site, &l.alarms)) {
            return None;
        }
        let failed_over = self.replicas.records().any(|r| {
            &r.site == site
                && r.trigger == RunTrigger::Verdict
                && !r.is_dropped()
                && last.is_none_or(|l| r.run > l.run)
        });
        // A DOWN verdict newer than the decision has its run due, whether or not its register
        // reached this node yet (its leader may be down, or this node just restarted): an
        // unstage decided now would take a newer epoch and fence that failover out.
        let judged_down = self.voter.verdict(site).is_some_and(|v| {
            v.outcome() == crate::core::types::Outcome::Down
                && last.is_none_or(|l| v.epoch() > l.run)
        });
        let failed_over = failed_over || judged_down;
        let r = reaction(
            plan.on_alarm,
            !plan.prestage.is_empty(),
            self.alarm.alarms.is_raised(site),
            last.map(|l| l.trigger),
            failed_over,
        )?;
        // An unstage undoes the prestage run the lock decided: it waits until this node knows
        // that run ended. Decided is not run (its leader may have died as the lock decided it,
        // and its takeover is still to come): compensating it first would undo nothing, and
        // the prestage, taken over later, would stand with no unstage left to undo it.
        if r == Reaction::Unstage {
            let run = last.map(|l| l.run)?;
            self.replicas
                .record(site, run)
                .filter(|x| x.is_finished())?;
        }
        Some(r)
    }

    /// The basis of a lock value this node proposes for `site`: the calls it knows, which
    /// include everything the last decision was made on when it asks for an alarm reaction
    /// (`due_reaction` checked); for an operator's run they may not, and then the newer call
    /// of each source is kept, so that each decision's basis is at least its predecessor's.
    pub(super) fn alarm_basis(&self, site: &SiteId) -> Vec<AlarmStamp> {
        let own = self.alarm.alarms.stamps(site);
        let last = self.oplock.decided(site).map(|d| d.value.alarms.as_slice());
        newest_calls(own.iter().chain(last.unwrap_or_default()))
    }

    fn ask_for(&mut self, now: Now, site: &SiteId, r: Reaction) {
        let since = match self.alarm.due.get(site) {
            Some((known, since)) if *known == r => *since,
            _ => {
                self.alarm.due.insert(site.clone(), (r, now.mono));
                now.mono
            }
        };
        if r == Reaction::Failover {
            // An alarm's failover is an automatic one: maintenance, hold-down and a manual
            // watch keep it from starting, as they keep a verdict's.
            if let Err(why) = self.automatic_run(now, site) {
                if self.alarm.retry_at.get(site).is_none_or(|t| *t <= now.mono) {
                    warn!(%site, reason = ?why, "alarm failover not started");
                    let wait = self.oplock.config().bound;
                    self.alarm.retry_at.insert(site.clone(), now.mono + wait);
                }
                return;
            }
        }
        if self.oplock.proposing(site) || self.runs.busy(site).is_some() {
            return;
        }
        if self.alarm.retry_at.get(site).is_some_and(|t| now.mono < *t) {
            return;
        }
        // The member that accepted a call of the episode asks at once, the others after a
        // stagger by rank.
        let first = self
            .alarm
            .alarms
            .all()
            .filter(|a| &a.site == site && a.raised == (r != Reaction::Unstage))
            .any(|a| a.by == self.me.id);
        if !first {
            let rank = self
                .fleet
                .electorate(site)
                .iter()
                .position(|m| *m == self.me.id)
                .unwrap_or(0) as u32;
            let stagger = self.oplock.config().bound.saturating_mul(rank + 1);
            if now.mono < since + stagger {
                self.alarm.retry_at.insert(site.clone(), since + stagger);
                return;
            }
        }
        let id = ALARM_CALL_IDS + self.alarm.next_id;
        self.alarm.next_id += 1;
        let reason = format!("alarm episode of site {site}: {}", r.trigger().as_str());
        info!(%site, trigger = r.trigger().as_str(), "asking the operator lock for the alarm episode's run");
        let wait = self.oplock.config().bound.saturating_mul(2);
        self.alarm.retry_at.insert(site.clone(), now.mono + wait);
        if let Err(e) = self.propose_run(now, id, site, r.trigger(), false, Some(reason)) {
            warn!(%site, error = %e, "the alarm episode's run could not be proposed; trying again later");
        }
    }
}

#[cfg(test)]
#[path = "alarm_tests.rs"]
mod tests;
