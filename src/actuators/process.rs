//! Child processes of the actuators: the `exec` step's program and the router and tunnel
//! CLIs (`birdc`, `gobgp`, `ip`, `wg`, `wireguard-go`). This module owns their lifetime and
//! what they inherit. Every child runs in a process group of its own with stdin closed and
//! an environment built from nothing: quorate's own environment may hold secrets (an http
//! step's `token_env`), and no child may read them. When the step's time is up the whole group
//! is killed; when the program ends, whatever it left running in its group is killed too,
//! unless the caller starts a daemon on purpose (`Leftovers::Keep`). Signals go to the group
//! through `killpg(2)` (rustix), never through a `kill` program found on PATH.

use super::Tail;
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// The PATH a program gets when nothing else is said: the system directories only, so a
/// step never depends on how quorate itself was started. An exec step may set its own in
/// `env`.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a program that exited may keep its output pipes open (through a background
/// child) before we stop reading them.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);
/// Between SIGTERM and SIGKILL, on timeout and for leftovers.
const KILL_GRACE: Duration = Duration::from_millis(500);
/// How often we look whether a signalled group is gone.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// What happens to processes a program left in its group when it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Leftovers {
    /// SIGTERM, then SIGKILL after a grace: nothing a step started outlives it.
    Kill,
    /// Left alone: the program forks a daemon that is the point of running it
    /// (`wireguard-go` keeps the tunnel alive after it returns).
    Keep,
}

/// The environment of an actuator's CLI call (`birdc`, `gobgp`, `ip`, ...): empty but for
/// quorate's PATH, which is where the operator told quorate to find these tools (and what a
/// dry run checks).
pub(crate) fn cli_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    cmd.env(
        "PATH",
        std::env::var_os("PATH").unwrap_or(OsString::from(SAFE_PATH)),
    );
    cmd
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
/// timeout kills the whole group, and when the program exits deals with what it left in its
/// group as `leftovers` says. The caller builds `cmd`'s environment (see `cli_command`).
pub(crate) async fn run_process(
    cmd: Command,
    timeout: Duration,
    leftovers: Leftovers,
) -> ProcessRun {
    run_process_with_input(cmd, None, timeout, leftovers).await
}

/// As `run_process`, with `input` written to the program's stdin and stdin then closed (a
/// notifier's event); a program that does not read it is not held up by it.
pub(crate) async fn run_process_with_input(
    mut cmd: Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
    leftovers: Leftovers,
) -> ProcessRun {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin)
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
    // The group id is the leader's pid because of `process_group(0)`.
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw);
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        // Written aside, so that a program that fills its stdout before reading stdin cannot
        // deadlock with us; the pipe closes when the write ends (or fails: the program quit).
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = pipe.write_all(&input).await;
        });
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut tail = Tail::default();
    let now = tokio::time::Instant::now();
    // A timeout too large to add is as good as none.
    let deadline = now
        .checked_add(timeout)
        .unwrap_or(now + Duration::from_secs(86_400 * 365));

    let result = {
        let pump = pump(&mut stdout, &mut stderr, &mut tail);
        tokio::pin!(pump);
        let mut pump_done = false;
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                tokio::select! {
                    status = child.wait() => break status,
                    _ = &mut pump, if !pump_done => pump_done = true,
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(status)) => {
                // The leader is reaped, but its group lives on while any member does, and
                // Linux hands out no pid that is still a group id: the signal cannot reach
                // another program's group.
                if let (Some(group), Leftovers::Kill) = (group, leftovers) {
                    end_group(group).await;
                }
                if !pump_done {
                    let drain_until = deadline.min(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                    let _ = tokio::time::timeout_at(drain_until, &mut pump).await;
                }
                ProcessResult::Exited(status)
            }
            Ok(Err(e)) => ProcessResult::SpawnFailed(e),
            Err(_elapsed) => {
                if let Some(group) = group {
                    signal_group(group, Signal::TERM);
                    // Whether the leader heeds SIGTERM or not, stragglers in its group get
                    // no further grace.
                    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
                    signal_group(group, Signal::KILL);
                }
                let _ = child.kill().await;
                ProcessResult::TimedOut
            }
        }
    };
    ProcessRun {
        result,
        output: tail.into_string(),
    }
}

/// Sends `signal` to every process of the group; false when the group is gone.
fn signal_group(group: Pid, signal: Signal) -> bool {
    kill_process_group(group, signal).is_ok()
}

/// SIGTERM to what is left of the group, SIGKILL to whatever still holds on after the grace.
async fn end_group(group: Pid) {
    if !signal_group(group, Signal::TERM) {
        return;
    }
    let until = tokio::time::Instant::now() + KILL_GRACE;
    while tokio::time::Instant::now() < until {
        if test_kill_process_group(group).is_err() {
            return;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
    signal_group(group, Signal::KILL);
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
