//! `[[watch.pipeline.fence]]` and its confirmation, as check-config reads them.

use super::tests::{assert_problem, problems, BASE};
use super::*;
use crate::actuators::ActuatorKind;
use crate::core::pipeline::Phase;
use std::time::Duration;

const WATCH_A: &str = "[[watch]]\nsite = \"a\"\nby = [\"b\", \"c\"]\n";

const DECL: &str = "[[anycast]]\nprefix = \"198.19.255.0/24\"\nsites = [\"a\", \"b\"]\n";

/// a's route withdrawn at a's router, confirmed gone from an observer; then b announces.
const FENCED: &str = r#"takeover_delay_s = 3
self_fence_after_s = 2
[[watch.pipeline.fence]]
name = "fence-a"
kind = "bgp"
site = "a"
timeout_s = 5
retries = 1
action = "withdraw"
backend = "gobgp"
prefixes = ["198.19.255.0/24"]
[watch.pipeline.fence.confirm]
kind = "bgp"
timeout_s = 2
retries = 20
interval_ms = 250
socket = "/run/bird/observer.ctl"
prefixes = ["198.19.255.0/24"]
protocol = "site_a"
[[watch.pipeline.step]]
name = "announce-b"
kind = "bgp"
site = "b"
timeout_s = 5
action = "announce"
backend = "gobgp"
prefixes = ["198.19.255.0/24"]
"#;

/// `BASE` with the anycast declaration and `FENCED` (one exact replacement in it) on a.
fn fenced(from: &str, to: &str) -> String {
    assert!(FENCED.contains(from), "FENCED lacks {from:?}");
    BASE.replacen(
        WATCH_A,
        &format!("{DECL}{WATCH_A}{}", FENCED.replacen(from, to, 1)),
        1,
    )
}

#[test]
fn a_fence_is_read_with_its_confirmation_before_the_steps() {
    let f = Fleet::parse(&fenced("", "")).unwrap();
    let plan = f.watch(&"a".into()).and_then(|w| w.plan.as_ref()).unwrap();
    let fence = &plan.pipeline.fences[0];
    assert_eq!(fence.name, "fence-a");
    assert_eq!(fence.retries, 1);
    let c = fence.confirm.as_deref().expect("a confirmation");
    assert_eq!(c.name, "fence-a-confirm", "the default name");
    assert_eq!(c.actuator, ActuatorKind::Bgp);
    assert_eq!(
        (c.timeout, c.retries, c.backoff),
        (Duration::from_secs(2), 20, Duration::from_millis(250))
    );
    assert_eq!(
        plan.params["fence-a-confirm"]["protocol"], "site_a",
        "the reader's params are kept by its name"
    );
    // A fence withdraws before anyone announces, on purpose: not judged by the anycast order.
    assert!(plan.bgp_effect("fence-a").is_some());
    assert!(crate::core::pipeline::is_fence(
        crate::core::pipeline::StepRef::new(Phase::Confirm, 0)
    ));
}

#[test]
fn a_fence_without_a_confirmation_is_refused_with_an_example() {
    let start = FENCED.find("[watch.pipeline.fence.confirm]").unwrap();
    let end = FENCED.find("[[watch.pipeline.step]]").unwrap();
    let text = fenced(&FENCED[start..end], "");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.contains("has no [watch.pipeline.fence.confirm] table")),
        "{p:?}"
    );
}

#[test]
fn a_fence_has_no_compensation_and_no_on_failure() {
    assert_problem(
        &fenced("retries = 1\n", "retries = 1\non_failure = \"continue\"\n"),
        "on_failure has no effect on a fence: its confirmation decides",
    );
}

#[test]
fn a_confirmation_polls_at_interval_ms_within_its_limit() {
    assert_problem(
        &fenced("interval_ms = 250", "interval_ms = 600001"),
        "interval_ms = 600001 is above the limit of 600000 (600 s)",
    );
    assert_problem(
        &fenced("interval_ms = 250", "interval_ms = 0"),
        "interval_ms = 0 must be a whole number of milliseconds greater than 0",
    );
    assert_problem(
        &fenced("interval_ms = 250", "backoff_ms = 250"),
        "write interval_ms instead of backoff_ms",
    );
    assert_problem(
        &fenced("retries = 20", "retries = 1001"),
        "retries = 1001 is above the limit of 1000",
    );
}

#[test]
fn a_confirmation_is_checked_as_a_reader_not_as_an_actuator() {
    assert_problem(
        &fenced("protocol = \"site_a\"", "action = \"withdraw\""),
        "bgp confirmation step: unknown key `action`",
    );
    assert_problem(
        &fenced(
            "kind = \"bgp\"\ntimeout_s = 2",
            "kind = \"vpn\"\ntimeout_s = 2",
        ),
        "a confirmation cannot be of kind vpn",
    );
}
