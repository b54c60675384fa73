//! What the core observed, kept for the snapshot and the timeline: counters and delay
//! histograms, the latest vote rounds per site, the verdict history. Nothing here decides.

use super::*;
use crate::core::node::Observation;
use crate::core::pinger::PingerAction;
use crate::core::types::{Opinion, Outcome, SiteId};
use crate::core::voter::{RoundRecord, VoterAction};
use crate::node::{EventKind, NodeEvent};
use crate::store::StoredVerdict;
use std::collections::VecDeque;
use tracing::{debug, info};

const ROUNDS_KEPT: usize = 10;

#[derive(Default)]
pub(super) struct Observed {
    pub counters: Counters,
    pub rounds: BTreeMap<SiteId, VecDeque<RoundRecord>>,
    pub history: Vec<StoredVerdict>,
    pub learned_at: BTreeMap<(SiteId, u64), i64>,
    first_down_opinion: BTreeMap<SiteId, Instant>,
    /// DOWN verdicts learned before this node's own Pinger saw the site DOWN, and when: their
    /// detection delay is measured once it does.
    detection_pending: BTreeMap<SiteId, Instant>,
}

impl Driver {
    fn emit(&self, at: Instant, kind: EventKind) {
        if let Some(tx) = &self.spec.events {
            let _ = tx.send(NodeEvent {
                at,
                node: self.core.me().id.clone(),
                kind,
            });
        }
    }

    pub(super) fn observe(&mut self, o: Observation) {
        let now = Instant::now();
        match o {
            Observation::Pinger(a) => self.observe_pinger(now, a),
            Observation::Voter(a) => self.observe_voter(now, a),
        }
    }

    fn observe_pinger(&mut self, now: Instant, a: PingerAction) {
        match a {
            PingerAction::SendProbe { .. } => {}
            PingerAction::FirstMiss { site, indicator } => {
                debug!(%site, %indicator, "first missed probe");
                self.emit(now, EventKind::FirstMiss { site, indicator });
            }
            PingerAction::IndicatorUnreachable { site, indicator } => {
                info!(%site, %indicator, retries = self.core.pinger().config().retries, "indicator unreachable");
            }
            PingerAction::ExternalFalsePositive { site, indicator } => {
                info!(%site, %indicator, "indicator believed unreachable answered");
            }
            PingerAction::OpinionChanged { site, from, to } => {
                info!(%site, from = ?from, to = ?to, "opinion changed");
                if to == Opinion::Down {
                    self.observed.first_down_opinion.insert(site.clone(), now);
                    if let Some(learned) = self.observed.detection_pending.remove(&site) {
                        let from = self.core.pinger().down_from(&site).map(|f| self.instant(f));
                        // Only the miss streak the verdict was about: one begun before it.
                        if let Some(from) = from.filter(|f| *f <= learned) {
                            let delay = learned.saturating_duration_since(from);
                            self.observed
                                .counters
                                .detection_delay
                                .observe(delay.as_secs_f64());
                        }
                    }
                } else {
                    self.observed.first_down_opinion.remove(&site);
                    if to == Opinion::Up {
                        self.observed.detection_pending.remove(&site);
                    }
                }
                self.emit(
                    now,
                    EventKind::Opinion {
                        site,
                        opinion: to.as_api_str(),
                        suspect: to == Opinion::Suspect,
                    },
                );
            }
        }
    }

    fn observe_voter(&mut self, now: Instant, a: VoterAction) {
        match a {
            VoterAction::RoundStarted {
                site,
                slot,
                target,
                epoch,
                attempt,
            } => {
                info!(%site, slot, epoch, attempt, target = target.as_api_str(), "vote round started");
                self.emit(
                    now,
                    EventKind::RoundStarted {
                        site,
                        epoch,
                        attempt,
                        target,
                    },
                );
            }
            VoterAction::RoundEnded(r) => {
                let label = r.outcome.label(r.target);
                let yes = r
                    .answers
                    .iter()
                    .filter(|a| a.opinion == r.target.as_opinion())
                    .count();
                let electorate = self.core.voter().electorate(&r.site).map_or(0, |e| e.len());
                info!(site = %r.site, epoch = r.epoch, outcome = label, yes, electorate, "vote round ended");
                let c = &mut self.observed.counters;
                *c.vote_rounds.entry(label).or_default() += 1;
                if label == "false_positive" {
                    c.false_positives_internal += 1;
                }
                self.emit(
                    now,
                    EventKind::RoundEnded {
                        site: r.site.clone(),
                        epoch: r.epoch,
                        outcome: label,
                        yes,
                        electorate,
                    },
                );
                let q = self.observed.rounds.entry(r.site.clone()).or_default();
                q.push_front(r);
                q.truncate(ROUNDS_KEPT);
            }
            VoterAction::Committed { verdict, by_me } => {
                let site = verdict.site.clone();
                let at_ms = self
                    .observed
                    .learned_at
                    .get(&(site.clone(), verdict.slot))
                    .copied()
                    .unwrap_or_else(unix_ms);
                let outcome = verdict.outcome();
                info!(%site, verdict = outcome.as_api_str(), epoch = verdict.epoch(), slot = verdict.slot,
                      leader = %verdict.value.leader, by_me, "verdict committed");
                *self
                    .observed
                    .counters
                    .verdicts
                    .entry((site.to_string(), outcome.as_api_str()))
                    .or_default() += 1;
                if outcome == Outcome::Down {
                    let pinger = self.core.pinger();
                    if let Some(from) = pinger.down_from(&site) {
                        let from = self.instant(from);
                        self.observed
                            .counters
                            .detection_delay
                            .observe(now.saturating_duration_since(from).as_secs_f64());
                    } else if pinger.watched_sites().any(|s| *s == site) {
                        // Our Pinger has not seen it DOWN yet (still suspecting): measured
                        // when it does, from the start of its miss streak to now.
                        self.observed.detection_pending.insert(site.clone(), now);
                    }
                    if let Some(first) = self.observed.first_down_opinion.get(&site) {
                        let d = now.saturating_duration_since(*first).as_secs_f64();
                        self.observed.counters.decision_delay.observe(d);
                    }
                } else {
                    self.observed.detection_pending.remove(&site);
                }
                self.observed.history.insert(
                    0,
                    StoredVerdict {
                        verdict: verdict.clone(),
                        learned_at_unix_ms: at_ms,
                    },
                );
                self.observed.history.truncate(HISTORY_KEPT);
                self.emit(
                    now,
                    EventKind::Verdict {
                        site,
                        outcome,
                        epoch: verdict.epoch(),
                        leader: verdict.value.leader.clone(),
                    },
                );
            }
            VoterAction::Persist { .. }
            | VoterAction::Send { .. }
            | VoterAction::Broadcast { .. }
            | VoterAction::Lead { .. }
            | VoterAction::Refused { .. } => {}
        }
    }
}
