//! Who tells the operator's notifiers (`[[notify]]`) of an event, and when: verdicts, the end
//! of failover runs and maintenance calls. Every event has a stable idempotency key derived
//! from what it is; its sender is the node that decided it (the verdict's leader, the run's
//! leader, the node that took the operator call). The other voters of the site's electorate
//! hold a verdict's notification as pending and send it themselves, with the same key, when
//! they have not learned that it was sent within the replica lease plus one heartbeat per rank
//! (the run takeover's bound): a lost leader's notification is taken over. "Sent" notes travel
//! to the electorate and are accepted only from its voters. So the fleet notifies at least
//! once; a receiver that honours the key sees each event exactly once. This module decides;
//! it never calls anything, reads a clock or sends.

use super::quorum::Electorate;
use super::types::{NodeId, SiteId, Time};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The longest idempotency key or notifier name a "sent" note may carry.
pub const MAX_NOTE_FIELD: usize = 256;
/// How many keys already dealt with a node remembers, to drop late repeats of an event.
const REMEMBERED: usize = 4096;
/// A retry waits at most this long, whatever the backoff doubles to.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What happened, as the notifiers' `on` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    VerdictChanged,
    RunFailed,
    RunSucceeded,
    MaintenanceSet,
    MaintenanceEnded,
    AlarmRaised,
    AlarmCleared,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::VerdictChanged,
        EventKind::RunFailed,
        EventKind::RunSucceeded,
        EventKind::MaintenanceSet,
        EventKind::MaintenanceEnded,
        EventKind::AlarmRaised,
        EventKind::AlarmCleared,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::VerdictChanged => "verdict_changed",
            EventKind::RunFailed => "run_failed",
            EventKind::RunSucceeded => "run_succeeded",
            EventKind::MaintenanceSet => "maintenance_set",
            EventKind::MaintenanceEnded => "maintenance_ended",
            EventKind::AlarmRaised => "alarm_raised",
            EventKind::AlarmCleared => "alarm_cleared",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One event, as notifiers receive it (the JSON body, or an exec program's stdin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub kind: EventKind,
    pub site: SiteId,
    /// The verdict's epoch, the run's epoch; 0 for maintenance.
    pub epoch: u64,
    /// "up"/"down" for a verdict; the run's summary; "set"/"ended" for maintenance.
    pub detail: String,
    /// Stable per event, the same from every node that sends it.
    pub idempotency_key: String,
    /// Wall time the event was decided here (Unix ms); shown, never a deadline.
    pub at_unix_ms: i64,
}

/// One configured notifier, as the core needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub on: Vec<EventKind>,
    /// None: every site.
    pub sites: Option<Vec<SiteId>>,
    pub retries: u32,
    pub backoff: Duration,
}

impl Target {
    fn wants(&self, e: &Event) -> bool {
        self.on.contains(&e.kind) && self.sites.as_ref().is_none_or(|s| s.contains(&e.site))
    }
}

/// How long followers wait before taking a notification over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Without a "sent" note for this long, the first follower sends.
    pub lease: Duration,
    /// Each further follower waits this much more per rank.
    pub stagger: Duration,
}

/// What the node must do for its notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyAction {
    /// Call notifier `notifier` with `event`; report with `Notifications::call_done`.
    Call {
        notifier: String,
        event: Event,
        attempt: u32,
    },
    /// Tell the voters of `site`'s electorate that `notifier` was called for `key`.
    Sent {
        site: SiteId,
        key: String,
        notifier: String,
        to: Vec<NodeId>,
    },
}

/// Why a "sent" note was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteRefused {
    /// Its sender is not a voter of the site's electorate.
    NotInElectorate,
    /// A key or notifier name above `MAX_NOTE_FIELD` bytes.
    TooLarge,
}

#[derive(Clone, Debug)]
enum State {
    /// Not yet called here: at `due` this node calls (attempt `attempt`).
    Waiting { due: Time, attempt: u32 },
    /// A call is out.
    Calling { attempt: u32 },
}

#[derive(Clone, Debug)]
struct Pending {
    event: Event,
    target: Target,
    /// The voters told when it was sent; empty for events nobody takes over.
    electorate: Vec<NodeId>,
    state: State,
    /// Another voter sent it while a call of ours was out: no retry after it.
    sent_elsewhere: bool,
    /// This node holds it for another sender.
    takeover: bool,
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifyCounts {
    pub sent: u64,
    pub failed: u64,
    pub taken_over: u64,
    pub cancelled: u64,
}

/// This node's pending notifications (see the module doc).
pub struct Notifications {
    me: NodeId,
    config: NotifyConfig,
    pending: BTreeMap<(String, String), Pending>,
    /// (key, notifier) dealt with, oldest first, at most `REMEMBERED`.
    done: VecDeque<(String, String)>,
    actions: VecDeque<NotifyAction>,
    counts: NotifyCounts,
}

impl Notifications {
    pub fn new(me: NodeId, config: NotifyConfig) -> Notifications {
        Notifications {
            me,
            config,
            pending: BTreeMap::new(),
            done: VecDeque::new(),
            actions: VecDeque::new(),
            counts: NotifyCounts::default(),
        }
    }

    pub fn set_config(&mut self, config: NotifyConfig) {
        self.config = config;
    }

    pub fn counts(&self) -> NotifyCounts {
        self.counts
    }

    /// How many notifications are waiting or being sent here.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn poll_action(&mut self) -> Option<NotifyAction> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.pending
            .values()
            .filter_map(|p| match p.state {
                State::Waiting { due, .. } => Some(due),
                State::Calling { .. } => None,
            })
            .min()
    }

