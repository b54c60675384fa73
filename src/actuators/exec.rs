//! The `exec` actuator runs an operator's program for a step and judges it by its exit
//! status. It owns process lifetime: the program runs in its own process group, and when the
//! step's timeout passes the whole group is killed, so nothing it started outlives the step.
//! It never goes through a shell unless the step says `shell = true`.
//!
//! Params: `argv = ["prog", "arg", ..]`, or `shell = true` with `command = "..."` (run by
//! `/bin/sh -c`); `env = { NAME = "value" }`; `cwd = "/dir"`; `dry_run = "skip"`.
//! The program inherits quorate's environment plus `env` plus `QUORATE_SITE`,
//! `QUORATE_EPOCH`, `QUORATE_STEP`, `QUORATE_IDEMPOTENCY_KEY` and `QUORATE_DRY_RUN`
//! ("1" or "0"). During a dry run the program still runs, with `QUORATE_DRY_RUN=1`: scripts
//! must then check what they would do and change nothing. Scripts that cannot rehearse should
//! set `dry_run = "skip"`.

use super::{Actuator, ActuatorKind, Params, StepContext, StepFuture, StepOutcome, Tail};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How long a program that exited may keep its output pipes open (through a background
/// child) before we stop reading them.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);
/// Between SIGTERM and SIGKILL on timeout.
const KILL_GRACE: Duration = Duration::from_millis(500);

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
        if ctx.dry_run && self.skip_in_dry_run {
            return StepOutcome::skipped_dry_run();
        }
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
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
        let run = run_process(cmd, ctx.timeout).await;
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

/// How a child process ended.
#[derive(Debug)]
pub(crate) enum ProcessResult {
    Exited(ExitStatus),
    /// The timeout passed; the process group got SIGTERM, then SIGKILL.
    TimedOut,
    SpawnFailed(std::io::Error),
}

pub(crate) struct ProcessRun {
    pub(crate) result: ProcessResult,
    /// The last bytes of stdout and stderr, interleaved in arrival order.
    pub(crate) output: String,
}

impl ProcessRun {
    pub(crate) fn success(&self) -> bool {
        matches!(self.result, ProcessResult::Exited(s) if s.success())
    }

    /// "exited 0", "exited 3", "killed by signal 9", "timed out", "could not start: ..."
    pub(crate) fn describe(&self) -> String {
        match &self.result {
            ProcessResult::Exited(s) => describe_status(*s),
            ProcessResult::TimedOut => "timed out".to_string(),
            ProcessResult::SpawnFailed(e) => format!("could not start: {e}"),
        }
    }
}

pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{status}"),
    }
}

/// Runs `cmd` in a new process group with stdin closed, collecting the output tail; on
/// timeout kills the whole group. Shared by the actuators that drive CLIs.
pub(crate) async fn run_process(mut cmd: Command, timeout: Duration) -> ProcessRun {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ProcessRun {
                result: ProcessResult::SpawnFailed(e),
                output: String::new(),
            }
        }
    };
    let pgid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut tail = Tail::default();
    let deadline = tokio::time::Instant::now() + timeout;

    let waited = {
        let pump = pump(&mut stdout, &mut stderr, &mut tail);
        tokio::pin!(pump);
        let mut pump_done = false;
        let status = tokio::time::timeout_at(deadline, async {
            loop {
                tokio::select! {
                    status = child.wait() => break status,
                    _ = &mut pump, if !pump_done => pump_done = true,
                }
            }
        })
        .await;
        if let Ok(Ok(_)) = status {
            if !pump_done {
                let drain_until = deadline.min(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                let _ = tokio::time::timeout_at(drain_until, &mut pump).await;
            }
        }
        status
    };
    let result = match waited {
        Ok(Ok(status)) => ProcessResult::Exited(status),
        Ok(Err(e)) => ProcessResult::SpawnFailed(e),
        Err(_elapsed) => {
            if let Some(pgid) = pgid {
                kill_group(pgid, "TERM").await;
                if tokio::time::timeout(KILL_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    kill_group(pgid, "KILL").await;
                } else {
                    // The leader left; stragglers in its group get no further grace.
                    kill_group(pgid, "KILL").await;
                }
            }
            let _ = child.kill().await;
            ProcessResult::TimedOut
        }
    };
    ProcessRun {
        result,
        output: tail.into_string(),
    }
}

/// Signals every process in the group. Uses kill(1) rather than a libc binding so the crate
/// needs no unsafe code; the group id is the leader's pid because of `process_group(0)`.
async fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

async fn pump<O, E>(stdout: &mut Option<O>, stderr: &mut Option<E>, tail: &mut Tail)
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let mut ob = [0u8; 4096];
    let mut eb = [0u8; 4096];
    loop {
        if stdout.is_none() && stderr.is_none() {
            return;
        }
        tokio::select! {
            r = async { stdout.as_mut().unwrap().read(&mut ob).await }, if stdout.is_some() => {
                match r {
                    Ok(n) if n > 0 => tail.push(&ob[..n]),
                    _ => *stdout = None,
                }
            }
            r = async { stderr.as_mut().unwrap().read(&mut eb).await }, if stderr.is_some() => {
                match r {
                    Ok(n) if n > 0 => tail.push(&eb[..n]),
                    _ => *stderr = None,
                }
            }
        }
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
