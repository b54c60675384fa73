//! The `exec` actuator runs an operator's program for a step and judges it by its exit
//! status. It owns what the program sees: it runs in its own process group (see `process`),
//! and when the step ends, by exit or by timeout, whatever is left of that group is killed,
//! so nothing it started outlives the step. It never goes through a shell unless the step
//! says `shell = true`, and it never hands the program quorate's own environment.
//!
//! Params: `argv = ["prog", "arg", ..]`, or `shell = true` with `command = "..."` (run by
//! `/bin/sh -c`); `env = { NAME = "value" }`; `cwd = "/dir"`; `dry_run = "skip"`.
//! The program's environment is built from nothing: `PATH` (`process::SAFE_PATH` unless
//! `env` sets it), the step's `env`, and `QUORATE_SITE`, `QUORATE_EPOCH`, `QUORATE_STEP`,
//! `QUORATE_IDEMPOTENCY_KEY` and `QUORATE_DRY_RUN` ("1" or "0"). Nothing of quorate's own
//! environment is passed on (it may hold an http step's `token_env` secret). During a dry run the program still runs, with `QUORATE_DRY_RUN=1`: scripts
//! must then check what they would do and change nothing. Scripts that cannot rehearse should
//! set `dry_run = "skip"`.

use super::process::{
    describe_status, run_process_with_input, Leftovers, ProcessResult, SAFE_PATH,
};
use super::{Actuator, ActuatorKind, Params, StepContext, StepFuture, StepOutcome};
use std::path::PathBuf;
use tokio::process::Command;

#[derive(Debug, Clone)]
pub struct ExecActuator {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    skip_in_dry_run: bool,
}

impl ExecActuator {
    pub fn from_params(params: &serde_json::Value) -> Result<Self, String> {
        let p = Params::new("exec", params)?;
        p.only(&["argv", "shell", "command", "env", "cwd", "dry_run"])?;
        let shell = p.opt_bool("shell")?.unwrap_or(false);
        let argv = if shell {
            if p.has("argv") {
                return Err(p.err(
                    "argv",
                    "cannot be combined with shell = true: use `command = \"...\"` instead",
                ));
            }
            let command = p.req_str("command", "\"/usr/local/bin/failover.sh --fast\"")?;
            vec!["/bin/sh".to_string(), "-c".to_string(), command]
        } else {
            if p.has("command") {
                return Err(p.err(
                    "command",
                    "needs shell = true; without a shell give `argv = [\"prog\", \"arg\"]`",
                ));
            }
            let argv = p.opt_str_list("argv")?.ok_or_else(|| {
                p.err(
                    "argv",
                    "is missing: add e.g. argv = [\"/usr/local/bin/failover.sh\", \"--site\", \"a\"] \
                     (or shell = true with command = \"...\")",
                )
            })?;
            if argv.is_empty() || argv[0].is_empty() {
                return Err(p.err("argv", "is empty: the first element is the program to run"));
            }
            argv
        };
        let env = p.opt_str_map("env")?;
        if let Some((k, _)) = env.iter().find(|(k, _)| k.starts_with("QUORATE_")) {
            return Err(p.err(
                "env",
                format!("sets {k}, but QUORATE_* variables are set by quorate itself: rename it"),
            ));
        }
        if let Some((k, _)) = env.iter().find(|(k, _)| k.is_empty() || k.contains('=')) {
            return Err(p.err("env", format!("has an invalid variable name {k:?}")));
        }
        Ok(ExecActuator {
            argv,
            env,
            cwd: p.opt_str("cwd")?.map(PathBuf::from),
            skip_in_dry_run: p.dry_run_skip()?,
        })
    }

    async fn execute(&self, ctx: &StepContext) -> StepOutcome {
        self.execute_with_input(ctx, None).await
    }

    /// Runs the program once with `input` on its stdin (a notifier's event as JSON).
    pub(crate) async fn execute_with_input(
        &self,
        ctx: &StepContext,
        input: Option<Vec<u8>>,
    ) -> StepOutcome {
        if ctx.dry_run && self.skip_in_dry_run {
            return StepOutcome::skipped_dry_run();
        }
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        // Built from nothing: quorate's environment may hold secrets (`token_env`). PATH
        // first, so that the step's own `env` may replace it; std looks the program up on the
        // PATH given here.
        cmd.env_clear().env("PATH", SAFE_PATH);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("QUORATE_SITE", ctx.site.as_str())
            .env("QUORATE_EPOCH", ctx.epoch.to_string())
            .env("QUORATE_STEP", &ctx.step)
            .env("QUORATE_IDEMPOTENCY_KEY", &ctx.idempotency_key)
            .env("QUORATE_DRY_RUN", if ctx.dry_run { "1" } else { "0" });
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let run = run_process_with_input(cmd, input, ctx.timeout, Leftovers::Kill).await;
        let what = &self.argv[0];
        match run.result {
            ProcessResult::Exited(status) if status.success() => {
                StepOutcome::ok(format!("{what} exited 0"), run.output)
            }
            ProcessResult::Exited(status) => StepOutcome::failed(
                format!("{what} failed: {}", describe_status(status)),
                run.output,
            ),
            ProcessResult::TimedOut => StepOutcome::failed(
                format!(
                    "{what} timed out after {:?}; its process group was killed",
                    ctx.timeout
                ),
                run.output,
            ),
            ProcessResult::SpawnFailed(e) => {
                StepOutcome::failed(format!("could not start {what}: {e}"), run.output)
            }
        }
    }
}

impl Actuator for ExecActuator {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Exec
    }

    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a> {
        Box::pin(self.execute(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn argv_is_required_without_shell() {
        let err = ExecActuator::from_params(&json!({})).unwrap_err();
        assert!(err.contains("`argv` is missing"), "{err}");
    }

    #[test]
    fn command_without_shell_points_to_shell_true() {
        let err = ExecActuator::from_params(&json!({"command": "echo hi"})).unwrap_err();
        assert!(err.contains("needs shell = true"), "{err}");
    }

    #[test]
    fn shell_true_needs_command() {
        let err = ExecActuator::from_params(&json!({"shell": true})).unwrap_err();
        assert!(err.contains("`command` is missing"), "{err}");
    }

    #[test]
    fn env_may_not_override_quorate_variables() {
        let err =
            ExecActuator::from_params(&json!({"argv": ["true"], "env": {"QUORATE_EPOCH": "7"}}))
                .unwrap_err();
        assert!(err.contains("QUORATE_EPOCH"), "{err}");
    }

    #[test]
    fn argv_must_be_strings() {
        let err = ExecActuator::from_params(&json!({"argv": ["echo", 3]})).unwrap_err();
        assert!(err.contains("list of strings"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = ExecActuator::from_params(&json!({"argv": ["true"], "cdw": "/"})).unwrap_err();
        assert!(err.contains("unknown key `cdw`"), "{err}");
    }
}
