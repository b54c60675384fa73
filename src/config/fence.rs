//! `[[watch.pipeline.fence]]`: steps that put the old primary out of action before the
//! takeover, each with a `[watch.pipeline.fence.confirm]` table: a read that must find the
//! fenced state before the run goes on. A phase of their own (after the prechecks, before the
//! steps) rather than a marker on a step: a plan cannot put a takeover step before its fence,
//! so there is no order to check, and the plan reads in the order it runs. The confirmation
//! has the step keys `name` (default `FENCE-confirm`), `kind`, `timeout_s` (one read),
//! `retries` (reads after the first) and `interval_ms` (between reads, steady, default
//! 1000); its other keys are the reader's (`actuators::confirm`).

use super::limits::{self, Unit};
use super::plan::Builder;
use crate::core::pipeline::StepSpec;
use std::time::Duration;

/// Between two reads of a confirmation, when `interval_ms` is not given.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

impl Builder<'_> {
    /// The fence tables of a pipeline; every problem is pushed.
    pub(super) fn fences(&mut self, tables: Vec<toml::Table>) -> Vec<StepSpec> {
        tables
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| self.fence(&format!("pipeline.fence[{i}]"), t))
            .collect()
    }

    fn fence(&mut self, at: &str, mut table: toml::Table) -> Option<StepSpec> {
        let label = match table.get("name") {
            Some(toml::Value::String(n)) => format!("{at} {n:?}"),
            _ => at.to_string(),
        };
        let before = self.problems_len();
        if table.remove("compensation").is_some() {
            self.problem(format!(
                "{label}: a fence has no compensation: neither an undone run nor a failback \
                 brings the old primary back by itself (bring it back by hand, or add a step \
                 that does to a later step's compensation); remove it"
            ));
        }
        if table.remove("on_failure").is_some() {
            self.problem(format!(
                "{label}: on_failure has no effect on a fence: its confirmation decides (an \
                 unconfirmed fence stops the run unless the run was forced); remove it"
            ));
        }
        let confirm = table.remove("confirm");
        let name = match table.get("name") {
            Some(toml::Value::String(n)) => n.clone(),
            _ => String::new(),
        };
        let spec = self.step(at, table, false, false);
        let confirm = match confirm {
            Some(toml::Value::Table(c)) => self.confirm(&format!("{at}.confirm"), &name, c),
            Some(v) => {
                self.problem(format!(
                    "{label}: confirm must be a table ([watch.pipeline.fence.confirm]), got {}",
                    v.type_str()
                ));
                None
            }
            None => {
                self.problem(format!(
                    "{label}: the fence has no [watch.pipeline.fence.confirm] table; a fence is \
                     only trusted once a read finds the old primary fenced, e.g. kind = \
                     \"http\", url = \"https://bmc-a/redfish/v1/Systems/1\", pointer = \
                     \"/PowerState\", expect = \"Off\", timeout_s = 5, retries = 10"
                ));
                None
            }
        };
        if self.problems_len() > before {
            return None;
        }
        let mut spec = spec?;
        spec.confirm = Some(Box::new(confirm?));
        Some(spec)
    }

    fn confirm(&mut self, at: &str, fence: &str, mut table: toml::Table) -> Option<StepSpec> {
        let label = format!("{at} of {fence:?}");
        if !table.contains_key("name") && !fence.is_empty() {
            table.insert(
                "name".into(),
                toml::Value::String(format!("{fence}-confirm")),
            );
        }
        if table.contains_key("backoff_ms") {
            self.problem(format!(
                "{label}: a confirmation reads at a steady interval: write interval_ms instead \
                 of backoff_ms"
            ));
            table.remove("backoff_ms");
        }
        let interval = match table.remove("interval_ms") {
            None => Some(DEFAULT_INTERVAL),
            Some(toml::Value::Integer(n)) if n > 0 => {
                let d = Duration::from_millis(n as u64);
                match limits::duration_above(
                    "interval_ms",
                    n,
                    d,
                    limits::MAX_CONFIRM_INTERVAL,
                    Unit::Millis,
                ) {
                    Some(p) => {
                        self.problem(format!("{label}: {p}"));
                        None
                    }
                    None => Some(d),
                }
            }
            Some(v) => {
                self.problem(format!(
                    "{label}: interval_ms = {v} must be a whole number of milliseconds greater \
                     than 0 (the wait between two reads, default 1000)"
                ));
                None
            }
        };
        self.confirming = true;
        let spec = self.step(at, table, false, false);
        self.confirming = false;
        let mut spec = spec?;
        spec.backoff = interval?;
        Some(spec)
    }
}
