use super::tests::{assert_problem, base_with, problems, syntax, BASE};
use super::*;
use crate::actuators::ActuatorKind;
use crate::core::pipeline::OnFailure;

const WATCH_A: &str = "by = [\"b\", \"c\"]\n";

/// A plan for the watch on a with every phase; probe budget of `BASE` is 600 ms.
const PLAN: &str = r#"takeover_delay_s = 3
self_fence_after_s = 2
[[watch.pipeline.precheck]]
name = "backup-answers"
kind = "http"
timeout_s = 5
retries = 1
url = "http://127.0.0.1:9000/health"
[[watch.pipeline.step]]
name = "withdraw-a"
kind = "bgp"
timeout_s = 5
retries = 2
backoff_ms = 500
on_failure = "compensate"
action = "withdraw"
backend = "gobgp"
prefixes = ["198.19.255.0/24"]
[watch.pipeline.step.compensation]
name = "reannounce-a"
kind = "bgp"
timeout_s = 5
action = "announce"
backend = "gobgp"
prefixes = ["198.19.255.0/24"]
[[watch.pipeline.post]]
name = "page"
kind = "exec"
timeout_s = 0.5
argv = ["/bin/true"]
[[watch.isolation]]
name = "self-withdraw"
kind = "bgp"
timeout_s = 2
action = "withdraw"
backend = "gobgp"
prefixes = ["198.19.255.0/24"]
"#;

/// `BASE` with `PLAN` (after one exact replacement in it) on the watch of a.
fn with_plan(from: &str, to: &str) -> String {
    assert!(PLAN.contains(from), "PLAN lacks {from:?}");
    base_with(WATCH_A, &format!("{WATCH_A}{}", PLAN.replacen(from, to, 1)))
}

fn plan_of(fleet: &Fleet) -> &FailoverPlan {
    fleet
        .watch(&"a".into())
        .and_then(|w| w.plan.as_ref())
        .expect("a plan on the watch of a")
}

#[test]
fn a_watch_without_a_plan_has_verdicts_only() {
    let fleet = Fleet::parse(BASE).expect("valid");
    assert!(fleet.watches.iter().all(|w| w.plan.is_none()));
}

#[test]
fn a_full_plan_is_read_into_the_pipeline_the_isolation_steps_and_the_params() {
    let fleet = Fleet::parse(&with_plan("", "")).expect("valid");
    assert_eq!(fleet.warnings(), Vec::<String>::new());
    let plan = plan_of(&fleet);
    assert_eq!(plan.takeover_delay, Duration::from_secs(3));
    assert_eq!(plan.self_fence_after, Duration::from_secs(2));
    let p = &plan.pipeline;
    assert_eq!(p.prechecks.len(), 1);
    assert_eq!(p.prechecks[0].retries, 1);
    assert_eq!(p.prechecks[0].actuator, ActuatorKind::Http);
    let step = &p.steps[0];
    assert_eq!(step.name, "withdraw-a");
    assert_eq!(step.actuator, ActuatorKind::Bgp);
    assert_eq!(step.timeout, Duration::from_secs(5));
    assert_eq!(step.retries, 2);
    assert_eq!(step.backoff, Duration::from_millis(500));
    assert_eq!(step.on_failure, OnFailure::Compensate);
    let comp = step.compensation.as_ref().expect("a compensation");
    assert_eq!(comp.name, "reannounce-a");
    assert_eq!(comp.on_failure, OnFailure::Abort);
    assert_eq!(comp.backoff, Duration::from_secs(1));
    assert_eq!(p.post[0].timeout, Duration::from_millis(500));
    assert_eq!(plan.isolation[0].name, "self-withdraw");
    let names: Vec<&str> = plan.params.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "backup-answers",
            "page",
            "reannounce-a",
            "self-withdraw",
            "withdraw-a"
        ]
    );
    assert_eq!(
        plan.params["withdraw-a"],
        serde_json::json!({
            "action": "withdraw",
            "backend": "gobgp",
            "prefixes": ["198.19.255.0/24"],
        })
    );
}

