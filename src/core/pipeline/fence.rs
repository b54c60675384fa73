//! The fences of a run: steps that put the old primary out of action (power it off, stop its
//! router) before any step takes over its identity, each followed by a confirmation, a read
//! that must find the fenced state ("PowerState": "Off", the prefix gone from an observer
//! router). The confirmation, not the fence action, decides: a fence action that failed
//! against a site that is already dark (its power controller unreachable) is still confirmed
//! when the read finds the site fenced, and one that reported success is not trusted until the
//! read agrees. An unconfirmed fence ends the run before its first step, unless an operator
//! forced the run: then the run goes on, and the journal entry of the last read says so.
//!
//! Pure, like the rest of the pipeline: the reads are actuator calls the driver makes.

use super::{Cursor, Phase, Pipeline, RunOutcome, Status, StepRef};

/// A fence or its confirmation: not judged by the anycast rule (a fence takes the old
/// primary's announcement away before anyone else announces, on purpose).
pub fn is_fence(step: StepRef) -> bool {
    matches!(step.phase, Phase::Fence | Phase::Confirm)
}

/// Put before the detail of the last failed read of a forced run's confirmation, in the
/// journal (on its first line, which REST shows to every reader): why the run went on.
pub(super) const FORCED_NOTE: &str =
    "not confirmed, and the run was forced, so it goes on past the unconfirmed fence";

impl Pipeline {
    /// The fence action at `r` is over, done or failed: its confirmation reads next.
    pub(super) fn after_fence(&mut self, r: StepRef) -> Cursor {
        if self.spec.fences[r.index].confirm.is_some() {
            Cursor::At(StepRef::new(Phase::Confirm, r.index), Status::Ready)
        } else {
            // The fleet file refuses a fence without a confirmation; a spec built otherwise
            // runs it as a plain step.
            self.first_from(Phase::Fence, r.index + 1)
        }
    }

    /// The confirmation of fence `r.index` read the fenced state (`ok`), or did not after all
    /// its reads: the run stops here, unless it was forced.
    pub(super) fn after_confirm(&mut self, r: StepRef, ok: bool, detail: String) -> Cursor {
        if ok {
            return self.first_from(Phase::Fence, r.index + 1);
        }
        if self.forced {
            self.continued.push(r);
            return self.first_from(Phase::Fence, r.index + 1);
        }
        let fence = &self.spec.fences[r.index];
        let reads = self.records.get(&r).map_or(0, |rec| rec.attempts);
        let action = StepRef::new(Phase::Fence, r.index);
        let acted = match self.records.get(&action) {
            Some(rec) if rec.ok => "the fence action reported success",
            Some(_) => "the fence action failed",
            None => "the fence action did not run",
        };
        Cursor::Done(RunOutcome::Aborted {
            step: r,
            detail: super::cap_detail(format!(
                "fence \"{}\" not confirmed after {reads} read{} ({acted}); no takeover step \
                 was started (force the run to go on without the confirmation); last read: \
                 {detail}",
                fence.name,
                if reads == 1 { "" } else { "s" },
            )),
        })
    }
}
