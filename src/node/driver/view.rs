//! The node's picture for the outside world: builds the published snapshot from the running
//! state machines and the driver's bookkeeping. Read-only: nothing here changes state.

use super::*;
use crate::config::SingleVantage;
use crate::core::health::ServiceHealth;
use crate::core::types::{Opinion, Outcome, SiteId};
use crate::core::voter::RoundRecord;
use crate::store::StoredVerdict;
use crate::wire::OpinionReport;

impl Driver {
    pub(super) fn build_snapshot(&self, now: Instant) -> NodeSnapshot {
        let t = self.time(now);
        let fleet = self.fleet();
        let status_horizon = fleet.timing.status_interval.saturating_mul(3);
        let connected = self.mesh.connected();
        let peers = fleet
            .mesh_peers(&self.core.me().id)
            .map(|n| {
                let p = self.core.peers().get(&n.id);
                // A Pinger that probes this node sends it its status only with news and now and
                // then; its probes show it alive in between.
                let seen = p.and_then(|p| p.last_heard()).map(|s| t.since(s));
                // An Indicator-only peer's status comes rarely, and to voters only: its
                // connection shows it alive (a quiet pair's parked one counts: the mesh keeps it
                // among the connected), and so do its probe answers where this node probes it (a
                // crashed one, with no close on the wire, holds its connection until the idle
                // timeout, but misses its probes within the detection time).
                let reachable = if n.is_indicator_only() {
                    connected.binary_search(&n.id).is_ok()
                        && self.core.pinger().reach_of(&n.id) != Some(false)
                } else {
                    seen.is_some_and(|s| s <= status_horizon)
                };
                PeerView {
                    node: n.id.clone(),
                    site: n.site.clone(),
                    reachable,
                    fleet_hash: p.and_then(|p| p.fleet_hash.clone()),
                    last_seen_ms_ago: seen.map(|s| s.as_millis() as u64),
                }
            })
            .collect();
        let sites = fleet
            .watches
            .iter()
            .map(|w| self.site_view(now, t, &w.site, w.single_vantage))
            .collect();
        let ps = self.core.pinger().stats();
        let mut counters = self.observed.counters.clone();
        counters.probes_sent = ps.probes_sent;
        counters.probes_answered = ps.answers;
        counters.probes_late = ps.late_answers;
        counters.probe_misses = ps.misses;
        counters.false_positives_external = ps.external_false_positives;
        counters.retries_until_up = ps.recoveries;
        counters.refused = self
            .core
            .refusals()
            .counts()
            .map(|(r, n)| (r.as_str(), n))
            .collect();
        let notify = self.core.notifications().counts();
        counters.notifications_taken_over = notify.taken_over;
        counters.notifications_cancelled = notify.cancelled;
        let roles = self.core.me().roles;
        NodeSnapshot {
            node: self.core.me().id.clone(),
            site: self.core.me().site.clone(),
            roles: [
                ("indicator", roles.indicator),
                ("pinger", roles.pinger),
                ("voter", roles.voter),
            ]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(r, _)| r)
            .collect(),
            fleet_hash: fleet.hash.clone(),
            fleet_error: self.fleet_error.clone(),
            peers,
            sites,
            history: self.observed.history.iter().map(verdict_view).collect(),
            counters,
            mesh: self.mesh.stats(),
            voting_disabled: self.core.voting_disabled().map(str::to_string),
            tilt: TiltView {
                active: self.core.tilt().active(),
                reason: self.core.tilt().reason().map(str::to_string),
                tilts: self.core.tilt().count(),
            },
            failovers: self.failover_views(),
            certificates: Some(CertificatesView::at(
                self.expiry,
                wall_now().as_millis() / 1000,
            )),
            service_health: self
                .service_checks
                .as_ref()
                .map_or(ServiceHealth::Unchecked, |c| c.health())
                .as_str(),
            service_checks: self
                .service_checks
                .as_ref()
                .map(|c| c.views())
                .unwrap_or_default(),
            alarms: self.core.alarms().all().map(AlarmView::of).collect(),
            alarm_sources: fleet.alarm_sources.clone(),
            api_token_file: fleet.api.token_file.clone(),
            api_read_token_file: fleet.api.read_token_file.clone(),
            published_at: Some(now),
            stale_after: stale_after(fleet.timing.status_interval),
            isolation: self.core.isolation().map(|iso| IsolationView {
                isolated: iso.since.is_some(),
                heard: iso.fence.heard(t),
                needed: iso.fence.needed(),
                isolations: iso.count,
                last_steps: if iso.running.is_some() {
                    Some("running".to_string())
                } else {
                    iso.last_report.as_ref().map(|r| r.outcome.summary())
                },
            }),
        }
    }

    fn site_view(&self, now: Instant, t: Time, site: &SiteId, sv: SingleVantage) -> SiteView {
        let fleet = self.fleet();
        let verdict = self.core.voter().verdict(site);
        let electorate = fleet.electorate(site);
        let majority = electorate.len() / 2 + 1;
        let mut evidence = Vec::new();
        if self.core.pinger().watched_sites().any(|s| s == site) {
            evidence.push(evidence_of(
                self.core.me().id.clone(),
                &self.core.pinger().report(site, t),
                0,
            ));
        }
        for (node, p) in self.core.peers().iter() {
            let ago = p
                .last_status
                .map_or(u64::MAX, |s| t.since(s).as_millis() as u64);
            for (s, r) in &p.opinions {
                if s == site {
                    evidence.push(evidence_of(node.clone(), r, ago));
                }
            }
        }
        let wall_now = unix_ms();
        let to_wall = |x: Time| wall_now + (x.as_micros() as i64 - t.as_micros() as i64) / 1000;
        // The later of: hold-down after the newest DOWN verdict, and after the newest
        // automatic run this node knows of.
        let hold_down_until = self
            .core
            .voter()
            .hold_down_until(site)
            .filter(|_| verdict.is_some_and(|v| v.outcome() == Outcome::Down))
            .into_iter()
            .chain(self.core.runs().hold_down_until(site))
            .max()
            .filter(|x| *x > t)
            .map(to_wall);
        let maintenance_until = self
            .core
            .maintenance_until(site, WallTime::from_millis(wall_now));
        SiteView {
            id: site.clone(),
            opinion: self.core.pinger().opinion(site).as_api_str(),
            verdict: verdict.map_or("none", |v| v.outcome().as_api_str()),
            judge: fleet.service.judge(site).as_str(),
            epoch: verdict.map(|v| v.epoch()),
            slot: verdict.map(|v| v.slot),
            leader: verdict.map(|v| v.value.leader.clone()),
            decided_at: verdict.and_then(|v| self.observed.learned_at.get(&(site.clone(), v.slot))).map(|ms| rfc3339(*ms)),
            hold_down_until: hold_down_until.map(rfc3339),
            maintenance_until: maintenance_until.map(rfc3339),
            hold_down_until_unix_ms: hold_down_until,
            maintenance_until_unix_ms: maintenance_until,
            failover: match sv {
                SingleVantage::Refuse => "automatic".to_string(),
                SingleVantage::Manual => "manual: single_vantage = \"manual\": one site holds a majority of the \
                    electorate, so a cut between it and this site would look like a disaster; failover waits for an operator"
                    .to_string(),
            },
            on_alarm: fleet
                .watch(site)
                .and_then(|w| w.plan.as_ref())
                .map_or("notify", |p| p.on_alarm.as_str()),
            alarms: self.core.alarms().raised(site).map(AlarmView::of).collect(),
            electorate,
            majority,
            evidence,
            rounds: self.observed.rounds.get(site).map(|q| q.iter().map(|r| round_view(now, t, r)).collect()).unwrap_or_default(),
        }
    }
}

