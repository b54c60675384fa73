//! The simulator's stand-in actuator: every `Action::StartStep` becomes one attempt with a
//! drawn duration and outcome, and its effect (if any) is recorded in the world with its site,
//! run, step, idempotency key, fencing term, attempt and times. It behaves like the real ones
//! where that matters for safety: a live node's attempt is killed at the step's timeout (the
//! exec actuator kills the process group), an attempt whose key already took effect acts no
//! more (the recipes check state first), and an attempt whose node crashed goes on to its end,
//! unsupervised, and may still take effect. It never decides anything for the core.

use crate::core::node::{StartStep, StepDone, StepPurpose};
use crate::core::types::Time;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How attempts behave, drawn per seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepProfile {
    /// Probability that an attempt fails (its work is done but reports an error, no effect).
    pub fail: f64,
    /// Probability that an attempt's work outlasts the step timeout.
    pub slow: f64,
}

impl Default for StepProfile {
    fn default() -> StepProfile {
        StepProfile {
            fail: 0.1,
            slow: 0.1,
        }
    }
}

/// One attempt of a step, as the world saw it.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub node: usize,
    pub incarnation: u64,
    pub step: StartStep,
    pub start: Time,
    /// When the work would be done if nothing stops it.
    pub work_end: Time,
    /// When the process ends: the work's end, or the kill at the step timeout.
    pub end: Time,
    /// The work succeeds when it runs to its end.
    pub succeeds: bool,
    /// The key had taken effect before this attempt began: it only reports success.
    pub deduped: bool,
    /// The node that started it crashed: nobody supervises or hears it any more.
    pub orphaned: bool,
    pub ended: bool,
    /// Overlapped another attempt of its key in a way the world tolerates (a known core
    /// defect, counted): the second of the two to finish acts no more.
    pub tolerated: bool,
}

/// One effect in the world: a step that changed something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    pub attempt: usize,
    pub node: usize,
    pub site: crate::core::types::SiteId,
    pub run: u64,
    pub name: String,
    pub idempotency_key: String,
    pub term: u64,
    pub attempt_no: u32,
    pub purpose: StepPurpose,
    pub start: Time,
    pub end: Time,
}

/// Every attempt and effect of a world.
#[derive(Default)]
pub struct Actuator {
    pub profile: StepProfile,
    pub attempts: Vec<Attempt>,
    pub effects: Vec<Effect>,
    /// Run keys that took effect.
    done: BTreeSet<String>,
    /// Running attempts of run steps by key (for the overlap check).
    running: BTreeMap<String, Vec<usize>>,
}

impl Actuator {
    pub fn new(profile: StepProfile) -> Actuator {
        Actuator {
            profile,
            ..Actuator::default()
        }
    }

    /// Starts an attempt; returns its index, and the attempts of the same run key still
    /// running (which must be none).
    pub fn start(
        &mut self,
        now: Time,
        node: usize,
        incarnation: u64,
        step: StartStep,
        rng: &mut StdRng,
    ) -> (usize, Vec<usize>) {
        let run_step = step.purpose == StepPurpose::Run;
        let deduped = run_step && self.done.contains(&step.idempotency_key);
        let timeout = step.timeout.as_micros().max(1) as f64;
        let work = if deduped {
            // A recipe that finds the work done answers at once.
            timeout * rng.random_range(0.01..0.05)
        } else if rng.random_bool(self.profile.slow) {
            timeout * rng.random_range(1.0..1.5)
        } else {
            timeout * rng.random_range(0.02..0.6)
        };
        let work_end = now + Duration::from_micros(work as u64);
        let kill = now + step.timeout;
        let succeeds = deduped || !rng.random_bool(self.profile.fail);
        let id = self.attempts.len();
        let overlapping = if run_step {
            let list = self
                .running
                .entry(step.idempotency_key.clone())
                .or_default();
            let before = list.clone();
            list.push(id);
            before
        } else {
            Vec::new()
        };
        self.attempts.push(Attempt {
            node,
            incarnation,
            step,
            start: now,
            work_end,
            end: work_end.min(kill),
            succeeds,
            deduped,
            orphaned: false,
            ended: false,
            tolerated: false,
        });
        (id, overlapping)
    }

    /// The node crashed: its running attempts go on unsupervised to the end of their work.
    /// Returns the attempts whose end moved (to be scheduled again).
    pub fn orphan(&mut self, node: usize, now: Time) -> Vec<(usize, Time)> {
        let mut moved = Vec::new();
        for (id, a) in self.attempts.iter_mut().enumerate() {
            if a.node == node && !a.ended && !a.orphaned && a.end > now {
                a.orphaned = true;
                if a.work_end != a.end {
                    a.end = a.work_end;
                    moved.push((id, a.end));
                }
            }
        }
        moved
    }

    /// The attempt's process ends now (if `now` is still its end). Returns its effect (when
    /// its work ran to a successful end on a key not yet in effect) and the result its node
    /// hears, unless it was orphaned.
    pub fn end(&mut self, id: usize, now: Time) -> Option<(Option<Effect>, Option<StepDone>)> {
        let a = &mut self.attempts[id];
        if a.ended || a.end != now {
            return None;
        }
        a.ended = true;
        let finished = a.work_end <= now;
        let ok = finished && a.succeeds;
        let key = a.step.idempotency_key.clone();
        if let Some(list) = self.running.get_mut(&key) {
            list.retain(|x| *x != id);
        }
        let shadowed = a.tolerated && self.done.contains(&key);
        let effect = (ok && !a.deduped && !shadowed).then(|| Effect {
            attempt: id,
            node: a.node,
            site: a.step.site.clone(),
            run: a.step.run,
            name: a.step.name.clone(),
            idempotency_key: key.clone(),
            term: a.step.term,
            attempt_no: a.step.attempt,
            purpose: a.step.purpose,
            start: a.start,
            end: now,
        });
        let detail = if ok {
            "done".to_string()
        } else if finished {
            "failed".to_string()
        } else {
            "killed at the step timeout".to_string()
        };
        let done = (!a.orphaned).then(|| a.step.done(ok, detail));
        if let Some(e) = &effect {
            self.effects.push(e.clone());
            if e.purpose == StepPurpose::Run {
                self.done.insert(key);
            }
        }
        Some((effect, done))
    }

    /// Attempts `ids` overlapped in a way the world tolerates (see `Attempt::tolerated`).
    pub fn tolerate(&mut self, ids: &[usize]) {
        for id in ids {
            self.attempts[*id].tolerated = true;
        }
    }

    /// Effects recorded so far for a run key.
    pub fn effects_of(&self, key: &str) -> usize {
        self.effects
            .iter()
            .filter(|e| e.idempotency_key == key && e.purpose == StepPurpose::Run)
            .count()
    }
}
