//! The failover plan of a watch: the pipeline the backup runs after a DOWN verdict, the
//! isolation steps the watched site's own nodes run when they find themselves cut off, and the
//! two delays that keep both from being in effect at once. Each step table holds the common
//! keys (`name`, `kind`, `timeout_s`, `retries`, `backoff_ms`, `on_failure`, `compensation`,
//! and for a bgp step `site`); every other key is a param of the step's actuator and is checked
//! by it.

use super::limits::{self, Unit};
use super::raw::RawPipeline;
use super::{Site, Timing};
use crate::actuators::bgp::BgpParams;
use crate::actuators::ActuatorKind;
use crate::core::alarm::OnAlarm;
use crate::core::anycast::{AnycastPrefix, BgpEffect};
use crate::core::pipeline::{OnFailure, PipelineSpec, StepSpec};
use crate::core::types::SiteId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// What happens when a watch's site is judged DOWN, and how the site fences itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverPlan {
    /// Prechecks, steps (with their compensations) and post steps, run once per verdict.
    pub pipeline: PipelineSpec,
    /// The actuator params of every step, by step name: prechecks, steps, compensations, post
    /// and isolation steps. Step names are unique within a plan.
    pub params: BTreeMap<String, Value>,
    /// Steps the watched site's own nodes run when they are cut from a majority of its
    /// electorate for `self_fence_after` (e.g. withdraw their own prefix).
    pub isolation: Vec<StepSpec>,
    /// How long after the verdict the takeover steps start.
    pub takeover_delay: Duration,
    /// How long a node of the watched site must be cut off before it runs `isolation`.
    pub self_fence_after: Duration,
    /// The fleet's `[[anycast]]` declarations, all of them (the same in every plan of a
    /// fleet): the announcement ledger that the bgp steps are checked against starts from them.
    pub anycast: Vec<AnycastPrefix>,
    /// The effect of every bgp step that has a `site` key, by step name (prechecks, steps,
    /// compensations, post and isolation steps). See `bgp_effect`.
    pub bgp_effects: BTreeMap<String, BgpEffect>,
    /// `[[watch.pipeline.prestage]]`: steps (with compensations) that prepare the move when an
    /// alarm of the site is raised and never cut over (see `core::alarm`).
    pub prestage: Vec<StepSpec>,
    /// What an alarm of the site does (`on_alarm`).
    pub on_alarm: OnAlarm,
}

impl FailoverPlan {
    /// What the step named `step` does to the anycast announcements: its action, its `site`
    /// and its prefixes (normalised). `None` for a step that is not a bgp step or has no
    /// `site` — which check-config allows only when none of its prefixes is declared in
    /// `[[anycast]]`, so no rule applies to it.
    pub fn bgp_effect(&self, step: &str) -> Option<&BgpEffect> {
        self.bgp_effects.get(step)
    }
}

/// The keys of a step table that belong to the step itself, not to its actuator.
pub const STEP_KEYS: &[&str] = &[
    "name",
    "kind",
    "timeout_s",
    "retries",
    "backoff_ms",
    "on_failure",
    "compensation",
    "site",
];

/// The plan parts of one `[[watch]]` as written.
pub(super) struct RawPlan {
    pub(super) takeover_delay_s: Option<f64>,
    pub(super) self_fence_after_s: Option<f64>,
    pub(super) pipeline: Option<RawPipeline>,
    pub(super) isolation: Vec<toml::Table>,
    pub(super) on_alarm: Option<String>,
}