    /// `event` happened. `sender`: the node that must send it. `electorate`: the voters that
    /// take it over when the sender does not (empty: nobody does). This node sends at once
    /// when it is the sender, holds it when it is another voter, and ignores it otherwise.
    pub fn event(
        &mut self,
        now: Time,
        event: Event,
        sender: &NodeId,
        electorate: Option<&Electorate>,
        targets: &[Target],
    ) {
        let voters: Vec<NodeId> = electorate
            .map(|e| e.members().cloned().collect())
            .unwrap_or_default();
        let due = if *sender == self.me {
            now
        } else {
            let Some(rank) = voters
                .iter()
                .filter(|m| *m != sender)
                .position(|m| *m == self.me)
            else {
                return;
            };
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            now + self.config.lease + self.config.stagger.saturating_mul(rank)
        };
        for t in targets.iter().filter(|t| t.wants(&event)) {
            let id = (event.idempotency_key.clone(), t.name.clone());
            if self.pending.contains_key(&id) || self.done.contains(&id) {
                continue;
            }
            self.pending.insert(
                id,
                Pending {
                    event: event.clone(),
                    target: t.clone(),
                    electorate: voters.clone(),
                    state: State::Waiting { due, attempt: 1 },
                    sent_elsewhere: false,
                    takeover: *sender != self.me,
                },
            );
        }
        self.handle_timeout(now);
    }

    /// Calls whatever is due.
    pub fn handle_timeout(&mut self, now: Time) {
        for p in self.pending.values_mut() {
            if let State::Waiting { due, attempt } = p.state {
                if due <= now {
                    // A voter other than the sender reaching its deadline takes over.
                    if attempt == 1 && p.takeover {
                        self.counts.taken_over += 1;
                    }
                    p.state = State::Calling { attempt };
                    self.actions.push_back(NotifyAction::Call {
                        notifier: p.target.name.clone(),
                        event: p.event.clone(),
                        attempt,
                    });
                }
            }
        }
    }

    /// A call ended. Success tells the electorate; failure retries after the notifier's
    /// backoff (doubling, at most `MAX_BACKOFF`) until its retries are spent.
    pub fn call_done(&mut self, now: Time, key: &str, notifier: &str, ok: bool) {
        let id = (key.to_string(), notifier.to_string());
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let State::Calling { attempt } = p.state else {
            return;
        };
        if ok {
            self.counts.sent += 1;
            let to: Vec<NodeId> = p
                .electorate
                .iter()
                .filter(|m| **m != self.me)
                .cloned()
                .collect();
            if !to.is_empty() {
                self.actions.push_back(NotifyAction::Sent {
                    site: p.event.site.clone(),
                    key: key.to_string(),
                    notifier: notifier.to_string(),
                    to,
                });
            }
            self.finish(id);
            return;
        }
        self.counts.failed += 1;
        if attempt > p.target.retries || p.sent_elsewhere {
            self.finish(id);
            return;
        }
        let shift = (attempt - 1).min(16);
        let wait = p
            .target
            .backoff
            .saturating_mul(1u32 << shift)
            .min(MAX_BACKOFF);
        p.state = State::Waiting {
            due: now + wait,
            attempt: attempt + 1,
        };
    }

    /// `from` says it called `notifier` for `key` of `site`: this node does not.
    pub fn note_sent(
        &mut self,
        from: &NodeId,
        site: &SiteId,
        key: &str,
        notifier: &str,
        electorate: &Electorate,
    ) -> Result<(), NoteRefused> {
        if key.len() > MAX_NOTE_FIELD || notifier.len() > MAX_NOTE_FIELD {
            return Err(NoteRefused::TooLarge);
        }
        if !electorate.contains(from) {
            return Err(NoteRefused::NotInElectorate);
        }
        let id = (key.to_string(), notifier.to_string());
        match self.pending.get_mut(&id) {
            // The note is only good for a notification of the site it names.
            Some(p) if &p.event.site != site => {}
            Some(p) => match p.state {
                State::Waiting { .. } => {
                    self.counts.cancelled += 1;
                    self.finish(id);
                }
                State::Calling { .. } => p.sent_elsewhere = true,
            },
            None => self.remember(id),
        }
        Ok(())
    }

    fn finish(&mut self, id: (String, String)) {
        self.pending.remove(&id);
        self.remember(id);
    }

    fn remember(&mut self, id: (String, String)) {
        if self.done.contains(&id) {
            return;
        }
        if self.done.len() >= REMEMBERED {
            self.done.pop_front();
        }
        self.done.push_back(id);
    }
}

/// The key of a verdict's notification: `verdict/SITE/EPOCH/OUTCOME`.
pub fn verdict_key(site: &SiteId, epoch: u64, outcome: &str) -> String {
    format!("verdict/{site}/{epoch}/{outcome}")
}

/// The key of a run's end: `run/SITE-EPOCH/STATE`.
pub fn run_key(site: &SiteId, epoch: u64, state: &str) -> String {
    format!("run/{site}-{epoch}/{state}")
}

/// The key of a maintenance call: `maintenance/SITE/SET_AT` (`/ended` when it ends one).
pub fn maintenance_key(site: &SiteId, set_at_unix_ms: i64, ended: bool) -> String {
    if ended {
        format!("maintenance/{site}/{set_at_unix_ms}/ended")
    } else {
        format!("maintenance/{site}/{set_at_unix_ms}")
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
