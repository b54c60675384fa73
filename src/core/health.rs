//! Service health of an Indicator: the rise/fall state machine of one local check and the
//! service health an Indicator reports in its probe answers. Pure: results come in, states
//! come out; running the checks (sockets, HTTP, programs, timers) is `crate::health`'s job.
//!
//! The semantics are anycast-healthchecker's rise and fall: a passing check turns failing only
//! after `fall` consecutive failures, and a failing one turns passing only after `rise`
//! consecutive successes, so one lost packet or one slow answer does not flip the service. A
//! check starts *pending* (which Pingers count as the host's answer): its first success makes
//! it passing at once, and `fall` consecutive failures make it failing, so a node started with
//! its service dead says so after `fall` intervals, and a service that is merely slower to start
//! than quorate gets that long before anyone counts it dead.

use serde::{Deserialize, Serialize};

/// The state of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// No result yet since the node started (or the check was added).
    Pending,
    Passing,
    Failing,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Passing => "passing",
            CheckState::Failing => "failing",
        }
    }
}

/// One check's rise/fall machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckTracker {
    rise: u32,
    fall: u32,
    state: CheckState,
    /// Consecutive results that disagree with `state` (towards a flip).
    against: u32,
}

impl CheckTracker {
    /// `rise` and `fall` are at least 1 (the fleet file refuses 0; a 0 here counts as 1).
    pub fn new(rise: u32, fall: u32) -> CheckTracker {
        CheckTracker {
            rise: rise.max(1),
            fall: fall.max(1),
            state: CheckState::Pending,
            against: 0,
        }
    }

    pub fn state(&self) -> CheckState {
        self.state
    }

    /// Consecutive results so far that disagree with the current state.
    pub fn streak_against(&self) -> u32 {
        self.against
    }

    /// Records one result; returns the new state when it changed.
    pub fn record(&mut self, passed: bool) -> Option<CheckState> {
        let (agrees, needed, flip_to) = match (self.state, passed) {
            (CheckState::Pending, true) => (false, 1, CheckState::Passing),
            (CheckState::Pending, false) => (false, self.fall, CheckState::Failing),
            (CheckState::Passing, true) | (CheckState::Failing, false) => (true, 0, self.state),
            (CheckState::Passing, false) => (false, self.fall, CheckState::Failing),
            (CheckState::Failing, true) => (false, self.rise, CheckState::Passing),
        };
        if agrees {
            self.against = 0;
            return None;
        }
        self.against += 1;
        if self.against < needed {
            return None;
        }
        self.against = 0;
        self.state = flip_to;
        Some(flip_to)
    }
}

/// What an Indicator says of its service in a probe answer: the sum of its site's checks.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ServiceHealth {
    /// The Indicator runs no check (its site has none): only its host is judged.
    #[default]
    Unchecked,
    /// Some check has no result yet and none fails.
    Pending,
    /// Every check passes.
    Passing,
    /// At least one check fails.
    Failing,
}

impl ServiceHealth {
    /// The service health of an Indicator whose checks are in `states`: one failing check fails
    /// the service (a site serves when all its parts do).
    pub fn of(states: impl IntoIterator<Item = CheckState>) -> ServiceHealth {
        let mut health = ServiceHealth::Unchecked;
        for s in states {
            health = match (health, s) {
                (_, CheckState::Failing) | (ServiceHealth::Failing, _) => ServiceHealth::Failing,
                (_, CheckState::Pending) | (ServiceHealth::Pending, _) => ServiceHealth::Pending,
                _ => ServiceHealth::Passing,
            };
        }
        health
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceHealth::Unchecked => "unchecked",
            ServiceHealth::Pending => "pending",
            ServiceHealth::Passing => "passing",
            ServiceHealth::Failing => "failing",
        }
    }

    /// Whether a Pinger judging the service counts an answer saying this as a miss. Pending and
    /// unchecked answers count as the host's: a site whose Indicators just restarted is not
    /// failed over before their checks said anything.
    pub fn is_failing(self) -> bool {
        self == ServiceHealth::Failing
    }
}

