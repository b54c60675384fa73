//! How a run ended, and the one line operators read about it.

use super::StepRef;
use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunOutcome {
    /// Every step finished ok or failed with `Continue` (listed), and the post steps ran.
    /// Failed post steps are listed but do not make the failover a failure: the service has
    /// moved.
    Succeeded {
        continued: Vec<StepRef>,
        post_failed: Vec<StepRef>,
    },
    /// A precheck failed after its retries; no step was started.
    PrecheckFailed { step: StepRef, detail: String },
    /// A step with `Abort` failed after its retries, or a fence was not confirmed (`step` is
    /// then its `confirm/N`); later steps were not started and nothing was undone.
    Aborted { step: StepRef, detail: String },
    /// A step with `Compensate` failed; the compensations ran newest first. Those that failed
    /// too are listed: their steps may still be in effect.
    Compensated {
        step: StepRef,
        detail: String,
        compensation_failed: Vec<StepRef>,
    },
    /// An automatic run given up before its first step, because its verdict was replaced
    /// meanwhile: nothing was changed, and it holds no hold-down.
    Dropped { detail: String },
}

impl RunOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, RunOutcome::Succeeded { .. })
    }

    /// One line for operators.
    pub fn summary(&self) -> String {
        let list = |v: &[StepRef]| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            RunOutcome::Succeeded {
                continued,
                post_failed,
            } => {
                let mut s = "succeeded".to_string();
                if !continued.is_empty() {
                    s += &format!("; failed but continued past: {}", list(continued));
                }
                if !post_failed.is_empty() {
                    s += &format!(
                        "; post steps failed: {} (the failover itself stands)",
                        list(post_failed)
                    );
                }
                s
            }
            RunOutcome::PrecheckFailed { step, detail } => {
                format!("precheck {step} failed, nothing was changed: {detail}")
            }
            RunOutcome::Aborted { step, detail } if step.phase == super::Phase::Confirm => {
                format!("stopped at the fence ({step}), nothing after it was started: {detail}")
            }
            RunOutcome::Aborted { step, detail } => {
                format!("aborted at {step}, earlier steps stay in effect: {detail}")
            }
            RunOutcome::Dropped { detail } => format!("dropped before its first step: {detail}"),
            RunOutcome::Compensated {
                step,
                detail,
                compensation_failed,
            } => {
                let mut s = format!("{step} failed and earlier steps were compensated: {detail}");
                if !compensation_failed.is_empty() {
                    s += &format!("; compensations failed: {}", list(compensation_failed));
                }
                s
            }
        }
    }
}
