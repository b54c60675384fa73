//! The Pinger: probes every Indicator of the watched sites on a fixed period, counts misses
//! and turns them into a site opinion by the ORBIT/DRL rule (UP while any Indicator is
//! reachable, DOWN when none is). It owns the probe schedule and the evidence; it never sends
//! anything itself: it emits `SendProbe` and the driver carries it.
//!
//! An Indicator is unreachable after `retries` consecutive missed probes. A probe is missed
//! when its timeout passes unanswered, or earlier, as BFD detects a dead peer: once an
//! Indicator that answered before has been silent for its detection time (`retries` probe
//! intervals, plus a quarter interval of jitter allowance) after its last answer, every probe
//! it left unanswered for longer than that last answer's round trip (plus the allowance) is
//! missed. After a blackout that is the `retries` probes sent since the last answer, so the
//! Indicator is unreachable `retries` intervals after it last spoke instead of one probe
//! timeout after the `retries`-th probe. A Pinger that stalled (or skipped rounds) has sent
//! fewer probes than that and still waits for the timeouts.
//!
//! A watch with `judge = "service"` also counts as a miss every answer whose Indicator says
//! its service checks fail (a gray failure: the host answers, the service is dead). Such an
//! answer is a miss as soon as it arrives; it is no sign of life either, so it neither
//! resets the miss streak nor restarts the silence clock of the detection time.

use super::health::{Judge, ServiceHealth};
use super::types::{NodeId, Opinion, SiteId, Time};
use crate::wire::{IndicatorView, OpinionReport, MAX_REPORTED_INDICATORS};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingerConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive misses after which an Indicator is unreachable.
    pub retries: u32,
    /// How long after an Indicator is first watched a probe that could not even be sent to it
    /// (no connection yet) is not held against it. Without it a node starting before its
    /// connections are up would see every site DOWN.
    pub startup_grace: Duration,
}

