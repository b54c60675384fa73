//! Actuators carry out one failover step against the outside world: run a program, call a
//! controller over HTTP, announce or withdraw a BGP route, bring a WireGuard tunnel up or
//! down. This module owns the step contract (`StepContext` in, `StepOutcome` out), the
//! config-time checks of a step's params and the choice of implementation. An actuator never
//! retries, never decides whether a failover should happen and never panics on bad input: it
//! does what it is told once, reports what happened, and leaves retries and compensation to
//! the pipeline. Every actuator must be idempotent per (site, epoch, step); the context
//! carries the idempotency key so external systems can be too.
//!
//! Dry runs: every step receives `dry_run`. By default an actuator then checks that it could
//! act (tools present, router answering) and changes nothing; `exec` and `http` still run
//! the command or send the request, flagged as a dry run, because only the script or the
//! controller knows what a rehearsal means for it. A step with `dry_run = "skip"` is not run
//! at all during a dry run.

pub use crate::core::actuator_kind::{ActuatorKind, UnknownActuatorKind};
use crate::core::types::SiteId;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod bgp;
mod bgp_params;
pub mod confirm;
pub mod exec;
pub mod http;
pub mod notifier;
pub mod process;
pub mod route_lock;
pub mod url_display;
pub mod vpn;

/// How many bytes of output or response body a `StepOutcome` keeps.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// What a step is asked to do. `params` is the step's table from the fleet file.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// The site being failed over (or fenced).
    pub site: SiteId,
    /// The verdict's epoch; external systems should treat it as a fencing token.
    pub epoch: u64,
    /// The step's name in the pipeline.
    pub step: String,
    /// Stable per (site, epoch, step): a retried step sends the same key.
    pub idempotency_key: String,
    /// Rehearse: check and report, change nothing (see the module docs for exec and http).
    pub dry_run: bool,
    /// The whole step must finish within this; actuators stop their work when it passes.
    pub timeout: Duration,
    /// The step's table from the fleet file.
    pub params: Value,
}

impl StepContext {
    /// The idempotency key the pipeline uses: `site/epoch/step`.
    pub fn key_for(site: &SiteId, epoch: u64, step: &str) -> String {
        format!("{}/{}/{}", site, epoch, step)
    }
}

/// What happened when a step ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    /// The step did what it was asked (or, in a dry run, could have).
    pub ok: bool,
    /// One line for operators: what was done or why it failed.
    pub detail: String,
    /// The last ~4 KiB of stdout+stderr, CLI output or response body.
    pub output_tail: String,
}

impl StepOutcome {
    pub fn ok(detail: impl Into<String>, output_tail: impl Into<String>) -> Self {
        StepOutcome {
            ok: true,
            detail: detail.into(),
            output_tail: tail_str(&output_tail.into()),
        }
    }

    pub fn failed(detail: impl Into<String>, output_tail: impl Into<String>) -> Self {
        StepOutcome {
            ok: false,
            detail: detail.into(),
            output_tail: tail_str(&output_tail.into()),
        }
    }

    fn skipped_dry_run() -> Self {
        StepOutcome::ok("dry run: step skipped (dry_run = \"skip\")", "")
    }
}

/// The boxed future an actuator returns; keeps `Actuator` object safe.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = StepOutcome> + Send + 'a>>;

/// A pluggable step implementation.
pub trait Actuator: Send + Sync {
    /// The step kind this actuator implements.
    fn kind(&self) -> ActuatorKind;
    /// Runs the step once. Never panics; failures are reported in the outcome.
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a>;
}

/// Checks a step's params at config-check time; errors name the key and the fix.
pub fn validate(kind: ActuatorKind, params: &Value) -> Result<(), String> {
    build(kind, params).map(|_| ())
}

/// Builds the actuator for a step.
pub fn build(kind: ActuatorKind, params: &Value) -> Result<Box<dyn Actuator>, String> {
    if !params.is_object() {
        return Err(format!(
            "step params must be a table, got {}",
            type_name(params)
        ));
    }
    Ok(match kind {
        ActuatorKind::Exec => Box::new(exec::ExecActuator::from_params(params)?),
        ActuatorKind::Http => Box::new(http::HttpActuator::from_params(params)?),
        ActuatorKind::Bgp => Box::new(bgp::BgpActuator::from_params(params)?),
        ActuatorKind::Vpn => Box::new(vpn::VpnActuator::from_params(params)?),
    })
}

/// The last `OUTPUT_TAIL_BYTES` of a string, cut on a char boundary.
pub(crate) fn tail_str(s: &str) -> String {
    if s.len() <= OUTPUT_TAIL_BYTES {
        return s.to_string();
    }
    let mut start = s.len() - OUTPUT_TAIL_BYTES;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// What a step keeps of a program's output that arrived in `chunks` (stdout and stderr
/// interleaved): the newest `OUTPUT_TAIL_BYTES` at most, as lossy UTF-8 cut on a char
/// boundary. Router CLIs (birdc, gobgp) are read through this before their answer is judged.
pub fn output_tail<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut tail = Tail::default();
    for chunk in chunks {
        tail.push(chunk);
    }
    tail.into_string()
}

