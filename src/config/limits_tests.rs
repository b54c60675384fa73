//! The fleet file's bounds: each class of bound refused with its key and limit, the largest
//! allowed values accepted.

use super::limits::*;
use super::tests::{assert_problem, base_with, problems, BASE};
use super::*;

const WATCH_A: &str = "by = [\"b\", \"c\"]\n";

/// `BASE` with a one-step plan on the watch of a: `watch` holds the watch's keys, `step`
/// the step's timing keys (and may append further tables).
fn with_plan(watch: &str, step: &str) -> String {
    base_with(
        WATCH_A,
        &format!(
            "{WATCH_A}{watch}\n[[watch.pipeline.step]]\nname = \"promote\"\nkind = \"exec\"\n\
             argv = [\"/bin/true\"]\n{step}\n"
        ),
    )
}

#[test]
fn each_timing_above_its_limit_is_refused_naming_the_key_and_the_limit() {
    for (line, want) in [
        (
            "probe_interval_ms = 60001",
            "timing.probe_interval_ms = 60001 is above the limit of 60000 (60 s)",
        ),
        (
            "probe_timeout_ms = 60001",
            "timing.probe_timeout_ms = 60001 is above the limit of 60000 (60 s)",
        ),
        (
            "retries = 101",
            "timing.retries = 101 is above the limit of 100",
        ),
        (
            "vote_timeout_ms = 60001",
            "timing.vote_timeout_ms = 60001 is above the limit of 60000 (60 s)",
        ),
        (
            "max_vote_rounds = 101",
            "timing.max_vote_rounds = 101 is above the limit of 100",
        ),
        (
            "hold_down_s = 2592001",
            "timing.hold_down_s = 2592001 is above the limit of 2592000 (30 d)",
        ),
        (
            "revote_after_ms = 86400001",
            "timing.revote_after_ms = 86400001 is above the limit of 86400000 (1 d)",
        ),
        (
            "status_interval_ms = 60001",
            "timing.status_interval_ms = 60001 is above the limit of 60000 (60 s)",
        ),
        (
            "probe_interval_ms = 18446744073709551615",
            "timing.probe_interval_ms = 18446744073709551615 is above the limit",
        ),
    ] {
        let p = problems(&format!("[timing]\n{line}\n{BASE}"));
        assert_eq!(p.len(), 1, "{line}: {p:?}");
        assert!(p[0].starts_with(want), "{line}: {p:?}");
    }
}

#[test]
fn the_largest_timings_are_accepted() {
    let text = format!(
        "[timing]\nprobe_interval_ms = 60000\nprobe_timeout_ms = 60000\nretries = 100\n\
         vote_timeout_ms = 60000\nmax_vote_rounds = 100\nhold_down_s = 2592000\n\
         status_interval_ms = 60000\n{BASE}"
    );
    let fleet = Fleet::parse(&text).expect("the largest timings are valid");
    assert_eq!(fleet.timing.probe_budget(), Duration::from_secs(6060));
    assert_eq!(fleet.timing.revote_after, Duration::from_secs(5 * 6060));
}

#[test]
fn step_durations_and_retries_above_their_limits_are_refused() {
    for (step, want) in [
        (
            "timeout_s = 3601",
            "pipeline.step[0] \"promote\": timeout_s = 3601 is above the limit of 3600 (1 h)",
        ),
        (
            "timeout_s = 5\nretries = 1001",
            "pipeline.step[0] \"promote\": retries = 1001 is above the limit of 1000",
        ),
        (
            "timeout_s = 5\nbackoff_ms = 3600001",
            "pipeline.step[0] \"promote\": backoff_ms = 3600001 is above the limit of 3600000",
        ),
    ] {
        let text = with_plan("takeover_delay_s = 3\nself_fence_after_s = 2", step);
        assert_problem(&text, &format!("watch on a: {want}"));
    }
}

#[test]
fn watch_delays_above_their_limits_are_refused() {
    for (watch, want) in [
        (
            "takeover_delay_s = 86401\nself_fence_after_s = 2",
            "watch on a: takeover_delay_s = 86401 is above the limit of 86400 (1 d)",
        ),
        (
            "takeover_delay_s = 86400\nself_fence_after_s = 3601",
            "watch on a: self_fence_after_s = 3601 is above the limit of 3600 (1 h)",
        ),
        (
            "takeover_delay_s = 1e300\nself_fence_after_s = 2",
            "is above the limit of 86400 (1 d)",
        ),
    ] {
        assert_problem(&with_plan(watch, "timeout_s = 5"), want);
    }
}

#[test]
fn the_largest_step_values_are_accepted() {
    let text = with_plan(
        "takeover_delay_s = 86400\nself_fence_after_s = 3600",
        "timeout_s = 3600\nretries = 1000\nbackoff_ms = 3600000",
    );
    let fleet = Fleet::parse(&text).expect("the largest step values are valid");
    let plan = fleet.watch(&"a".into()).unwrap().plan.as_ref().unwrap();
    assert_eq!(plan.pipeline.steps[0].retries, 1000);
    assert_eq!(plan.takeover_delay, MAX_TAKEOVER_DELAY);
}

#[test]
fn too_many_tables_of_a_kind_are_refused_before_anything_else() {
    let mut text = String::from(BASE);
    for i in 0..=MAX_SITES {
        text.push_str(&format!("[[site]]\nid = \"s{i}\"\nkind = \"witness\"\n"));
    }
    let p = problems(&text);
    assert_eq!(
        p,
        [format!(
            "[[site]]: {} tables, above the limit of {MAX_SITES}; split the fleet into \
             independent fleets",
            MAX_SITES + 4
        )]
    );
}

#[test]
fn too_many_steps_in_one_watch_are_refused() {
    let steps: String = (0..=MAX_STEPS_PER_WATCH)
        .map(|i| {
            format!(
                "[[watch.pipeline.post]]\nname = \"p{i}\"\nkind = \"exec\"\ntimeout_s = 1\n\
                 argv = [\"/bin/true\"]\n"
            )
        })
        .collect();
    let text = with_plan(
        "takeover_delay_s = 3\nself_fence_after_s = 2",
        &format!("timeout_s = 5\n{steps}"),
    );
    assert_problem(&text, "above the limit of 1000");
}