/// How a watch judges its site: by its hosts answering, or by their service checks too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Judge {
    /// An Indicator that answers is reachable (the ORBIT/DRL rule as it always was).
    #[default]
    Host,
    /// An Indicator that answers while its service checks fail counts as missed.
    Service,
}

impl Judge {
    pub fn as_str(self) -> &'static str {
        match self {
            Judge::Host => "host",
            Judge::Service => "service",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut CheckTracker, results: &[bool]) -> Vec<Option<CheckState>> {
        results.iter().map(|&r| t.record(r)).collect()
    }

    #[test]
    fn a_check_starts_pending_its_first_success_passes_it_and_fall_failures_fail_it() {
        let mut t = CheckTracker::new(3, 3);
        assert_eq!(t.state(), CheckState::Pending);
        assert_eq!(
            run(&mut t, &[false, false, false]),
            vec![None, None, Some(CheckState::Failing)]
        );
        let mut t = CheckTracker::new(3, 3);
        assert_eq!(t.record(false), None);
        assert_eq!(t.state(), CheckState::Pending);
        assert_eq!(
            t.record(true),
            Some(CheckState::Passing),
            "no rise from pending"
        );
    }

    #[test]
    fn a_passing_check_fails_after_fall_consecutive_failures() {
        let mut t = CheckTracker::new(2, 3);
        t.record(true);
        assert_eq!(
            run(&mut t, &[false, false, false]),
            vec![None, None, Some(CheckState::Failing)]
        );
        assert_eq!(t.state(), CheckState::Failing);
    }

    #[test]
    fn a_success_between_failures_restarts_the_fall_count() {
        let mut t = CheckTracker::new(2, 3);
        t.record(true);
        run(&mut t, &[false, false, true, false, false]);
        assert_eq!(t.state(), CheckState::Passing);
        assert_eq!(t.streak_against(), 2);
        assert_eq!(t.record(false), Some(CheckState::Failing));
    }

    #[test]
    fn a_failing_check_passes_after_rise_consecutive_successes() {
        let mut t = CheckTracker::new(2, 1);
        t.record(false);
        assert_eq!(
            run(&mut t, &[true, false, true, true]),
            vec![None, None, None, Some(CheckState::Passing)]
        );
    }

    #[test]
    fn flapping_faster_than_rise_and_fall_never_flips() {
        let mut t = CheckTracker::new(3, 3);
        t.record(true);
        for _ in 0..50 {
            assert_eq!(run(&mut t, &[false, false, true]), vec![None, None, None]);
        }
        assert_eq!(t.state(), CheckState::Passing);
    }

    #[test]
    fn rise_and_fall_of_zero_act_as_one() {
        let mut t = CheckTracker::new(0, 0);
        t.record(true);
        assert_eq!(t.record(false), Some(CheckState::Failing));
        assert_eq!(t.record(true), Some(CheckState::Passing));
    }

    #[test]
    fn one_failing_check_fails_the_service_and_pending_beats_passing() {
        use CheckState::*;
        assert_eq!(ServiceHealth::of([]), ServiceHealth::Unchecked);
        assert_eq!(
            ServiceHealth::of([Passing, Passing]),
            ServiceHealth::Passing
        );
        assert_eq!(
            ServiceHealth::of([Passing, Pending]),
            ServiceHealth::Pending
        );
        assert_eq!(
            ServiceHealth::of([Failing, Pending]),
            ServiceHealth::Failing
        );
        assert_eq!(
            ServiceHealth::of([Passing, Failing]),
            ServiceHealth::Failing
        );
        assert!(ServiceHealth::Failing.is_failing());
        assert!(!ServiceHealth::Pending.is_failing());
    }
}
