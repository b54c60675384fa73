//! The properties every simulated run must keep, checked as events happen: agreement on each
//! (site, slot), no DOWN verdict for a site that enough of its electorate could still see,
//! a DOWN verdict in bounded time after a blackout a connected majority witnessed, and
//! promises that never go back, across restarts. It only observes; it never steers the run.

use super::faults::FaultModel;
use crate::core::types::{Ballot, NodeId, Outcome, SiteId, Time, Value, Verdict};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// Two nodes committed different values (or epochs) for one (site, slot).
    Agreement,
    /// A DOWN verdict for a site too many of its voters could still reach.
    FalseVerdict,
    /// A blackout witnessed by a connected majority was not decided in time.
    Liveness,
    /// A node's durable promise went down.
    PromiseDecreased,
    /// The store refused a write the core asked for.
    Store,
    /// The run did not settle (runaway event loop).
    Runaway,
    /// (i) A run step took effect twice under one idempotency key, or two attempts of one
    /// step overlapped in time.
    DuplicateEffect,
    /// (ii) A step of a run acted after a newer run of its site began, or a run began although
    /// its leader knew a newer verdict of its site.
    StaleRunActed,
    /// (iii) An automatic run began during maintenance, for a manual watch, or within
    /// hold-down.
    ForbiddenRun,
    /// (iv) A run that began did not complete within its bound once faults stopped.
    RunNotCompleted,
    /// (v) A run's bgp step left a declared anycast prefix announced by no live site.
    PrefixUnannounced,
    /// (vi) The takeover's first step acted while a cut-off live site still announced.
    IsolationLate,
    /// A node stored or recorded something a lying member forged.
    ForgeryAccepted,
    /// A committed DOWN verdict whose leader died before registering its run got no run that
    /// began and finished once faults stopped.
    VerdictNotRun,
    /// A prestage step acted twice in one alarm episode, an unstage acted with no prestage
    /// standing or after a failover began, or two alarm failover runs acted in one episode.
    AlarmRun,
    /// An alarm episode still raised once runs must have settled has no prestage standing.
    AlarmNotActed,
    /// Right after a tick, a core asked to be woken at a deadline already past: its driver
    /// would wake again at once, in a busy loop, until some input cleared it.
    BusyWake,
}

/// One site's electorate as the checker sees it: voters with their sites.
#[derive(Clone, Debug)]
pub struct Judged {
    pub site: SiteId,
    pub electorate: Vec<(NodeId, SiteId)>,
    /// Indicator nodes of the site.
    pub indicators: Vec<NodeId>,
}

pub struct Checker {
    pub judged: Vec<Judged>,
    /// Look-back of the false-verdict check and the liveness bound.
    pub window: Duration,
    pub liveness_bound: Duration,
    /// False when loss alone can plausibly make a Pinger see the site DOWN.
    pub false_verdicts_checked: bool,
    /// Liveness is required only up to this loss.
    pub max_loss_live: f64,
    /// (site, slot) -> the value and when it was first known anywhere.
    pub commits: BTreeMap<(SiteId, u64), (Value, Time)>,
    /// (site, slot) -> node -> when that node first knew it.
    pub known_at: BTreeMap<(SiteId, u64), BTreeMap<NodeId, Time>>,
    promised: BTreeMap<(NodeId, SiteId), Ballot>,
}

pub type Check = Result<(), (ViolationKind, String)>;

impl Checker {
    pub fn new(judged: Vec<Judged>, window: Duration, liveness_bound: Duration) -> Checker {
        Checker {
            judged,
            window,
            liveness_bound,
            false_verdicts_checked: true,
            max_loss_live: 0.3,
            commits: BTreeMap::new(),
            known_at: BTreeMap::new(),
            promised: BTreeMap::new(),
        }
    }

    pub fn on_persist(&mut self, node: &NodeId, site: &SiteId, promised: &Ballot) -> Check {
        let key = (node.clone(), site.clone());
        if let Some(old) = self.promised.get(&key) {
            if promised < old {
                return Err((
                    ViolationKind::PromiseDecreased,
                    format!("{node} promised {promised:?} for {site} after {old:?}"),
                ));
            }
        }
        self.promised.insert(key, promised.clone());
        Ok(())
    }