/// Converts and checks the plan of the watch on `site`. Every problem is pushed; the plan is
/// returned only when it has none. `None` without problems: the watch has no plan.
/// `sites` and `anycast` are the fleet's, for the `site` key of bgp steps.
pub(super) fn build_plan(
    site: &str,
    raw: RawPlan,
    timing: &Timing,
    sites: &[Site],
    anycast: &[AnycastPrefix],
    problems: &mut Vec<String>,
) -> Option<FailoverPlan> {
    let before = problems.len();
    let mut b = Builder {
        site,
        problems,
        params: BTreeMap::new(),
        names: BTreeMap::new(),
        sites,
        anycast,
        effects: BTreeMap::new(),
        confirming: false,
    };
    let has_plan = raw.pipeline.is_some() || !raw.isolation.is_empty();
    let on_alarm = match raw.on_alarm.as_deref() {
        None | Some("notify") => OnAlarm::Notify,
        Some("prestage") => OnAlarm::Prestage,
        Some("failover") => OnAlarm::Failover,
        Some(other) => {
            b.problem(format!(
                "on_alarm = {other:?} is not one of \"notify\", \"prestage\", \"failover\""
            ));
            OnAlarm::Notify
        }
    };
    if !has_plan {
        if on_alarm != OnAlarm::Notify {
            b.problem(format!(
                "on_alarm = \"{}\" needs a failover plan: add [watch.pipeline] steps{}",
                on_alarm.as_str(),
                if on_alarm == OnAlarm::Prestage {
                    " and [[watch.pipeline.prestage]] steps"
                } else {
                    ""
                }
            ));
        }
        for (key, value) in [
            ("takeover_delay_s", raw.takeover_delay_s),
            ("self_fence_after_s", raw.self_fence_after_s),
        ] {
            if value.is_some() {
                b.problem(format!(
                    "{key} is set but the watch has no [watch.pipeline] and no \
                     [[watch.isolation]] step; add them or remove {key}"
                ));
            }
        }
        return None;
    }
    let takeover = b.delay(
        "takeover_delay_s",
        raw.takeover_delay_s,
        "2",
        limits::MAX_TAKEOVER_DELAY,
    );
    let fence = b.delay(
        "self_fence_after_s",
        raw.self_fence_after_s,
        "1",
        limits::MAX_SELF_FENCE_AFTER,
    );
    if let Some(p) = step_count(&raw).and_then(|n| {
        limits::too_many(
            "step tables of the watch (prechecks, steps, compensations, post, isolation)",
            n,
            limits::MAX_STEPS_PER_WATCH,
        )
    }) {
        b.problem(p);
        return None;
    }
    let mut pipeline = PipelineSpec::default();
    let mut prestage = Vec::new();
    if let Some(p) = raw.pipeline {
        if p.precheck.is_empty() && p.step.is_empty() && p.post.is_empty() && p.fence.is_empty() {
            b.problem(
                "[watch.pipeline] has no step; add [[watch.pipeline.step]] tables or remove \
                 [watch.pipeline]"
                    .to_string(),
            );
        }
        pipeline.prechecks = b.phase("pipeline.precheck", p.precheck, false);
        pipeline.fences = b.fences(p.fence);
        pipeline.steps = b.phase("pipeline.step", p.step, true);
        pipeline.post = b.phase("pipeline.post", p.post, false);
        prestage = b.phase("pipeline.prestage", p.prestage, true);
    }
    if on_alarm == OnAlarm::Prestage && prestage.is_empty() {
        b.problem(
            "on_alarm = \"prestage\" but the watch has no [[watch.pipeline.prestage]] step; add \
             one or set on_alarm = \"notify\""
                .to_string(),
        );
    }
    let isolation = b.phase("isolation", raw.isolation, false);
    if let (Some(t), Some(f)) = (takeover, fence) {
        let budget = timing.probe_budget();
        if t <= f.saturating_add(budget) {
            b.problem(format!(
                "takeover_delay_s = {} must exceed self_fence_after_s ({}) plus the probe \
                 budget ({}, the time the electorate needs to see {site} DOWN) = {}; \
                 otherwise the backup could announce {site}'s service while a cut-off but \
                 live {site} still announces it (split brain): {site} must have withdrawn \
                 itself before the takeover starts. Raise takeover_delay_s above {} or lower \
                 self_fence_after_s",
                secs(t),
                secs(f),
                secs(budget),
                secs(f.saturating_add(budget)),
                secs(f.saturating_add(budget)),
            ));
        }
    }
    if let Some(f) = fence.filter(|_| !isolation.is_empty()) {
        // A node learns that the electorate still reaches it from the status messages every
        // peer sends each status interval; with less than two of them per window a single
        // late message would fence a healthy site.
        let status = timing.status_interval;
        if f < status.saturating_mul(2) {
            b.problem(format!(
                "self_fence_after_s = {} is shorter than two status intervals ({} each): a node hears each voter of the electorate once per status interval, so one late status message would make a healthy site withdraw itself. Raise self_fence_after_s to at least {} or lower [timing] status_interval_ms",
                secs(f),
                secs(status),
                secs(status.saturating_mul(2)),
            ));
        }
    }
    let params = std::mem::take(&mut b.params);
    let effects = std::mem::take(&mut b.effects);
    let step_at = std::mem::take(&mut b.names);
    if problems.len() > before {
        return None;
    }
    // Only a plan without other problems: a step left out for one would look missing here.
    // Isolation steps are not part of this check (see `check_order`).
    super::anycast::check_order(
        &SiteId(site.to_string()),
        &pipeline,
        &effects,
        anycast,
        &step_at,
        problems,
    );
    if problems.len() > before {
        return None;
    }
    Some(FailoverPlan {
        pipeline,
        params,
        isolation,
        takeover_delay: takeover?,
        self_fence_after: fence?,
        anycast: anycast.to_vec(),
        bgp_effects: effects,
        prestage,
        on_alarm,
    })
}

