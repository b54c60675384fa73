//! The bounds of every duration and count in the fleet file, in one place. They keep a
//! fleet within what was designed and tested, and they make every sum and product the core
//! forms from these values (probe budgets, retry schedules, drill bounds, deadlines) small
//! enough that no arithmetic on them can overflow. Lower bounds of zero are checked where the
//! value is read, with the reason zero is wrong; this module holds the upper bounds and
//! renders the error, which names the key with its table path and the limit.

use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// `timing.probe_interval_ms`: 1 ms .. 60 s.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// `timing.probe_timeout_ms`: 1 ms .. 60 s.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// `timing.retries`: 1 .. 100 missed probes.
pub const MAX_PROBE_RETRIES: u64 = 100;
/// `timing.vote_timeout_ms`: 1 ms .. 60 s.
pub const MAX_VOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// `timing.max_vote_rounds`: 1 .. 100.
pub const MAX_VOTE_ROUNDS: u64 = 100;
/// `timing.hold_down_s`: 0 .. 30 days.
pub const MAX_HOLD_DOWN: Duration = Duration::from_secs(30 * 86_400);
/// `timing.revote_after_ms`: 1 ms .. 1 day (the default, 5 × the probe budget, stays below
/// 9 h even with the largest probe settings).
pub const MAX_REVOTE_AFTER: Duration = DAY;
/// `timing.status_interval_ms`: 1 ms .. 60 s.
pub const MAX_STATUS_INTERVAL: Duration = Duration::from_secs(60);

/// A step's `timeout_s`: more than 0 .. 1 h.
pub const MAX_STEP_TIMEOUT: Duration = HOUR;
/// A step's `retries`: 0 .. 1000 attempts after the first (a step may keep trying a slow
/// controller for hours; each attempt is one bounded journal entry).
pub const MAX_STEP_RETRIES: u64 = 1000;
/// A step's `backoff_ms`: 0 .. 1 h.
pub const MAX_STEP_BACKOFF: Duration = HOUR;
/// A fence confirmation's `interval_ms` (between two reads): more than 0 .. 10 min. Its
/// `timeout_s` and `retries` have the limits of a step's.
pub const MAX_CONFIRM_INTERVAL: Duration = Duration::from_secs(600);
/// A watch's `takeover_delay_s`: 0 .. 1 day. It must exceed `self_fence_after_s` plus the
/// probe budget, which may reach 1 h + 101 min within the limits.
pub const MAX_TAKEOVER_DELAY: Duration = DAY;
/// A watch's `self_fence_after_s`: 0 .. 1 h.
pub const MAX_SELF_FENCE_AFTER: Duration = HOUR;

/// A `[[site.check]]`'s `interval_ms`: 1 ms .. 1 h.
pub const MAX_CHECK_INTERVAL: Duration = HOUR;
/// A `[[site.check]]`'s `timeout_ms`: 1 ms .. 60 s (and at most its interval).
pub const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// A `[[site.check]]`'s `rise` and `fall`: 1 .. 100 consecutive results.
pub const MAX_CHECK_RISE_FALL: u64 = 100;
/// `[[site.check]]` tables of one site.
pub const MAX_CHECKS_PER_SITE: usize = 32;

/// `[[site]]` tables in a fleet.
pub const MAX_SITES: usize = 1_000;
/// `[[node]]` tables in a fleet.
pub const MAX_NODES: usize = 5_000;
/// `[[watch]]` tables in a fleet.
pub const MAX_WATCHES: usize = 1_000;
/// `[[anycast]]` tables in a fleet.
pub const MAX_ANYCAST: usize = 1_000;
/// `[[notify]]` tables in a fleet.
pub const MAX_NOTIFIERS: usize = 64;
/// A `[[notify]]`'s `timeout_ms`: one call of a notifier.
pub const MAX_NOTIFY_TIMEOUT: Duration = Duration::from_secs(300);
/// A `[[notify]]`'s `retries`.
pub const MAX_NOTIFY_RETRIES: u64 = 100;
/// A `[[notify]]`'s `backoff_ms`.
pub const MAX_NOTIFY_BACKOFF: Duration = HOUR;
/// `[[alarm_source]]` tables in a fleet.
pub const MAX_ALARM_SOURCES: usize = 256;
/// Sites one `[[alarm_source]]` may speak for.
pub const MAX_ALARM_SOURCE_SITES: usize = 64;
/// An exec `[[alarm_source]]`'s `interval_s`: more than 0 .. 1 h.
pub const MAX_ALARM_POLL_INTERVAL: Duration = HOUR;
/// An exec `[[alarm_source]]`'s `timeout_s`: more than 0 .. 60 s (and at most its interval).
pub const MAX_ALARM_POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// Step tables of one watch: prechecks, steps, compensations, post and isolation steps.
pub const MAX_STEPS_PER_WATCH: usize = 1_000;

/// How the fleet file writes a duration key: `_ms` keys in milliseconds, `_s` keys in
/// seconds.
#[derive(Clone, Copy, Debug)]
pub(super) enum Unit {
    Millis,
    Secs,
}

/// `key = written` (which is `value`) is above `max`; `None` when within. The limit is shown
/// in the key's own unit and in words.
pub(super) fn duration_above(
    key: &str,
    written: impl std::fmt::Display,
    value: Duration,
    max: Duration,
    unit: Unit,
) -> Option<String> {
    (value > max).then(|| {
        let limit = match unit {
            Unit::Millis => max.as_millis().to_string(),
            Unit::Secs => max.as_secs_f64().to_string(),
        };
        format!(
            "{key} = {written} is above the limit of {limit} ({}); use a value up to that",
            human(max)
        )
    })
}

/// `key = value` is above `max`; `None` when within.
pub(super) fn count_above(key: &str, value: u64, max: u64) -> Option<String> {
    (value > max).then(|| format!("{key} = {value} is above the limit of {max}"))
}

/// A fleet with more than `max` tables of one kind.
pub(super) fn too_many(table: &str, count: usize, max: usize) -> Option<String> {
    (count > max).then(|| {
        format!(
            "{table}: {count} tables, above the limit of {max}; split the fleet into \
             independent fleets"
        )
    })
}

/// "60 s", "1 h", "30 d", "500 ms".
fn human(d: Duration) -> String {
    if d >= DAY && d.as_secs() % DAY.as_secs() == 0 {
        format!("{} d", d.as_secs() / DAY.as_secs())
    } else if d >= HOUR && d.as_secs() % HOUR.as_secs() == 0 {
        format!("{} h", d.as_secs() / HOUR.as_secs())
    } else if d >= SECOND && d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_shown_in_the_largest_whole_unit() {
        assert_eq!(human(MAX_HOLD_DOWN), "30 d");
        assert_eq!(human(MAX_STEP_TIMEOUT), "1 h");
        assert_eq!(human(MAX_PROBE_INTERVAL), "60 s");
        assert_eq!(human(Duration::from_millis(1500)), "1500 ms");
    }

    #[test]
    fn the_largest_probe_budget_keeps_the_default_revote_within_its_limit() {
        let budget = MAX_PROBE_INTERVAL * MAX_PROBE_RETRIES as u32 + MAX_PROBE_TIMEOUT;
        assert!(budget * 5 <= MAX_REVOTE_AFTER);
        assert!(MAX_SELF_FENCE_AFTER + budget < MAX_TAKEOVER_DELAY);
    }
}
