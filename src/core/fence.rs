//! Isolation detection for the local site: decides when the nodes of this site have heard from
//! too few of the Voters that judge it (the electorate of this site, which lives outside it) for
//! `self_fence_after`, so that the site withdraws itself before the others can take over, and
//! when enough are heard again. "Too few" means: so few that the members it does not hear
//! could form a majority and judge the site DOWN. Hearing any more than that, the site cannot
//! be judged DOWN, and withdrawing would only cause an outage. It never withdraws anything itself and never reads a clock:
//! the driver reports every message from a peer with the time it arrived and carries out the
//! `Isolated` action by running the site's isolation steps.

use super::types::{NodeId, SiteId, Time};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceConfig {
    /// How long this site may go without hearing a majority of its electorate before it
    /// withdraws itself. The takeover delay must exceed it (checked with the fleet file).
    pub self_fence_after: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FenceConfigError {
    /// Nothing was changed: a zero delay would fence the site on any missed message.
    #[error("self_fence_after must be greater than zero")]
    ZeroDelay,
}

impl FenceConfig {
    pub fn validate(&self) -> Result<(), FenceConfigError> {
        if self.self_fence_after.is_zero() {
            return Err(FenceConfigError::ZeroDelay);
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceAction {
    /// No majority of the electorate has been heard from since `since` (the last moment one
    /// was), for `self_fence_after`: run the site's isolation steps now.
    Isolated { since: Time },
    /// A majority is heard again; `isolated_for` counts from `since` of the `Isolated` action.
    Reconnected { isolated_for: Duration },
}

pub struct Fence {
    cfg: FenceConfig,
    site: SiteId,
    /// When each electorate member was last heard from.
    last_seen: BTreeMap<NodeId, Time>,
    /// `since` of the current isolation.
    isolated: Option<Time>,
    actions: VecDeque<FenceAction>,
}

impl Fence {
    /// Every member counts as heard at `now`, so a site that starts cut off fences itself
    /// `self_fence_after` later, not at once.
    pub fn new(cfg: FenceConfig, my_site: SiteId, electorate: Vec<NodeId>, now: Time) -> Fence {
        Fence {
            cfg,
            site: my_site,
            last_seen: electorate.into_iter().map(|n| (n, now)).collect(),
            isolated: None,
            actions: VecDeque::new(),
        }
    }

    /// Replaces the electorate (fleet reload); kept members keep their last contact, new ones
    /// count as heard at `now`.
    pub fn set_electorate(&mut self, now: Time, electorate: Vec<NodeId>) {
        let old = std::mem::take(&mut self.last_seen);
        self.last_seen = electorate
            .into_iter()
            .map(|n| {
                let t = old.get(&n).copied().unwrap_or(now);
                (n, t)
            })
            .collect();
        self.handle_timeout(now);
        self.check_reconnected(now);
    }

    /// Replaces the delay (fleet reload); takes effect at the next timeout.
    pub fn set_config(&mut self, cfg: FenceConfig) {
        self.cfg = cfg;
    }

    pub fn site(&self) -> &SiteId {
        &self.site
    }

    /// `since` of the current isolation, if the site is isolated.
    pub fn isolated_since(&self) -> Option<Time> {
        self.isolated
    }

    /// Members heard from within the last `self_fence_after`.
    pub fn heard(&self, now: Time) -> usize {
        self.last_seen
            .values()
            .filter(|&&t| now < t + self.cfg.self_fence_after)
            .count()
    }

    /// How many members must be heard for the site to stay in: enough that the members it
    /// does not hear cannot form a majority of the electorate on their own (a "blocking set":
    /// n − majority + 1). A site that hears fewer could be judged DOWN by the others, so it
    /// withdraws; a site that hears at least this many cannot be, so withdrawing would only
    /// cause an outage (a cut between a and b while c sees a must not fence a).
    pub fn needed(&self) -> usize {
        let n = self.last_seen.len();
        n - (n / 2 + 1) + 1
    }

    pub fn poll_action(&mut self) -> Option<FenceAction> {
        self.actions.pop_front()
    }

    /// When the majority will be lost if nobody else is heard from; none while isolated
    /// (reconnection comes with a message) or with an empty electorate (nothing to lose).
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.isolated.is_some() {
            return None;
        }
        self.majority_last_seen()
            .map(|t| t + self.cfg.self_fence_after)
    }

    /// A status or any other message from `node` arrived at `now`. Members outside the
    /// electorate do not count.
    pub fn peer_seen(&mut self, now: Time, node: &NodeId) {
        // A deadline that passed before this message is an isolation that happened.
        self.handle_timeout(now);
        if let Some(t) = self.last_seen.get_mut(node) {
            *t = (*t).max(now);
            self.check_reconnected(now);
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        if self.isolated.is_some() {
            return;
        }
        if let Some(since) = self.majority_last_seen() {
            if now >= since + self.cfg.self_fence_after {
                self.isolated = Some(since);
                self.actions.push_back(FenceAction::Isolated { since });
            }
        }
    }

    fn check_reconnected(&mut self, now: Time) {
        if let Some(since) = self.isolated {
            if self.heard(now) >= self.needed() {
                self.isolated = None;
                self.actions.push_back(FenceAction::Reconnected {
                    isolated_for: now.since(since),
                });
            }
        }
    }

    /// The last moment enough members had been heard from: the needed-th most recent contact.
    fn majority_last_seen(&self) -> Option<Time> {
        if self.last_seen.is_empty() {
            return None;
        }
        let mut seen: Vec<Time> = self.last_seen.values().copied().collect();
        seen.sort_unstable_by(|a, b| b.cmp(a));
        Some(seen[self.needed() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    fn at(n_ms: u64) -> Time {
        Time::ZERO + ms(n_ms)
    }
    fn n(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn fence(members: &[&str]) -> Fence {
        Fence::new(
            FenceConfig {
                self_fence_after: ms(1000),
            },
            SiteId("a".into()),
            members.iter().map(|m| n(m)).collect(),
            Time::ZERO,
        )
    }

    fn drain(f: &mut Fence) -> Vec<FenceAction> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    #[test]
    fn a_site_that_hears_nobody_is_isolated_after_exactly_self_fence_after() {
        let mut f = fence(&["b1", "b2", "w1"]);
        assert_eq!(f.poll_timeout(), Some(at(1000)));
        f.handle_timeout(at(999));
        assert_eq!(drain(&mut f), vec![]);
        f.handle_timeout(at(1000));
        assert_eq!(drain(&mut f), vec![FenceAction::Isolated { since: at(0) }]);
        assert_eq!(f.isolated_since(), Some(at(0)));
        assert_eq!(f.poll_timeout(), None);
    }

    #[test]
    fn a_majority_but_not_all_of_the_electorate_keeps_the_site_in() {
        let mut f = fence(&["b1", "b2", "w1"]);
        for t in (500..=5000).step_by(500) {
            f.peer_seen(at(t), &n("b1"));
            f.peer_seen(at(t), &n("w1"));
            f.handle_timeout(at(t));
        }
        assert_eq!(drain(&mut f), vec![]);
        assert_eq!(f.poll_timeout(), Some(at(6000)));
        assert_eq!(f.heard(at(5000)), 2);
    }

    #[test]
    fn the_deadline_follows_the_majority_th_most_recent_contact() {
        let mut f = fence(&["b1", "b2", "w1"]);
        f.peer_seen(at(300), &n("b1"));
        f.peer_seen(at(600), &n("b2"));
        // b2 at 600 and b1 at 300 are the two freshest: the majority is lost at 1300.
        assert_eq!(f.poll_timeout(), Some(at(1300)));
        f.handle_timeout(at(1300));
        assert_eq!(
            drain(&mut f),
            vec![FenceAction::Isolated { since: at(300) }]
        );
    }

    #[test]
    fn hearing_a_majority_again_reconnects_the_site() {
        let mut f = fence(&["b1", "b2", "w1"]);
        f.handle_timeout(at(1000));
        assert_eq!(drain(&mut f), vec![FenceAction::Isolated { since: at(0) }]);
        f.peer_seen(at(4000), &n("b2"));
        assert_eq!(drain(&mut f), vec![]);
        f.peer_seen(at(4200), &n("w1"));
        assert_eq!(
            drain(&mut f),
            vec![FenceAction::Reconnected {
                isolated_for: ms(4200)
            }]
        );
        assert_eq!(f.isolated_since(), None);
        assert_eq!(f.poll_timeout(), Some(at(5000)));
    }

    #[test]
    fn flapping_connectivity_does_not_isolate_the_site_twice() {
        let mut f = fence(&["b1", "b2", "w1"]);
        f.handle_timeout(at(1000));
        assert_eq!(drain(&mut f), vec![FenceAction::Isolated { since: at(0) }]);
        // One member at a time gets through, never two within self_fence_after.
        for (t, m) in [(1500, "b1"), (2600, "b2"), (3700, "w1"), (4800, "b1")] {
            f.peer_seen(at(t), &n(m));
            f.handle_timeout(at(t + 999));
        }
        assert_eq!(drain(&mut f), vec![]);
        // Reconnects, then loses the majority again: one new isolation, not a repeat.
        f.peer_seen(at(5000), &n("b2"));
        f.handle_timeout(at(6000));
        f.handle_timeout(at(6500));
        assert_eq!(
            drain(&mut f),
            vec![
                FenceAction::Reconnected {
                    isolated_for: ms(5000)
                },
                FenceAction::Isolated { since: at(4800) },
            ]
        );
    }

    #[test]
    fn a_late_message_after_the_deadline_isolates_before_it_counts() {
        let mut f = fence(&["b1", "b2", "w1"]);
        f.peer_seen(at(1200), &n("b1"));
        assert_eq!(drain(&mut f), vec![FenceAction::Isolated { since: at(0) }]);
        assert_eq!(f.heard(at(1200)), 1);
    }

    #[test]
    fn an_electorate_of_four_needs_two_heard_so_a_cut_from_one_of_two_judging_sites_does_not_fence()
    {
        let mut f = fence(&["b1", "b2", "w1", "w2"]);
        assert_eq!(f.needed(), 2);
        // Cut from b, the witness still heard: the other two cannot make a majority of four.
        for t in (500..=3000).step_by(500) {
            f.peer_seen(at(t), &n("w1"));
            f.peer_seen(at(t), &n("w2"));
            f.handle_timeout(at(t));
        }
        assert_eq!(drain(&mut f), vec![]);
        // Only w1 heard: b1, b2 and w2 could judge the site DOWN, so it fences.
        for t in (3500..=5000).step_by(500) {
            f.peer_seen(at(t), &n("w1"));
            f.handle_timeout(at(t));
        }
        assert_eq!(
            drain(&mut f),
            vec![FenceAction::Isolated { since: at(3000) }]
        );
        f.peer_seen(at(5100), &n("w2"));
        assert_eq!(
            drain(&mut f),
            vec![FenceAction::Reconnected {
                isolated_for: ms(2100)
            }]
        );
    }

    #[test]
    fn messages_from_outside_the_electorate_do_not_count() {
        let mut f = fence(&["b1", "b2", "w1"]);
        f.peer_seen(at(500), &n("a2"));
        f.peer_seen(at(900), &n("a3"));
        assert_eq!(f.poll_timeout(), Some(at(1000)));
        f.handle_timeout(at(1000));
        assert_eq!(drain(&mut f), vec![FenceAction::Isolated { since: at(0) }]);
    }

    #[test]
    fn an_empty_electorate_never_isolates_the_site() {
        let mut f = fence(&[]);
        assert_eq!(f.poll_timeout(), None);
        f.handle_timeout(at(1_000_000));
        assert_eq!(drain(&mut f), vec![]);
    }

    #[test]
    fn a_zero_delay_is_refused() {
        let cfg = FenceConfig {
            self_fence_after: Duration::ZERO,
        };
        assert_eq!(cfg.validate(), Err(FenceConfigError::ZeroDelay));
    }
}