#[test]
fn an_unknown_key_in_the_pipeline_table_is_a_syntax_error() {
    let text = with_plan("[[watch.pipeline.post]]", "[[watch.pipeline.postt]]");
    let m = syntax(&text);
    assert!(
        m.contains("postt") && m.contains("`precheck`, `step`, `post`"),
        "{m}"
    );
}

#[test]
fn an_unknown_kind_is_refused_with_the_known_ones() {
    assert_problem(
        &with_plan("kind = \"bgp\"", "kind = \"pigeon\""),
        "watch on a: pipeline.step[0] \"withdraw-a\": unknown step kind \"pigeon\" (kind); \
         use one of exec, http, bgp, vpn",
    );
}

#[test]
fn actuator_param_errors_are_reported_with_the_step() {
    assert_problem(
        &with_plan("action = \"withdraw\"", "action = \"wihtdraw\""),
        "watch on a: pipeline.step[0] \"withdraw-a\": bgp step: `action` is \"wihtdraw\"",
    );
    assert_problem(
        &with_plan(
            "url = \"http://127.0.0.1:9000/health\"",
            "url = \"ftp://x\"",
        ),
        "watch on a: pipeline.precheck[0] \"backup-answers\": http step: `url`",
    );
    assert_problem(
        &with_plan("action = \"announce\"", "action = 1"),
        "watch on a: pipeline.step[0].compensation \"reannounce-a\": bgp step: `action`",
    );
}

#[test]
fn a_misspelt_common_key_is_an_unknown_param_listing_the_common_keys() {
    let p = problems(&with_plan(
        "timeout_s = 5\nretries = 2",
        "timeout = 5\nretries = 2",
    ));
    assert!(
        p.iter().any(|l| l.contains("unknown key `timeout`")
            && l.contains("the step's own keys are name, kind, timeout_s")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("\"withdraw-a\": timeout_s is missing")),
        "{p:#?}"
    );
}

#[test]
fn common_keys_are_checked_for_type_and_range() {
    assert_problem(
        &with_plan("timeout_s = 5\nretries = 2", "timeout_s = 0\nretries = 2"),
        "pipeline.step[0] \"withdraw-a\": timeout_s = 0 must be a number of seconds greater than 0",
    );
    assert_problem(
        &with_plan("retries = 2", "retries = -1"),
        "\"withdraw-a\": retries = -1 must be a whole number",
    );
    assert_problem(
        &with_plan("backoff_ms = 500", "backoff_ms = \"fast\""),
        "\"withdraw-a\": backoff_ms = \"fast\"",
    );
    assert_problem(
        &with_plan("on_failure = \"compensate\"", "on_failure = \"retry\""),
        "\"withdraw-a\": on_failure = \"retry\" is not known",
    );
    assert_problem(
        &with_plan("name = \"page\"", "name = \"pa/ge\""),
        "pipeline.post[0]: name \"pa/ge\" is empty or contains '/'",
    );
    assert_problem(
        &with_plan("name = \"page\"\n", ""),
        "pipeline.post[0]: name is missing",
    );
}

#[test]
fn compensations_and_on_failure_belong_to_pipeline_steps_only() {
    assert_problem(
        &with_plan(
            "argv = [\"/bin/true\"]",
            "argv = [\"/bin/true\"]\ncompensation = { name = \"x\" }",
        ),
        "pipeline.post[0] \"page\": compensation is only run for [[watch.pipeline.step]]",
    );
    assert_problem(
        &with_plan("retries = 1", "retries = 1\non_failure = \"continue\""),
        "pipeline.precheck[0] \"backup-answers\": on_failure = \"continue\" has no effect here",
    );
}

#[test]
fn step_names_are_unique_across_every_phase_of_a_plan() {
    assert_problem(
        &with_plan("name = \"page\"", "name = \"reannounce-a\""),
        "watch on a: pipeline.post[0] \"reannounce-a\": duplicate step name, already used by \
         pipeline.step[0].compensation",
    );
    assert_problem(
        &with_plan("name = \"self-withdraw\"", "name = \"backup-answers\""),
        "isolation[0] \"backup-answers\": duplicate step name, already used by \
         pipeline.precheck[0]",
    );
}