    pub fn on_commit(&mut self, now: Time, node: &NodeId, v: &Verdict, f: &FaultModel) -> Check {
        let key = (v.site.clone(), v.slot);
        self.known_at
            .entry(key.clone())
            .or_default()
            .entry(node.clone())
            .or_insert(now);
        if let Some((value, _)) = self.commits.get(&key) {
            if *value != v.value {
                return Err((
                    ViolationKind::Agreement,
                    format!(
                        "{node} committed {:?} for site {} slot {}, another node {:?}",
                        v.value, v.site, v.slot, value
                    ),
                ));
            }
            return Ok(());
        }
        self.commits.insert(key, (v.value.clone(), now));
        if v.outcome() == Outcome::Down {
            self.check_down_is_honest(now, v, f)?;
        }
        Ok(())
    }

    /// A DOWN verdict needs a majority of the electorate saying DOWN. A voter can honestly say
    /// so only if the site died (blackout, or every Indicator unavailable) or a cut separated
    /// it from the site during the window. If fewer than a majority could, the verdict is false.
    fn check_down_is_honest(&self, now: Time, v: &Verdict, f: &FaultModel) -> Check {
        if !self.false_verdicts_checked {
            return Ok(());
        }
        let Some(j) = self.judged.iter().find(|j| j.site == v.site) else {
            return Ok(());
        };
        let from = Time(now.0.saturating_sub(self.window.as_micros() as u64));
        if f.blackout_during(&j.site, from, now) {
            return Ok(());
        }
        // Every Indicator down at one common instant: approximated by each being down at
        // some time in the window, which can only excuse more verdicts, never fewer.
        if !j.indicators.is_empty()
            && j.indicators
                .iter()
                .all(|i| f.down_during(i, &j.site, from, now))
        {
            return Ok(());
        }
        let could_say_down = j
            .electorate
            .iter()
            .filter(|(_, s)| f.cut_during(s, &j.site, from, now))
            .count();
        let majority = j.electorate.len() / 2 + 1;
        if could_say_down >= majority {
            return Ok(());
        }
        Err((
            ViolationKind::FalseVerdict,
            format!(
                "DOWN verdict for {} (slot {}, epoch {}) while only {} of {} voters were cut \
                 from it and it was alive in the last {} ms",
                v.site,
                v.slot,
                v.epoch(),
                could_say_down,
                j.electorate.len(),
                self.window.as_millis()
            ),
        ))
    }

    /// Called at blackout start + bound: was it decided, if it had to be?
    pub fn check_liveness(&self, site: &SiteId, start: Time, f: &FaultModel) -> Check {
        if f.loss > self.max_loss_live {
            return Ok(());
        }
        let end = start + self.liveness_bound;
        let Some(j) = self.judged.iter().find(|j| &j.site == site) else {
            return Ok(());
        };
        // The site must stay dark for the whole bound.
        let back = f
            .blackouts
            .iter()
            .any(|b| &b.site == site && b.start <= end && b.end.is_some_and(|e| e <= end));
        if back {
            return Ok(());
        }
        let steady: Vec<&(NodeId, SiteId)> = j
            .electorate
            .iter()
            .filter(|(n, s)| !f.down_during(n, s, start, end))
            .collect();
        // The largest group of steady voters whose sites stay connected to each other.
        let mut sites: Vec<&SiteId> = steady.iter().map(|(_, s)| s).collect();
        sites.dedup();
        let mut best = 0;
        for mask in 1u32..(1 << sites.len()) {
            let pick: Vec<&SiteId> = (0..sites.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| sites[i])
                .collect();
            let connected = pick
                .iter()
                .all(|x| pick.iter().all(|y| !f.cut_during(x, y, start, end)));
            if connected {
                let n = steady.iter().filter(|(_, s)| pick.contains(&s)).count();
                best = best.max(n);
            }
        }
        if best < j.electorate.len() / 2 + 1 {
            return Ok(());
        }
        let decided = self
            .commits
            .iter()
            .filter(|((s, _), _)| s == site)
            .max_by_key(|((_, slot), _)| *slot)
            .is_some_and(|((_, slot), (_, at))| {
                Outcome::of_slot(*slot) == Outcome::Down && *at <= end
            });
        if decided {
            return Ok(());
        }
        Err((
            ViolationKind::Liveness,
            format!(
                "blackout of {site} at {} ms not decided within {} ms although {best} of {} \
                 voters stayed up and connected",
                start.0 / 1000,
                self.liveness_bound.as_millis(),
                j.electorate.len()
            ),
        ))
    }
}