/// A byte ring that keeps only the newest `OUTPUT_TAIL_BYTES`.
#[derive(Default)]
pub(crate) struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * OUTPUT_TAIL_BYTES {
            let cut = self.buf.len() - OUTPUT_TAIL_BYTES;
            self.buf.drain(..cut);
        }
    }

    pub(crate) fn into_string(self) -> String {
        tail_str(&String::from_utf8_lossy(&self.buf))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// Typed access to a step's params with errors that name the key and the fix.
pub(crate) struct Params<'a> {
    kind: &'static str,
    map: &'a serde_json::Map<String, Value>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(kind: &'static str, params: &'a Value) -> Result<Self, String> {
        match params.as_object() {
            Some(map) => Ok(Params { kind, map }),
            None => Err(format!(
                "{kind} step: params must be a table, got {}",
                type_name(params)
            )),
        }
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn err(&self, key: &str, msg: impl std::fmt::Display) -> String {
        format!("{} step: `{key}` {msg}", self.kind)
    }

    /// Rejects keys this kind does not know, so typos do not silently disable a setting.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), String> {
        for key in self.map.keys() {
            if !known.contains(&key.as_str()) {
                return Err(format!(
                    "{} step: unknown key `{key}`: known keys are {}",
                    self.kind,
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => {
                Err(self.err(key, "is empty: give a value or remove the key"))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(key, format!("must be a string, got {}", type_name(v)))),
        }
    }

    pub(crate) fn req_str(&self, key: &str, example: &str) -> Result<String, String> {
        self.opt_str(key)?
            .ok_or_else(|| self.err(key, format!("is missing: add e.g. {key} = {example}")))
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(key, format!("must be true or false, got {}", type_name(v)))),
        }
    }

    pub(crate) fn opt_str_list(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.err(
                        key,
                        format!("must be a list of strings, found {}", type_name(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.err(
                key,
                format!("must be a list of strings, got {}", type_name(v)),
            )),
        }
    }

    /// A table of string values (numbers and booleans are written as text).
    pub(crate) fn opt_str_map(&self, key: &str) -> Result<Vec<(String, String)>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(n) => Ok((k.clone(), n.to_string())),
                    Value::Bool(b) => Ok((k.clone(), b.to_string())),
                    other => Err(self.err(
                        key,
                        format!("value of `{k}` must be a string, got {}", type_name(other)),
                    )),
                })
                .collect(),
            Some(v) => Err(self.err(key, format!("must be a table, got {}", type_name(v)))),
        }
    }

    /// `dry_run = "skip"` means: do not run this step at all during a dry run.
    pub(crate) fn dry_run_skip(&self) -> Result<bool, String> {
        match self.get("dry_run") {
            None => Ok(false),
            Some(Value::String(s)) if s == "skip" => Ok(true),
            Some(Value::String(s)) if s == "run" => Ok(false),
            Some(v) => Err(self.err(
                "dry_run",
                format!(
                    "must be \"skip\" (do not run during a dry run) or \"run\" (the default), got {v}"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let err = "smoke-signal".parse::<ActuatorKind>().unwrap_err();
        assert!(err.to_string().contains("exec, http, bgp, vpn"), "{err}");
    }

    #[test]
    fn every_kind_builds_the_actuator_of_that_kind() {
        let params = [
            json!({"argv": ["true"]}),
            json!({"url": "http://127.0.0.1:9/x"}),
            json!({"action": "withdraw", "prefixes": ["198.19.255.0/24"], "backend": "gobgp"}),
            json!({"interface": "wg0", "action": "down"}),
        ];
        for (kind, params) in ActuatorKind::ALL.into_iter().zip(params) {
            let built = build(kind, &params).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(built.kind(), kind);
        }
    }

    #[test]
    fn params_that_are_not_a_table_are_rejected() {
        let err = validate(ActuatorKind::Exec, &json!(["true"])).unwrap_err();
        assert!(err.contains("must be a table"), "{err}");
    }

    #[test]
    fn tail_keeps_the_newest_bytes_on_a_char_boundary() {
        let s = format!("{}é{}", "a".repeat(10), "b".repeat(OUTPUT_TAIL_BYTES - 1));
        let t = tail_str(&s);
        assert!(t.len() <= OUTPUT_TAIL_BYTES);
        assert!(t.ends_with('b'));
        let mut ring = Tail::default();
        for _ in 0..100 {
            ring.push(&[b'x'; 1000]);
        }
        ring.push(b"END");
        let out = ring.into_string();
        assert_eq!(out.len(), OUTPUT_TAIL_BYTES);
        assert!(out.ends_with("END"));
    }

    #[test]
    fn dry_run_accepts_only_skip_or_run() {
        let err = validate(
            ActuatorKind::Exec,
            &json!({"argv": ["true"], "dry_run": "maybe"}),
        )
        .unwrap_err();
        assert!(
            err.contains("`dry_run`") && err.contains("\"skip\""),
            "{err}"
        );
    }
}
