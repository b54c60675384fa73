//! What started a run: the trigger every member keeps in the run's register, from which a
//! member taking the run over rebuilds the same steps. Serialized by variant index on the
//! wire and by name in the store: new triggers go last.

use serde::{Deserialize, Serialize};

/// What started a run; a member taking it over rebuilds the same steps from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunTrigger {
    /// A DOWN verdict: the site's plan.
    Verdict,
    /// `POST /v1/failovers`: the site's plan.
    Manual,
    /// `POST /v1/failbacks`: the compensations of the plan's steps, newest step first.
    Failback,
    /// An alarm of a site whose watch has `on_alarm = "prestage"`: the plan's prestage steps.
    Prestage,
    /// The last alarm of a prestaged site cleared: the compensations of the prestage steps,
    /// newest first.
    Unstage,
    /// An alarm of a site whose watch has `on_alarm = "failover"`: the site's plan.
    Alarm,
}

impl RunTrigger {
    /// An automatic failover (a verdict's, or an alarm's): a second one of the site waits out
    /// hold-down.
    pub fn holds_down(self) -> bool {
        matches!(self, RunTrigger::Verdict | RunTrigger::Alarm)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Verdict => "verdict",
            RunTrigger::Manual => "manual",
            RunTrigger::Failback => "failback",
            RunTrigger::Prestage => "prestage",
            RunTrigger::Unstage => "unstage",
            RunTrigger::Alarm => "alarm",
        }
    }
}
