//! Self-distrust (Redis Sentinel's TILT): a node that sees its wall clock jump against its
//! monotonic clock, or its own event loop run late by more than one probe budget, cannot trust
//! the evidence it would vote on nor the deadlines it would act on. It abstains from voting
//! and from starting steps for a cool-off, then looks again.

use crate::core::types::{Now, Time};
use std::time::Duration;

/// The node's clock-trust state.
#[derive(Clone, Debug)]
pub struct Tilt {
    budget: Duration,
    /// wall − mono (µs) at the previous input: an NTP step moves it, slewing barely does.
    offset: Option<i128>,
    until: Option<Time>,
    count: u64,
    reason: Option<String>,
}

impl Tilt {
    pub fn new(now: Now, budget: Duration) -> Tilt {
        Tilt {
            budget,
            offset: Some(offset(now)),
            until: None,
            count: 0,
            reason: None,
        }
    }

    pub fn set_budget(&mut self, budget: Duration) {
        self.budget = budget;
    }

    /// How long a tilt lasts.
    pub fn cool_off(&self) -> Duration {
        self.budget.saturating_mul(2)
    }

    /// Looks at the clocks of an input; `due` is the deadline the core had asked to be woken
    /// at. Returns why the node starts distrusting itself now, if it does.
    pub fn observe(&mut self, now: Now, due: Option<Time>) -> Option<String> {
        let off = offset(now);
        let jump = self.offset.map_or(0, |o| (off - o).unsigned_abs());
        self.offset = Some(off);
        let budget = self.budget.as_micros();
        let why = if jump > budget {
            Some(format!(
                "the wall clock jumped by {} ms against the monotonic clock",
                jump / 1000
            ))
        } else {
            due.filter(|d| now.mono.since(*d) > self.budget).map(|d| {
                format!(
                    "the event loop ran {} ms late",
                    now.mono.since(d).as_millis()
                )
            })
        }?;
        let was_active = self.until.is_some();
        self.until = Some(now.mono + self.cool_off());
        self.reason = Some(why.clone());
        if was_active {
            return None;
        }
        self.count += 1;
        Some(why)
    }

    pub fn active(&self) -> bool {
        self.until.is_some()
    }

    /// Ends the tilt once its cool-off is over; true when it ended now.
    pub fn end_if_over(&mut self, now: Time) -> bool {
        if self.until.is_some_and(|u| u <= now) {
            self.until = None;
            return true;
        }
        false
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.until
    }

    /// Tilts so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Why the node distrusts itself, while it does.
    pub fn reason(&self) -> Option<&str> {
        self.until.and(self.reason.as_deref())
    }
}

fn offset(now: Now) -> i128 {
    now.wall.as_micros() as i128 - now.mono.as_micros() as i128
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::WallTime;

    fn at(mono_ms: u64, wall_ms: u64) -> Now {
        Now::new(Time(mono_ms * 1000), WallTime(wall_ms * 1000))
    }

    #[test]
    fn a_wall_clock_step_tilts_the_node_for_its_cool_off() {
        let mut t = Tilt::new(at(0, 1_000_000), Duration::from_millis(600));
        assert_eq!(t.observe(at(100, 1_000_100), None), None);
        let why = t
            .observe(at(200, 1_000_200 + 3_600_000), None)
            .expect("tilts");
        assert!(why.contains("jumped"), "{why}");
        assert!(t.active());
        assert!(!t.end_if_over(Time(1_000_000)));
        assert!(t.end_if_over(Time(1_400_000)));
        assert!(!t.active());
        assert_eq!(t.count(), 1);
    }

    #[test]
    fn a_backward_wall_clock_step_tilts_too() {
        let mut t = Tilt::new(at(0, 5_000_000), Duration::from_millis(600));
        assert!(t.observe(at(100, 5_000_100 - 3_600_000), None).is_some());
    }

    #[test]
    fn a_late_event_loop_tilts_but_a_punctual_one_does_not() {
        let mut t = Tilt::new(at(0, 0), Duration::from_millis(600));
        assert_eq!(t.observe(at(1000, 1000), Some(Time(900_000))), None);
        let why = t
            .observe(at(2000, 2000), Some(Time(1_100_000)))
            .expect("tilts");
        assert!(why.contains("late"), "{why}");
    }

    #[test]
    fn slewing_within_the_budget_is_trusted() {
        let mut t = Tilt::new(at(0, 0), Duration::from_millis(600));
        for i in 1..100 {
            assert_eq!(t.observe(at(i * 100, i * 100 + i), None), None);
        }
    }
}