fn evidence_of(pinger: NodeId, r: &OpinionReport, reported_ms_ago: u64) -> PingerEvidence {
    PingerEvidence {
        pinger,
        opinion: r.opinion.as_api_str(),
        suspect: r.opinion == Opinion::Suspect,
        evidence_age_ms: (r.evidence_age_ms != u32::MAX).then_some(r.evidence_age_ms),
        reported_ms_ago,
        indicators: r.indicators.clone(),
    }
}

fn round_view(now: Instant, t: Time, r: &RoundRecord) -> RoundView {
    let ended_ago = t.since(r.ended);
    let ended_wall = unix_ms() - ended_ago.as_millis() as i64;
    let _ = now;
    RoundView {
        slot: r.slot,
        target: r.target.as_api_str(),
        epoch: r.epoch,
        attempt: r.attempt,
        outcome: r.outcome.label(r.target),
        duration_ms: r.ended.since(r.started).as_secs_f64() * 1000.0,
        ended_at: rfc3339(ended_wall),
        answers: r
            .answers
            .iter()
            .map(|a| AnswerView {
                voter: a.voter.clone(),
                opinion: a.opinion.as_api_str(),
                suspect: a.opinion == Opinion::Suspect,
                evidence_age_ms: (a.evidence_age_ms != u32::MAX).then_some(a.evidence_age_ms),
                promised: a.promised,
            })
            .collect(),
    }
}