/// Seconds as written in the file: "2 s", "1.6 s".
fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

pub(super) struct Builder<'a> {
    site: &'a str,
    problems: &'a mut Vec<String>,
    params: BTreeMap<String, Value>,
    /// Step name -> where it was first defined.
    names: BTreeMap<String, String>,
    sites: &'a [Site],
    anycast: &'a [AnycastPrefix],
    /// Step name -> the effect of the bgp steps with a `site`.
    effects: BTreeMap<String, BgpEffect>,
    /// A fence's confirmation is being read: its params are a reader's (see `fence`).
    pub(super) confirming: bool,
}

impl Builder<'_> {
    pub(super) fn problems_len(&self) -> usize {
        self.problems.len()
    }

    pub(super) fn problem(&mut self, message: String) {
        self.problems
            .push(format!("watch on {}: {message}", self.site));
    }

    fn delay(
        &mut self,
        key: &str,
        value: Option<f64>,
        example: &str,
        max: Duration,
    ) -> Option<Duration> {
        let Some(v) = value else {
            self.problem(format!(
                "{key} is missing; a watch with a failover plan needs it, e.g. {key} = {example}"
            ));
            return None;
        };
        // Above the limit before converting: a huge number is too long, not "no duration".
        if v.is_finite() && v > max.as_secs_f64() {
            let over = limits::duration_above(key, v, Duration::MAX, max, Unit::Secs);
            self.problem(over.unwrap_or_default());
            return None;
        }
        let d = Duration::try_from_secs_f64(v).ok();
        let Some(d) = d else {
            self.problem(format!(
                "{key} = {v} is not a duration; give a number of seconds, 0 or more"
            ));
            return None;
        };
        if let Some(p) = limits::duration_above(key, v, d, max, Unit::Secs) {
            self.problem(p);
            return None;
        }
        Some(d)
    }

    /// A step's `key = v` (which is `d`) is above `max`.
    fn above(
        &mut self,
        label: &str,
        key: &str,
        v: &toml::Value,
        d: Duration,
        max: Duration,
        unit: Unit,
    ) {
        if let Some(p) = limits::duration_above(key, v, d, max, unit) {
            self.problem(format!("{label}: {p}"));
        }
    }

    fn phase(&mut self, at: &str, tables: Vec<toml::Table>, compensable: bool) -> Vec<StepSpec> {
        tables
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| self.step(&format!("{at}[{i}]"), t, compensable, compensable))
            .collect()
    }

    /// One step table. `compensable`: it may carry a compensation; `chooses_failure`:
    /// `on_failure` means something for it (only pipeline steps).
    pub(super) fn step(
        &mut self,
        at: &str,
        mut table: toml::Table,
        compensable: bool,
        chooses_failure: bool,
    ) -> Option<StepSpec> {
        let before = self.problems.len();
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) if !s.is_empty() && !s.contains('/') => Some(s),
            Some(toml::Value::String(s)) => {
                self.problem(format!(
                    "{at}: name {s:?} is empty or contains '/'; step names go into idempotency \
                     keys (site/epoch/phase/index/name), use e.g. name = \"promote-volumes\""
                ));
                None
            }
            Some(v) => {
                self.problem(format!(
                    "{at}: name must be a string, got {}; use e.g. name = \"promote-volumes\"",
                    v.type_str()
                ));
                None
            }
            None => {
                self.problem(format!(
                    "{at}: name is missing; add e.g. name = \"promote-volumes\" (unique within \
                     the watch)"
                ));
                None
            }
        };
        let label = match &name {
            Some(n) => format!("{at} {n:?}"),
            None => at.to_string(),
        };
        if let Some(n) = &name {
            if let Some(first) = self.names.get(n) {
                let first = first.clone();
                self.problem(format!(
                    "{label}: duplicate step name, already used by {first}; give every step of \
                     a watch (prechecks, steps, compensations, post, isolation) its own name — \
                     it keys the journal and the actuator's idempotency key"
                ));
            } else {
                self.names.insert(n.clone(), at.to_string());
            }
        }
        let kind = match table.remove("kind") {
            Some(toml::Value::String(k)) => match k.parse::<ActuatorKind>() {
                Ok(kind) => Some(kind),
                Err(_) => {
                    self.problem(format!(
                        "{label}: unknown step kind {k:?} (kind); use one of {}",
                        ActuatorKind::allowed()
                    ));
                    None
                }
            },
            Some(v) => {
                self.problem(format!(
                    "{label}: kind must be a string, got {}; use one of {}",
                    v.type_str(),
                    ActuatorKind::allowed()
                ));
                None
            }
            None => {
                self.problem(format!(
                    "{label}: kind is missing; add kind = one of {}",
                    ActuatorKind::allowed()
                ));
                None
            }
        };
        // `site`: whose announcement a bgp step changes; a step key, not an actuator param.
        let site_given = table.contains_key("site");
        let site = match table.remove("site") {
            None => None,
            Some(_) if self.confirming => {
                self.problem(format!(
                    "{label}: site is read only by bgp steps that change an announcement; a \
                     confirmation only reads, remove it"
                ));
                None
            }
            Some(_) if kind.is_some_and(|k| k != ActuatorKind::Bgp) => {
                self.problem(format!(
                    "{label}: site is read only by bgp steps (the site whose announcement the \
                     step changes); remove it from this {} step",
                    kind.map_or("", ActuatorKind::as_str)
                ));
                None
            }
            Some(toml::Value::String(s)) => {
                let id = SiteId(s);
                if !self.sites.iter().any(|k| k.id == id) {
                    self.problem(format!(
                        "{label}: site \"{id}\" is not defined; use one of {} (the [[site]] ids)",
                        super::list(&self.sites.iter().map(|k| &k.id).collect::<Vec<_>>())
                    ));
                    None
                } else {
                    Some(id)
                }
            }
            Some(v) => {
                self.problem(format!(
                    "{label}: site must be a string naming a [[site]], got {}; use e.g. \
                     site = \"b\"",
                    v.type_str()
                ));
                None
            }
        };
        let timeout = match table.remove("timeout_s") {
            Some(v) => match seconds(&v) {
                Some(d) if d > limits::MAX_STEP_TIMEOUT => {
                    self.above(
                        &label,
                        "timeout_s",
                        &v,
                        d,
                        limits::MAX_STEP_TIMEOUT,
                        Unit::Secs,
                    );
                    None
                }
                Some(d) if !d.is_zero() => Some(d),
                _ => {
                    self.problem(format!(
                        "{label}: timeout_s = {v} must be a number of seconds greater than 0; \
                         an attempt that may not run at all always fails"
                    ));
                    None
                }
            },
            None => {
                self.problem(format!(
                    "{label}: timeout_s is missing; add how long one attempt may run, e.g. \
                     timeout_s = 10"
                ));
                None
            }
        };
        let retries = match table.remove("retries") {
            None => 0,
            Some(toml::Value::Integer(n)) if n > limits::MAX_STEP_RETRIES as i64 => {
                let p = limits::count_above("retries", n as u64, limits::MAX_STEP_RETRIES);
                self.problem(format!("{label}: {}", p.unwrap_or_default()));
                0
            }
            Some(toml::Value::Integer(n)) if n >= 0 => n as u32,
            Some(v) => {
                self.problem(format!(
                    "{label}: retries = {v} must be a whole number, 0 or more (attempts after \
                     the first)"
                ));
                0
            }
        };
        let backoff = match table.remove("backoff_ms") {
            None => Duration::from_secs(1),
            Some(toml::Value::Integer(n)) if n >= 0 => {
                let d = Duration::from_millis(n as u64);
                if d > limits::MAX_STEP_BACKOFF {
                    let v = toml::Value::Integer(n);
                    self.above(
                        &label,
                        "backoff_ms",
                        &v,
                        d,
                        limits::MAX_STEP_BACKOFF,
                        Unit::Millis,
                    );
                }
                d
            }
            Some(v) => {
                self.problem(format!(
                    "{label}: backoff_ms = {v} must be a whole number of milliseconds, 0 or \
                     more (default 1000)"
                ));
                Duration::from_secs(1)
            }
        };
        let on_failure = match table.remove("on_failure") {
            None => OnFailure::Abort,
            Some(v) if !chooses_failure => {
                self.problem(format!(
                    "{label}: on_failure = {v} has no effect here; only [[watch.pipeline.step]] \
                     entries choose what their failure means (a failed precheck stops the run \
                     before anything changes, failed post and isolation steps are reported) — \
                     remove it"
                ));
                OnFailure::Abort
            }
            Some(toml::Value::String(s)) if s == "abort" => OnFailure::Abort,
            Some(toml::Value::String(s)) if s == "continue" => OnFailure::Continue,
            Some(toml::Value::String(s)) if s == "compensate" => OnFailure::Compensate,
            Some(v) => {
                self.problem(format!(
                    "{label}: on_failure = {v} is not known; use \"abort\" (stop, undo nothing), \
                     \"continue\" (go on with the next step) or \"compensate\" (undo the steps \
                     done, newest first)"
                ));
                OnFailure::Abort
            }
        };
        let compensation = match table.remove("compensation") {
            None => None,
            Some(_) if !compensable => {
                self.problem(format!(
                    "{label}: compensation is only run for [[watch.pipeline.step]] entries \
                     (a compensation has none of its own); remove it"
                ));
                None
            }
            Some(toml::Value::Table(t)) => self
                .step(&format!("{at}.compensation"), t, false, false)
                .map(Box::new),
            Some(v) => {
                self.problem(format!(
                    "{label}: compensation must be a table ([{}.compensation]), got {}",
                    "watch.pipeline.step",
                    v.type_str()
                ));
                None
            }
        };
        let params = Value::Object(table.into_iter().map(|(k, v)| (k, to_json(v))).collect());
        let mut effect = None;
        // A bgp step's params are read once, into the value its effect is taken from.
        let checked = match kind {
            Some(k) if self.confirming => {
                Some(crate::actuators::confirm::validate(k, &params).map(|()| None))
            }
            Some(ActuatorKind::Bgp) => Some(BgpParams::from_params(&params).map(Some)),
            Some(k) => Some(crate::actuators::validate(k, &params).map(|()| None)),
            None => None,
        };
        match checked {
            Some(Err(e)) => {
                let hint = if e.contains("unknown key") && self.confirming {
                    " (the confirmation's own keys are name, kind, timeout_s, retries, \
                     interval_ms)"
                        .to_string()
                } else if e.contains("unknown key") {
                    format!(" (the step's own keys are {})", STEP_KEYS.join(", "))
                } else {
                    String::new()
                };
                self.problem(format!("{label}: {e}{hint}"));
            }
            // A `site` refused above is not reported missing as well.
            Some(Ok(Some(bgp))) if site.is_some() || !site_given => {
                let at = format!("watch on {}: {label}", self.site);
                effect = super::anycast::bgp_step_effect(
                    &at,
                    &bgp,
                    site.as_ref(),
                    self.anycast,
                    self.problems,
                );
            }
            Some(Ok(_)) | None => {}
        }
        if self.problems.len() > before {
            return None;
        }
        let (name, kind, timeout) = (name?, kind?, timeout?);
        if let Some(e) = effect {
            self.effects.insert(name.clone(), e);
        }
        self.params.insert(name.clone(), params);
        Some(StepSpec {
            name,
            actuator: kind,
            timeout,
            retries,
            backoff,
            on_failure,
            compensation,
            confirm: None,
        })
    }
}

/// How many step tables a watch has, compensations included; `None` without any.
fn step_count(raw: &RawPlan) -> Option<usize> {
    let with_compensations = |tables: &[toml::Table]| {
        tables.len()
            + tables
                .iter()
                .filter(|t| t.contains_key("compensation"))
                .count()
    };
    let pipeline = raw.pipeline.as_ref().map_or(0, |p| {
        // A fence counts twice: its action and its confirmation.
        with_compensations(&p.precheck)
            + with_compensations(&p.step)
            + with_compensations(&p.post)
            + with_compensations(&p.prestage)
            + 2 * p.fence.len()
    });
    Some(pipeline + raw.isolation.len()).filter(|n| *n > 0)
}

pub(super) fn seconds(v: &toml::Value) -> Option<Duration> {
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).ok().map(Duration::from_secs),
        toml::Value::Float(f) => Duration::try_from_secs_f64(*f).ok(),
        _ => None,
    }
}

/// A TOML value as the JSON the actuators read. Dates become strings.
pub(super) fn to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(n) => Value::from(n),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
    }
}