#[test]
fn the_takeover_must_wait_for_the_isolated_site_to_withdraw_itself() {
    // probe budget 600 ms: 2 + 0.6 = 2.6 s
    let p = problems(&with_plan("takeover_delay_s = 3", "takeover_delay_s = 2.6"));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("watch on a: takeover_delay_s = 2.6 s must exceed self_fence_after_s (2 s) plus the probe budget (0.6 s")
            && p[0].contains("= 2.6 s")
            && p[0].contains("split brain"),
        "{}",
        p[0]
    );
    let ok = with_plan("takeover_delay_s = 3", "takeover_delay_s = 2.7");
    assert_eq!(
        plan_of(&Fleet::parse(&ok).expect("2.7 > 2.6")).takeover_delay,
        Duration::from_millis(2700)
    );
}

#[test]
fn both_delays_are_required_with_a_plan_and_refused_without_one() {
    assert_problem(
        &with_plan("self_fence_after_s = 2\n", ""),
        "watch on a: self_fence_after_s is missing",
    );
    assert_problem(
        &base_with(WATCH_A, &format!("{WATCH_A}takeover_delay_s = 5\n")),
        "watch on a: takeover_delay_s is set but the watch has no [watch.pipeline]",
    );
    assert_problem(
        &base_with(WATCH_A, &format!("{WATCH_A}[watch.pipeline]\n")),
        "watch on a: [watch.pipeline] has no step",
    );
}

#[test]
fn a_plan_on_a_manual_watch_is_allowed_with_a_warning() {
    let text = with_plan(
        "takeover_delay_s",
        "single_vantage = \"manual\"\ntakeover_delay_s",
    );
    let fleet = Fleet::parse(&text).expect("valid");
    let w = fleet.warnings();
    assert!(
        w.iter().any(
            |l| l.contains("watch on a: has a failover plan but single_vantage = manual")
                && l.contains("waits for an operator")
        ),
        "{w:#?}"
    );
}

#[test]
fn a_plan_without_isolation_steps_is_allowed_with_a_warning() {
    let cut = PLAN.find("[[watch.isolation]]").expect("isolation in PLAN");
    let text = base_with(WATCH_A, &format!("{WATCH_A}{}", &PLAN[..cut]));
    let fleet = Fleet::parse(&text).expect("valid");
    assert!(plan_of(&fleet).isolation.is_empty());
    let w = fleet.warnings();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("no [[watch.isolation]] step") && w[0].contains("keeps announcing"),
        "{}",
        w[0]
    );
}

#[test]
fn every_plan_problem_is_reported_after_the_fleet_problems() {
    let text = with_plan("takeover_delay_s = 3", "takeover_delay_s = 1")
        .replacen("kind = \"bgp\"", "kind = \"pigeon\"", 1)
        .replacen("name = \"page\"", "name = \"withdraw-a\"", 1)
        .replacen("[[site]]\nid = \"c\"", "[[site]]\nid = \"C\"", 1);
    let p = problems(&text);
    let at = |needle: &str| {
        p.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {p:#?}"))
    };
    let site = at("not a valid DNS label");
    assert!(site < at("unknown step kind"));
    at("duplicate step name");
    at("split brain");
}

#[test]
fn the_example_plans_pass() {
    for (name, text, steps) in [
        (
            "dr-openstack",
            include_str!("../../config/dr-openstack.toml"),
            6,
        ),
        (
            "gmpls-migration",
            include_str!("../../config/gmpls-migration.toml"),
            5,
        ),
    ] {
        let fleet = Fleet::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(fleet.warnings(), Vec::<String>::new(), "{name}");
        let plan = plan_of(&fleet);
        assert_eq!(plan.pipeline.steps.len(), steps, "{name}");
        assert!(!plan.isolation.is_empty(), "{name}");
        assert!(fleet.watch(&"b".into()).is_some_and(|w| w.plan.is_none()));
    }
}

#[test]
fn self_fencing_must_span_two_status_intervals() {
    let p = problems(&with_plan(
        "self_fence_after_s = 2",
        "self_fence_after_s = 1.5",
    ));
    assert!(
        p.iter()
            .any(|m| m.contains("self_fence_after_s = 1.5 s is shorter than two status intervals")),
        "{p:#?}"
    );
}
