//! The node's side of notifications: it turns committed verdicts, finished runs and
//! maintenance calls into `core::notify` events, carries that machine's calls and "sent"
//! notes over into actions, and checks the notes peers send. Which node sends what, and when a
//! follower takes over, is decided in `core::notify`.

use super::{Action, NodeCore};
use crate::core::notify::{
    maintenance_key, run_key, verdict_key, Event, EventKind, NoteRefused, NotifyAction,
    NotifyConfig,
};
use crate::core::pipeline::JournalKind;
use crate::core::replica::ReplicaConfig;
use crate::core::trust::Refusal;
use crate::core::types::{NodeId, Now, Outcome, SiteId, Verdict, WallTime};
use crate::wire::{MaintenanceWindow, Message, NotifiedMsg};

/// One call of a notifier the driver makes; its end comes back as `Input::NotifyDone`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyCall {
    pub notifier: String,
    pub event: Event,
    pub attempt: u32,
}

/// Followers wait as long as a run's takeover does: the replica lease, one heartbeat per rank.
pub(super) fn notify_config(fleet: &crate::config::Fleet) -> NotifyConfig {
    let r = ReplicaConfig::from_status_interval(fleet.timing.status_interval);
    NotifyConfig {
        lease: r.lease,
        stagger: r.heartbeat,
    }
}

impl NodeCore {
    /// A verdict committed or learned here: its leader notifies, the site's other voters hold
    /// it and take it over if they hear no "sent" note in time.
    pub(super) fn notify_verdict(&mut self, now: Now, verdict: &Verdict) {
        let outcome = match verdict.outcome() {
            Outcome::Down => "down",
            Outcome::Up => "up",
        };
        let event = Event {
            kind: EventKind::VerdictChanged,
            site: verdict.site.clone(),
            epoch: verdict.epoch(),
            detail: outcome.to_string(),
            idempotency_key: verdict_key(&verdict.site, verdict.epoch(), outcome),
            at_unix_ms: now.wall.as_millis(),
        };
        let electorate = self.electorate(&verdict.site);
        let targets = self.fleet.notify_targets();
        let leader = verdict.value.leader.clone();
        self.notify
            .event(now.mono, event, &leader, Some(&electorate), &targets);
    }

    /// A maintenance call this node took: it alone notifies.
    pub(super) fn notify_maintenance(&mut self, now: Now, w: &MaintenanceWindow, ended: bool) {
        let (kind, detail) = if ended {
            (EventKind::MaintenanceEnded, "ended".to_string())
        } else {
            (
                EventKind::MaintenanceSet,
                format!("until {} (Unix ms)", w.until_unix_ms),
            )
        };
        let event = Event {
            kind,
            site: w.site.clone(),
            epoch: 0,
            detail,
            idempotency_key: maintenance_key(&w.site, w.set_at_unix_ms, ended),
            at_unix_ms: now.wall.as_millis(),
        };
        let (me, targets) = (self.me.id.clone(), self.fleet.notify_targets());
        self.notify.event(now.mono, event, &me, None, &targets);
    }

    /// Runs that finished: the `RunFinished` journal entries this node queued (it is the
    /// run's leader) and the finished run registers it is storing (a copy from the leader,
    /// which the other voters hold and take over like a verdict's notification).
    fn notify_finished_runs(&mut self, now: Now) {
        let finished: Vec<(SiteId, u64, NodeId, bool, String, WallTime)> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::AppendJournal(e) => Some((e, self.me.id.clone())),
                Action::SaveRun(r) => r
                    .journal
                    .iter()
                    .rev()
                    .find(|e| matches!(e.kind, JournalKind::RunFinished { .. }))
                    .map(|e| (e, r.leader().clone())),
                _ => None,
            })
            .filter_map(|(e, leader)| match &e.kind {
                JournalKind::RunFinished { outcome } => Some((
                    e.site.clone(),
                    e.epoch,
                    leader,
                    outcome.is_success(),
                    outcome.summary(),
                    e.at,
                )),
                _ => None,
            })
            .collect();
        if finished.is_empty() {
            return;
        }
        let targets = self.fleet.notify_targets();
        // A register stored again long after its run ended (a restart, a late ballot) is old
        // news: only its leader, at the time, notified it.
        let fresh = notify_config(&self.fleet).lease.saturating_mul(10);
        for (site, epoch, leader, ok, summary, ended) in finished {
            let age = now.wall.as_micros().saturating_sub(ended.as_micros());
            if leader != self.me.id && age > fresh.as_micros() as u64 {
                continue;
            }
            let (kind, state) = if ok {
                (EventKind::RunSucceeded, "succeeded")
            } else {
                (EventKind::RunFailed, "failed")
            };
            let electorate = self.electorate(&site);
            let event = Event {
                kind,
                idempotency_key: run_key(&site, epoch, state),
                site,
                epoch,
                detail: summary,
                at_unix_ms: ended.as_millis(),
            };
            // The event's key makes a second look at the same queued action a no-op.
            self.notify
                .event(now.mono, event, &leader, Some(&electorate), &targets);
        }
    }

    /// Carries the notification machine's actions over; true when there were any.
    pub(super) fn drain_notify(&mut self, now: Now) -> bool {
        self.notify_finished_runs(now);
        let mut any = false;
        while let Some(a) = self.notify.poll_action() {
            any = true;
            match a {
                NotifyAction::Call {
                    notifier,
                    event,
                    attempt,
                } => self.actions.push_back(Action::Notify(NotifyCall {
                    notifier,
                    event,
                    attempt,
                })),
                NotifyAction::Sent {
                    site,
                    key,
                    notifier,
                    to,
                } => {
                    let msg = NotifiedMsg {
                        site,
                        key,
                        notifier,
                    };
                    for to in to {
                        self.actions.push_back(Action::Send {
                            to,
                            msg: Message::Notified(msg.clone()),
                        });
                    }
                }
            }
        }
        any
    }

    /// A peer's "sent" note, taken only from a voter of the site's electorate.
    pub(super) fn on_notified(&mut self, now: Now, from: &NodeId, m: NotifiedMsg) {
        if self.fleet.watch(&m.site).is_none() {
            self.refused(now, from, &m.site, Refusal::UnknownSite);
            return;
        }
        let electorate = self.electorate(&m.site);
        let noted = self
            .notify
            .note_sent(from, &m.site, &m.key, &m.notifier, &electorate);
        match noted {
            Ok(()) => {}
            Err(NoteRefused::NotInElectorate) => {
                self.refused(now, from, &m.site, Refusal::NotInElectorate)
            }
            Err(NoteRefused::TooLarge) => self.refused(now, from, &m.site, Refusal::TooLarge),
        }
    }
}