impl PingerConfig {
    pub fn from_timing(t: &crate::config::Timing) -> PingerConfig {
        PingerConfig {
            interval: t.probe_interval,
            timeout: t.probe_timeout,
            retries: t.retries.max(1),
            startup_grace: t.probe_budget() + Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingerAction {
    SendProbe {
        indicator: NodeId,
        nonce: u64,
        /// This Pinger's opinion of the Indicator's site as the round starts: the probe tells
        /// the Indicator, whose site's self-fence listens for it (`core::fence`).
        opinion: Opinion,
    },
    /// The first miss of a streak: the start of a possible detection, kept for the timeline.
    FirstMiss {
        site: SiteId,
        indicator: NodeId,
    },
    IndicatorUnreachable {
        site: SiteId,
        indicator: NodeId,
    },
    OpinionChanged {
        site: SiteId,
        from: Opinion,
        to: Opinion,
    },
    /// An Indicator this Pinger believed unreachable answered: the DOWN belief was wrong.
    ExternalFalsePositive {
        site: SiteId,
        indicator: NodeId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    Unknown,
    Reachable,
    Unreachable,
}

impl Reach {
    fn known(self) -> Option<bool> {
        match self {
            Reach::Unknown => None,
            Reach::Reachable => Some(true),
            Reach::Unreachable => Some(false),
        }
    }
}

#[derive(Clone, Debug)]
struct IndicatorState {
    id: NodeId,
    reach: Reach,
    /// When this Indicator was first watched.
    since: Time,
    misses: u32,
    last_rtt: Option<Duration>,
    last_seen: Option<Time>,
    /// Sent time of the first missed probe of the current streak.
    streak_from: Option<Time>,
    /// Probes in flight: (nonce, sent at), oldest first. At most ceil(timeout / interval) +
    /// 1: one or two in the profiles, kept inline, where every answer and every round read
    /// them without a second allocation to fetch.
    outstanding: SmallVec<[(u64, Time); 2]>,
    /// When the silence since the last answer reaches the detection time; None before the
    /// first answer and once that moment has been handled.
    silent_at: Option<Time>,
    /// What the Indicator's last answer said of its service.
    service: ServiceHealth,
    /// The current miss streak holds an answer that said the service fails: its end is the
    /// service's recovery, not a wrong DOWN belief.
    streak_unhealthy: bool,
}

impl IndicatorState {
    fn new(id: NodeId, since: Time) -> Self {
        IndicatorState {
            id,
            reach: Reach::Unknown,
            since,
            misses: 0,
            last_rtt: None,
            last_seen: None,
            streak_from: None,
            outstanding: SmallVec::new(),
            silent_at: None,
            service: ServiceHealth::Unchecked,
            streak_unhealthy: false,
        }
    }
    fn fresh(&self) -> bool {
        self.reach == Reach::Reachable && self.misses == 0
    }
}

/// Counts kept incrementally so that an answer costs O(1) even with thousands of Indicators.
#[derive(Clone, Debug, Default)]
struct Tally {
    fresh: usize,
    reachable: usize,
    unreachable: usize,
}

#[derive(Clone, Debug)]
struct WatchedSite {
    id: SiteId,
    indicators: Vec<IndicatorState>,
    tally: Tally,
    opinion: Opinion,
    last_evidence: Option<Time>,
    /// When the current DOWN opinion's miss streak began (first missed probe).
    down_from: Option<Time>,
    judge: Judge,
}

impl WatchedSite {
    fn opinion_by_rule(&self) -> Opinion {
        let t = &self.tally;
        if t.fresh > 0 {
            Opinion::Up
        } else if t.reachable > 0 {
            Opinion::Suspect
        } else if !self.indicators.is_empty() && t.unreachable == self.indicators.len() {
            Opinion::Down
        } else {
            Opinion::Unknown
        }
    }
}

/// Counters for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PingerStats {
    pub probes_sent: u64,
    pub answers: u64,
    pub late_answers: u64,
    pub misses: u64,
    pub external_false_positives: u64,
    /// Answers after an Indicator had been declared unreachable ("retries until UP").
    pub recoveries: u64,
    /// Answers counted as misses because the Indicator said its service fails
    /// (`judge = "service"` only).
    pub unhealthy_answers: u64,
}

pub struct Pinger {
    cfg: PingerConfig,
    sites: Vec<WatchedSite>,
    /// Indicator id -> (site index, indicator index). Looked up for every answer; Fx, as the
    /// ids come from the fleet file and answers only from the fleet's members, so no sender
    /// chooses keys that collide.
    index: FxHashMap<NodeId, (usize, usize)>,
    /// Sites whose watch judges the service; the others judge hosts.
    judges: HashMap<SiteId, Judge>,
    next_round: Time,
    /// Send times of rounds that may still have probes in flight, oldest first. All probes of
    /// a round share its send time, so the earliest deadline is the front + timeout.
    rounds_in_flight: VecDeque<Time>,
    /// (silent_at, site index, indicator index), in time order: every answer pushes its
    /// Indicator's new moment at the back (the detection time is the same for all). Entries
    /// an Indicator's later answer replaced are dropped when they reach the front.
    silences: VecDeque<(Time, usize, usize)>,
    rng: StdRng,
    actions: VecDeque<PingerAction>,
    stats: PingerStats,
}

impl Pinger {
    /// `watches` lists each watched site with its Indicators. The first round goes out at `now`.
    pub fn new(
        cfg: PingerConfig,
        watches: Vec<(SiteId, Vec<NodeId>)>,
        now: Time,
        seed: u64,
    ) -> Pinger {
        let mut p = Pinger {
            cfg,
            sites: Vec::new(),
            index: FxHashMap::default(),
            judges: HashMap::new(),
            next_round: now,
            rounds_in_flight: VecDeque::new(),
            silences: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            actions: VecDeque::new(),
            stats: PingerStats::default(),
        };
        p.set_watches(now, watches);
        p
    }

    /// Replaces the watched sites (fleet reload), keeping the state of Indicators that remain.
    pub fn set_watches(&mut self, now: Time, watches: Vec<(SiteId, Vec<NodeId>)>) {
        let mut old: HashMap<NodeId, IndicatorState> = HashMap::new();
        let mut old_sites: HashMap<SiteId, (Opinion, Option<Time>, Option<Time>)> = HashMap::new();
        for s in self.sites.drain(..) {
            old_sites.insert(s.id.clone(), (s.opinion, s.last_evidence, s.down_from));
            for i in s.indicators {
                old.insert(i.id.clone(), i);
            }
        }
        self.index.clear();
        for (si, (site, inds)) in watches.into_iter().enumerate() {
            let (opinion, last_evidence, down_from) =
                old_sites
                    .remove(&site)
                    .unwrap_or((Opinion::Unknown, None, None));
            let mut ws = WatchedSite {
                id: site,
                indicators: Vec::new(),
                tally: Tally::default(),
                opinion,
                last_evidence,
                down_from,
                judge: Judge::Host,
            };
            for (ii, id) in inds.into_iter().enumerate() {
                let st = old
                    .remove(&id)
                    .unwrap_or_else(|| IndicatorState::new(id.clone(), now));
                match st.reach {
                    Reach::Reachable => ws.tally.reachable += 1,
                    Reach::Unreachable => ws.tally.unreachable += 1,
                    Reach::Unknown => {}
                }
                if st.fresh() {
                    ws.tally.fresh += 1;
                }
                self.index.insert(id, (si, ii));
                ws.indicators.push(st);
            }
            self.sites.push(ws);
        }
        for si in 0..self.sites.len() {
            self.refresh_opinion(si, None);
        }
        self.apply_judges();
        self.rebuild_silences();
    }

    /// How each watched site is judged (fleet start and reload); sites not listed judge hosts.
    /// Applies from the next answer on.
    pub fn set_judges(&mut self, judges: HashMap<SiteId, Judge>) {
        self.judges = judges;
        self.apply_judges();
    }

    fn apply_judges(&mut self) {
        for site in &mut self.sites {
            site.judge = self.judges.get(&site.id).copied().unwrap_or_default();
        }
    }

    /// How `site` is judged.
    pub fn judge(&self, site: &SiteId) -> Judge {
        self.site(site).map(|s| s.judge).unwrap_or_default()
    }

    /// New timings (fleet reload); they apply from the next round on.
    pub fn set_config(&mut self, cfg: PingerConfig) {
        self.cfg = cfg;
        self.rebuild_silences();
    }

    /// BFD's detection time: how long an Indicator that answered before may stay silent
    /// before the probes it left unanswered count as missed. `retries` intervals, plus a
    /// quarter interval that lets the `retries`-th probe's answer be a little slower than the
    /// last one (a BFD sender jitters its period by up to 25 % for the same reason).
    pub fn detection_time(&self) -> Duration {
        let i = self.cfg.interval;
        i.saturating_mul(self.cfg.retries).saturating_add(i / 4)
    }

    /// Recomputes every silence moment from the last answers (indices or timings changed).
    fn rebuild_silences(&mut self) {
        let limit = self.detection_time();
        self.silences.clear();
        for (si, site) in self.sites.iter_mut().enumerate() {
            for (ii, ind) in site.indicators.iter_mut().enumerate() {
                if ind.silent_at.is_some() {
                    let at = ind.last_seen.map(|t| t + limit);
                    ind.silent_at = at;
                    self.silences.extend(at.map(|t| (t, si, ii)));
                }
            }
        }
        self.silences.make_contiguous().sort();
        self.drop_replaced_silences();
    }

    /// Pops front entries that no longer are their Indicator's silence moment, so that the
    /// front is always a live one and `poll_timeout` wakes no one for nothing.
    fn drop_replaced_silences(&mut self) {
        while let Some(&(at, si, ii)) = self.silences.front() {
            let live = self.sites.get(si).and_then(|s| s.indicators.get(ii));
            if live.is_some_and(|i| i.silent_at == Some(at)) {
                break;
            }
            self.silences.pop_front();
        }
    }

    pub fn config(&self) -> &PingerConfig {
        &self.cfg
    }

    pub fn poll_action(&mut self) -> Option<PingerAction> {
        self.actions.pop_front()
    }

    /// The earliest time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Time {
        let expiry = self.rounds_in_flight.front().map(|&s| s + self.cfg.timeout);
        let silence = self.silences.front().map(|&(at, _, _)| at);
        [expiry, silence]
            .into_iter()
            .flatten()
            .fold(self.next_round, Time::min)
    }

    /// Expires probes whose timeout passed, then sends the round that is due.
    pub fn handle_timeout(&mut self, now: Time) {
        let mut expired = false;
        while let Some(&sent) = self.rounds_in_flight.front() {
            if sent + self.cfg.timeout > now {
                break;
            }
            self.rounds_in_flight.pop_front();
            expired = true;
        }
        for si in 0..self.sites.len() {
            if !expired {
                break;
            }
            let mut changed = false;
            for ii in 0..self.sites[si].indicators.len() {
                while let Some(&(_, sent)) = self.sites[si].indicators[ii].outstanding.first() {
                    if sent + self.cfg.timeout > now {
                        break;
                    }
                    self.sites[si].indicators[ii].outstanding.remove(0);
                    self.record_miss(si, ii, sent);
                    changed = true;
                }
            }
            if changed {
                self.sites[si].last_evidence = Some(now);
                self.refresh_opinion(si, Some(now));
            }
        }
        self.handle_silences(now);
        if now >= self.next_round {
            self.send_round(now);
            // Keep the period; if the driver fell behind by more than a period, skip ahead
            // rather than bursting probes.
            self.next_round = self.next_round + self.cfg.interval;
            if self.next_round <= now {
                self.next_round = now + self.cfg.interval;
            }
        }
    }

    /// Indicators whose silence reached the detection time: the probes each left unanswered
    /// for longer than its last answer's round trip (plus the allowance) are missed now.
    fn handle_silences(&mut self, now: Time) {
        let allowance = self.cfg.interval / 4;
        while let Some(&(at, si, ii)) = self.silences.front() {
            if at > now {
                break;
            }
            self.silences.pop_front();
            let ind = &mut self.sites[si].indicators[ii];
            if ind.silent_at != Some(at) {
                continue;
            }
            ind.silent_at = None;
            let waited = ind.last_rtt.unwrap_or_default() + allowance;
            let mut overdue = Vec::new();
            while let Some(&(_, sent)) = ind.outstanding.first() {
                if sent + waited > now {
                    break;
                }
                ind.outstanding.remove(0);
                overdue.push(sent);
            }
            if overdue.is_empty() {
                continue;
            }
            for sent in overdue {
                self.record_miss(si, ii, sent);
            }
            self.sites[si].last_evidence = Some(now);
            self.refresh_opinion(si, Some(now));
        }
        self.drop_replaced_silences();
    }

    /// An Answer to probe `nonce` arrived from `indicator` at `now`, saying nothing of its
    /// service.
    pub fn handle_answer(&mut self, now: Time, indicator: &NodeId, nonce: u64) {
        self.handle_answer_with(now, indicator, nonce, ServiceHealth::Unchecked);
    }

    /// An Answer to probe `nonce` arrived from `indicator` at `now`, saying `health` of its
    /// service.
    pub fn handle_answer_with(
        &mut self,
        now: Time,
        indicator: &NodeId,
        nonce: u64,
        health: ServiceHealth,
    ) {
        let Some(&(si, ii)) = self.index.get(indicator) else {
            return;
        };
        if self.sites[si].judge == Judge::Service && health.is_failing() {
            self.handle_unhealthy_answer(now, si, ii, nonce);
            return;
        }
        let retries = self.cfg.retries;
        let silent_at = now + self.detection_time();
        let site = &mut self.sites[si];
        let ind = &mut site.indicators[ii];
        let Some(pos) = ind.outstanding.iter().position(|&(n, _)| n == nonce) else {
            // Unknown or already expired nonce: the answer came after its timeout.
            self.stats.late_answers += 1;
            return;
        };
        let (_, sent) = ind.outstanding.remove(pos);
        // Older probes still in flight lost the race with this one; they are no evidence.
        ind.outstanding.retain(|&mut (_, s)| s > sent);
        self.stats.answers += 1;
        ind.service = health;
        let service_recovered = std::mem::take(&mut ind.streak_unhealthy);
        let was_fresh = ind.fresh();
        let was = ind.reach;
        ind.last_rtt = Some(now.since(sent));
        ind.last_seen = Some(now);
        ind.misses = 0;
        ind.streak_from = None;
        ind.reach = Reach::Reachable;
        ind.silent_at = Some(silent_at);
        self.silences.push_back((silent_at, si, ii));
        match was {
            Reach::Unreachable => {
                site.tally.unreachable -= 1;
                site.tally.reachable += 1;
                self.stats.recoveries += 1;
                if retries > 0 && !service_recovered {
                    self.stats.external_false_positives += 1;
                    self.actions.push_back(PingerAction::ExternalFalsePositive {
                        site: site.id.clone(),
                        indicator: indicator.clone(),
                    });
                }
            }
            Reach::Unknown => site.tally.reachable += 1,
            Reach::Reachable => {}
        }
        if !was_fresh {
            site.tally.fresh += 1;
        }
        site.last_evidence = Some(now);
        self.refresh_opinion(si, Some(now));
        self.drop_replaced_silences();
    }

    /// An answer whose Indicator says its service fails, on a site judged by its service: the
    /// probe is missed now. The Indicator's last sign of life stays its last healthy answer.
    fn handle_unhealthy_answer(&mut self, now: Time, si: usize, ii: usize, nonce: u64) {
        let ind = &mut self.sites[si].indicators[ii];
        let Some(pos) = ind.outstanding.iter().position(|&(n, _)| n == nonce) else {
            self.stats.late_answers += 1;
            return;
        };
        let (_, sent) = ind.outstanding.remove(pos);
        self.stats.answers += 1;
        self.stats.unhealthy_answers += 1;
        ind.service = ServiceHealth::Failing;
        ind.streak_unhealthy = true;
        ind.last_rtt = Some(now.since(sent));
        self.record_miss(si, ii, sent);
        self.sites[si].last_evidence = Some(now);
        self.refresh_opinion(si, Some(now));
    }

    /// The driver could not send probe `nonce` (no connection to the Indicator yet). While the
    /// Indicator has never answered and is within its startup grace, the probe is forgotten
    /// rather than counted as a miss: there is no evidence either way yet.
    pub fn probe_not_sent(&mut self, now: Time, indicator: &NodeId, nonce: u64) {
        let Some(&(si, ii)) = self.index.get(indicator) else {
            return;
        };
        let grace = self.cfg.startup_grace;
        let ind = &mut self.sites[si].indicators[ii];
        if ind.reach == Reach::Unknown && now < ind.since + grace {
            ind.outstanding.retain(|&mut (n, _)| n != nonce);
        }
    }

    fn send_round(&mut self, now: Time) {
        self.rounds_in_flight.push_back(now);
        for site in &mut self.sites {
            let opinion = site.opinion;
            for ind in &mut site.indicators {
                let nonce = self.rng.next_u64();
                ind.outstanding.push((nonce, now));
                self.stats.probes_sent += 1;
                self.actions.push_back(PingerAction::SendProbe {
                    indicator: ind.id.clone(),
                    nonce,
                    opinion,
                });
            }
        }
    }

    fn record_miss(&mut self, si: usize, ii: usize, sent: Time) {
        let retries = self.cfg.retries;
        let site = &mut self.sites[si];
        let ind = &mut site.indicators[ii];
        self.stats.misses += 1;
        if ind.fresh() {
            site.tally.fresh -= 1;
        }
        ind.misses = ind.misses.saturating_add(1);
        if ind.misses == 1 {
            ind.streak_from = Some(sent);
            self.actions.push_back(PingerAction::FirstMiss {
                site: site.id.clone(),
                indicator: ind.id.clone(),
            });
        }
        if ind.misses >= retries && ind.reach != Reach::Unreachable {
            if ind.reach == Reach::Reachable {
                site.tally.reachable -= 1;
            }
            ind.reach = Reach::Unreachable;
            site.tally.unreachable += 1;
            self.actions.push_back(PingerAction::IndicatorUnreachable {
                site: site.id.clone(),
                indicator: ind.id.clone(),
            });
        }
    }

    fn refresh_opinion(&mut self, si: usize, now: Option<Time>) {
        let site = &mut self.sites[si];
        let to = site.opinion_by_rule();
        if to == site.opinion {
            return;
        }
        let from = site.opinion;
        site.opinion = to;
        if to == Opinion::Down {
            site.down_from = site
                .indicators
                .iter()
                .filter_map(|i| i.streak_from)
                .min()
                .or(now);
        } else {
            site.down_from = None;
        }
        self.actions.push_back(PingerAction::OpinionChanged {
            site: site.id.clone(),
            from,
            to,
        });
    }

    pub fn opinion(&self, site: &SiteId) -> Opinion {
        self.site(site)
            .map(|s| s.opinion)
            .unwrap_or(Opinion::Unknown)
    }

    /// When the miss streak behind the current DOWN opinion began.
    pub fn down_from(&self, site: &SiteId) -> Option<Time> {
        self.site(site).and_then(|s| s.down_from)
    }

    /// Whether `indicator`'s answers show it alive, if this Pinger probes it and has a verdict
    /// on it yet (misses reach the detection time: unreachable).
    pub fn reach_of(&self, indicator: &NodeId) -> Option<bool> {
        let &(si, ii) = self.index.get(indicator)?;
        self.sites[si].indicators[ii].reach.known()
    }

    /// Whether this Pinger probes `indicator`.
    pub fn probes(&self, indicator: &NodeId) -> bool {
        self.index.contains_key(indicator)
    }

    pub fn watched_sites(&self) -> impl Iterator<Item = &SiteId> {
        self.sites.iter().map(|s| &s.id)
    }

    pub fn stats(&self) -> &PingerStats {
        &self.stats
    }

    /// The opinion of `site` with its evidence, as this Pinger would report it at `now`.
    pub fn report(&self, site: &SiteId, now: Time) -> OpinionReport {
        let Some(s) = self.site(site) else {
            return OpinionReport::unknown();
        };
        let age =
            |t: Option<Time>| t.map(|t| now.since(t).as_millis().min(u32::MAX as u128) as u32);
        OpinionReport {
            opinion: s.opinion,
            evidence_age_ms: age(s.last_evidence).unwrap_or(u32::MAX),
            indicators_total: s.indicators.len() as u32,
            indicators_reachable: s.tally.reachable as u32,
            indicators: s
                .indicators
                .iter()
                .take(MAX_REPORTED_INDICATORS)
                .map(|i| IndicatorView {
                    node: i.id.clone(),
                    reachable: i.reach.known(),
                    misses: i.misses,
                    last_rtt_us: i
                        .last_rtt
                        .map(|d| d.as_micros().min(u32::MAX as u128) as u32),
                    last_seen_age_ms: age(i.last_seen),
                    service: i.service,
                })
                .collect(),
        }
    }

    fn site(&self, id: &SiteId) -> Option<&WatchedSite> {
        self.sites.iter().find(|s| &s.id == id)
    }
}

#[cfg(test)]
#[path = "pinger_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pinger_service_tests.rs"]
mod service_tests;

impl super::voter::OpinionSource for Pinger {
    fn report(&self, site: &SiteId, now: Time) -> OpinionReport {
        Pinger::report(self, site, now)
    }
}