fn verdict_view(s: &StoredVerdict) -> VerdictView {
    VerdictView {
        site: s.verdict.site.clone(),
        verdict: s.verdict.outcome().as_api_str(),
        epoch: s.verdict.epoch(),
        slot: s.verdict.slot,
        leader: s.verdict.value.leader.clone(),
        decided_at: rfc3339(s.learned_at_unix_ms),
    }
}

/// How many runs led elsewhere `GET /v1/failovers` shows.
const RUNS_SHOWN: usize = 50;

impl Driver {
    fn failover_views(&self) -> Vec<FailoverView> {
        let view = |site: &SiteId,
                    epoch: u64,
                    state: &'static str,
                    summary: Option<String>,
                    steps: Vec<crate::core::pipeline::StepReport>| {
            let record = self.core.replicas().record(site, epoch);
            FailoverView {
                id: format!("{site}-{epoch}"),
                site: site.clone(),
                epoch,
                term: record.map_or(epoch, |r| r.term()),
                leader: record.map_or(self.core.me().id.clone(), |r| r.leader().clone()),
                trigger: record
                    .map_or(crate::core::replica::RunTrigger::Verdict, |r| r.trigger)
                    .as_str(),
                state,
                summary,
                steps: steps.iter().map(FailoverStepView::of).collect(),
            }
        };
        let state_of = run_state;
        let mut out: Vec<FailoverView> = Vec::new();
        let mut shown = std::collections::BTreeSet::new();
        for r in self.core.runs().finished().rev() {
            shown.insert((r.site.clone(), r.epoch));
            let state = state_of(&r.outcome);
            out.push(view(
                &r.site,
                r.epoch,
                state,
                Some(r.outcome.summary()),
                r.steps.clone(),
            ));
        }
        for ((site, epoch), p) in self.core.runs().running() {
            shown.insert((site.clone(), *epoch));
            out.push(view(site, *epoch, "running", None, p.steps()));
        }
        for (site, epoch) in self.core.runs().waiting() {
            shown.insert((site.clone(), *epoch));
            out.push(view(site, *epoch, "waiting", None, Vec::new()));
        }
        // Runs led elsewhere, as far as the copy of the journal this node holds tells.
        // The newest ones only, as for the runs led here: this runs at every publish.
        let mut copies: Vec<_> = self.core.replicas().records().collect();
        copies.sort_by_key(|r| std::cmp::Reverse(r.run));
        for r in copies.into_iter().take(RUNS_SHOWN) {
            if shown.contains(&(r.site.clone(), r.run)) {
                continue;
            }
            let Some(spec) = self.core.run_spec(&r.site, r.trigger) else {
                continue;
            };
            let p =
                crate::core::pipeline::Pipeline::replayed(spec, r.site.clone(), r.run, &r.journal);
            let verdict_stands = self
                .core
                .voter()
                .verdict(&r.site)
                .map(|v| (v.outcome(), v.epoch()))
                == Some((Outcome::Down, r.run));
            let (state, summary) = match p.outcome() {
                Some(o) => (state_of(o), Some(o.summary())),
                // Its verdict was replaced during the takeover delay: it never started.
                None if r.journal.is_empty()
                    && r.trigger == crate::core::replica::RunTrigger::Verdict
                    && !verdict_stands =>
                {
                    (
                        "dropped",
                        Some("the verdict changed during the takeover delay".to_string()),
                    )
                }
                None if r.journal.is_empty() => ("waiting", None),
                None => ("running", None),
            };
            let steps = if r.journal.is_empty() {
                Vec::new()
            } else {
                p.steps()
            };
            out.push(view(&r.site, r.run, state, summary, steps));
        }
        out
    }
}
