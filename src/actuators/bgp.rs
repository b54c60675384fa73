//! The `bgp` actuator announces or withdraws prefixes (a site's anycast or service routes)
//! by talking to the site's BGP speaker the way an operator does: BIRD through an include
//! file and `birdc configure`, GoBGP through its CLI, ExaBGP through a named pipe its process
//! API reads. It owns the desired set of announced prefixes per router and keeps every call
//! idempotent: announcing twice yields one announcement, withdrawing an absent route
//! succeeds. It never speaks BGP itself and never touches routes it was not told about.
//!
//! Params: `action = "announce" | "withdraw"`, `prefixes = ["198.19.255.0/24", ..]`,
//! `backend = "bird" | "gobgp" | "exabgp"`, optional `netns` (run the CLI with
//! `ip netns exec NS`), optional `dry_run = "skip"`; they are read once into `BgpParams`,
//! the value check-config also takes the step's anycast effect from. A dry run checks that the
//! router answers (`birdc show status`, `gobgp global`, a reader on the ExaBGP pipe) and
//! changes nothing.
//!
//! BIRD (`include_file`, `socket` default `/run/bird/bird.ctl`, `birdc` default `birdc`): the
//! actuator owns `include_file`, holding one `route P blackhole;` line per announced prefix,
//! rewrites it atomically (temp file + rename) and runs `birdc -s SOCKET configure`. If BIRD
//! rejects the new config the previous file is put back. From the read to BIRD's answer the
//! step holds an advisory lock on `INCLUDE_FILE.lock` (see `route_lock`), so overlapping
//! steps on one router each see the other's change. The BIRD config includes it inside
//! a static protocol whose routes the BGP export filter lets out, one file per address family:
//!
//! ```text
//! protocol static anycast {
//!     ipv4;
//!     include "/etc/bird/quorate-anycast.conf";   # BIRD wants `include` on a line of its own
//! }
//! protocol bgp upstream { ...; ipv4 { import all; export where proto = "anycast"; }; }
//! ```
//!
//! GoBGP (`api` default `127.0.0.1:50051`, `gobgp` default `gobgp`): runs
//! `gobgp -u HOST -p PORT global rib add|del -a ipv4|ipv6 P` for each prefix.
//!
//! ExaBGP (`pipe`, `state_file` default `PIPE.state`): writes `announce route P next-hop self`
//! or `withdraw route P` lines into a FIFO that a process in the ExaBGP config copies to its
//! stdout (ExaBGP 4 reads API commands from a process's stdout):
//!
//! ```text
//! process quorate { run /bin/sh -c "exec cat <> /run/quorate/exabgp.fifo"; encoder text; }
//! neighbor 198.18.0.2 { ...; api { processes [ quorate ]; } }
//! ```
//!
//! (`<>` opens the FIFO read-write so `cat` never sees end-of-file between steps.) Create the
//! FIFO with `mkfifo` before starting ExaBGP. What was announced is kept in `state_file`
//! (locked through `STATE_FILE.lock` from its read to its rewrite), so a
//! repeated announce writes nothing; a withdraw is always written. If ExaBGP restarts, delete
//! the state file so the next announce is sent again. `cat` never reads ExaBGP's replies, so
//! turn them off (`exabgp.api.ack = false`, or env `exabgp_api_ack=false`): ExaBGP writes them
//! blocking, and after ~64 KiB of unread replies it would stall. ExaBGP started as root drops
//! to its own user, which cannot open a root-owned FIFO: keep root with
//! `exabgp_daemon_user=root` and `exabgp_daemon_drop=false`, or give the FIFO to its user.

pub use super::bgp_params::{BgpBackend, BgpParams};
use super::process::{cli_command, run_process, Leftovers, ProcessRun};
use super::route_lock::RouteLock;
use super::{Actuator, ActuatorKind, StepContext, StepFuture, StepOutcome};
use crate::core::anycast::{BgpAction, Prefix};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use tokio::process::Command;
use tokio::time::Instant;

/// A bgp step, ready to run: its params, read once by `BgpParams::from_params`.
#[derive(Debug, Clone)]
pub struct BgpActuator {
    params: BgpParams,
}

impl BgpActuator {
    pub fn from_params(params: &Value) -> Result<Self, String> {
        Ok(BgpActuator::new(BgpParams::from_params(params)?))
    }

    pub fn new(params: BgpParams) -> Self {
        BgpActuator { params }
    }

    /// What the step does, as the anycast rule sees it too.
    pub fn params(&self) -> &BgpParams {
        &self.params
    }

    fn cli(&self, program: &str) -> Command {
        match &self.params.netns {
            Some(ns) => {
                let mut c = cli_command("ip");
                c.args(["netns", "exec", ns.as_str(), program]);
                c
            }
            None => cli_command(program),
        }
    }

    async fn execute(&self, ctx: &StepContext) -> StepOutcome {
        if ctx.dry_run && self.params.skip_in_dry_run {
            return StepOutcome::skipped_dry_run();
        }
        let deadline = Instant::now() + ctx.timeout;
        match &self.params.backend {
            BgpBackend::Bird {
                include_file,
                socket,
                birdc,
            } => self.bird(ctx, deadline, include_file, socket, birdc).await,
            BgpBackend::Gobgp { host, port, gobgp } => {
                self.gobgp(ctx, deadline, host, *port, gobgp).await
            }
            BgpBackend::Exabgp { pipe, state_file } => {
                self.exabgp(ctx, deadline, pipe, state_file).await
            }
        }
    }

    fn prefix_list(&self) -> String {
        self.params
            .prefixes
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn verb(&self) -> &'static str {
        match self.params.action {
            BgpAction::Announce => "announced",
            BgpAction::Withdraw => "withdrew",
        }
    }

    async fn bird(
        &self,
        ctx: &StepContext,
        deadline: Instant,
        include_file: &Path,
        socket: &str,
        birdc: &str,
    ) -> StepOutcome {
        if ctx.dry_run {
            let run = self
                .birdc(birdc, socket, &["show", "status"], deadline)
                .await;
            if !bird_answers(&run.output) {
                return StepOutcome::failed(
                    format!(
                        "dry run: BIRD at {socket} does not answer ({})",
                        run.describe()
                    ),
                    run.output,
                );
            }
            if let Err(e) = read_bird_routes(include_file) {
                return StepOutcome::failed(format!("dry run: {e}"), run.output);
            }
            return StepOutcome::ok(
                format!(
                    "dry run: BIRD answers; would have {} {} (nothing changed)",
                    match self.params.action {
                        BgpAction::Announce => "announced",
                        BgpAction::Withdraw => "withdrawn",
                    },
                    self.prefix_list()
                ),
                run.output,
            );
        }
        // Held until BIRD has answered `configure` (and the file is restored if it refused):
        // another step's read-modify-write must start from what this one left.
        let _lock = match RouteLock::acquire(include_file, deadline).await {
            Ok(l) => l,
            Err(e) => return StepOutcome::failed(e, ""),
        };
        let before = match read_bird_routes(include_file) {
            Ok(b) => b,
            Err(e) => return StepOutcome::failed(e, ""),
        };
        let mut after = before.clone();
        for p in &self.params.prefixes {
            match self.params.action {
                BgpAction::Announce => after.insert(*p),
                BgpAction::Withdraw => after.remove(p),
            };
        }
        let changed = after != before;
        if changed {
            if let Err(e) = write_atomically(include_file, &render_bird_routes(&after)) {
                return StepOutcome::failed(
                    format!("cannot write {}: {e}", include_file.display()),
                    "",
                );
            }
        }
        // Reconfigure even when the file did not change: an earlier attempt may have written
        // the file and then failed to reach BIRD.
        let run = self.birdc(birdc, socket, &["configure"], deadline).await;
        if !bird_reconfigured(&run.output) {
            let restored = if changed {
                match write_atomically(include_file, &render_bird_routes(&before)) {
                    Ok(()) => "; previous route file restored".to_string(),
                    Err(e) => format!("; restoring the previous route file failed: {e}"),
                }
            } else {
                String::new()
            };
            return StepOutcome::failed(
                format!(
                    "birdc configure at {socket} was not accepted ({}){restored}",
                    run.describe()
                ),
                run.output,
            );
        }
        StepOutcome::ok(
            format!(
                "{} {} via BIRD ({})",
                self.verb(),
                self.prefix_list(),
                if changed {
                    "route file updated"
                } else {
                    "already so; reconfigured"
                }
            ),
            run.output,
        )
    }

    async fn birdc(
        &self,
        birdc: &str,
        socket: &str,
        args: &[&str],
        deadline: Instant,
    ) -> ProcessRun {
        let mut cmd = self.cli(birdc);
        cmd.arg("-s").arg(socket).args(args);
        run_process(
            cmd,
            deadline.saturating_duration_since(Instant::now()),
            Leftovers::Kill,
        )
        .await
    }

    async fn gobgp(
        &self,
        ctx: &StepContext,
        deadline: Instant,
        host: &str,
        port: u16,
        gobgp: &str,
    ) -> StepOutcome {
        let base = |cmd: &mut Command| {
            cmd.args(["-u", host, "-p", &port.to_string()]);
        };
        if ctx.dry_run {
            let mut cmd = self.cli(gobgp);
            base(&mut cmd);
            cmd.arg("global");
            let run = run_process(
                cmd,
                deadline.saturating_duration_since(Instant::now()),
                Leftovers::Kill,
            )
            .await;
            return if run.success() {
                StepOutcome::ok(
                    format!(
                        "dry run: GoBGP at {host}:{port} answers; nothing changed for {}",
                        self.prefix_list()
                    ),
                    run.output,
                )
            } else {
                StepOutcome::failed(
                    format!(
                        "dry run: GoBGP at {host}:{port} does not answer ({})",
                        run.describe()
                    ),
                    run.output,
                )
            };
        }
        let mut output = String::new();
        for p in &self.params.prefixes {
            let mut cmd = self.cli(gobgp);
            base(&mut cmd);
            let op = match self.params.action {
                BgpAction::Announce => "add",
                BgpAction::Withdraw => "del",
            };
            cmd.args([
                "global",
                "rib",
                op,
                "-a",
                p.family().as_str(),
                &p.to_string(),
            ]);
            let run = run_process(
                cmd,
                deadline.saturating_duration_since(Instant::now()),
                Leftovers::Kill,
            )
            .await;
            output.push_str(&run.output);
            if !run.success() {
                return StepOutcome::failed(
                    format!("gobgp global rib {op} {p} failed ({})", run.describe()),
                    output,
                );
            }
        }
        StepOutcome::ok(
            format!("{} {} via GoBGP", self.verb(), self.prefix_list()),
            output,
        )
    }

    async fn exabgp(
        &self,
        ctx: &StepContext,
        deadline: Instant,
        pipe: &Path,
        state_file: &Path,
    ) -> StepOutcome {
        // Held from reading the state to writing it back, across the pipe write: two steps
        // must not both decide from the same old state.
        let _lock = if ctx.dry_run {
            None
        } else {
            match RouteLock::acquire(state_file, deadline).await {
                Ok(l) => Some(l),
                Err(e) => return StepOutcome::failed(e, ""),
            }
        };
        let announced = match read_state(state_file) {
            Ok(s) => s,
            Err(e) => return StepOutcome::failed(e, ""),
        };
        let mut lines = String::new();
        let mut after = announced.clone();
        for &p in &self.params.prefixes {
            match self.params.action {
                BgpAction::Announce if announced.contains(&p) => {}
                BgpAction::Announce => {
                    lines.push_str(&format!("announce route {p} next-hop self\n"));
                    after.insert(p);
                }
                // Always sent: a withdraw that is skipped by mistake keeps traffic flowing to
                // a fenced site, a redundant one costs nothing.
                BgpAction::Withdraw => {
                    lines.push_str(&format!("withdraw route {p}\n"));
                    after.remove(&p);
                }
            }
        }
        let pipe = pipe.to_path_buf();
        let dry_run = ctx.dry_run;
        let to_write = lines.clone();
        let written = tokio::task::spawn_blocking(move || {
            write_fifo(&pipe, if dry_run { "" } else { &to_write })
        })
        .await
        .unwrap_or_else(|e| Err(format!("pipe writer panicked: {e}")));
        if let Err(e) = written {
            return StepOutcome::failed(e, "");
        }
        if ctx.dry_run {
            return StepOutcome::ok(
                "dry run: ExaBGP is reading its pipe; nothing written",
                lines,
            );
        }
        if let Err(e) = write_atomically(state_file, &render_exabgp_state(&after)) {
            return StepOutcome::failed(
                format!(
                    "commands were written but the state file {} could not be: {e}",
                    state_file.display()
                ),
                lines,
            );
        }
        let detail = if lines.is_empty() {
            format!("{} already announced via ExaBGP", self.prefix_list())
        } else {
            format!("{} {} via ExaBGP", self.verb(), self.prefix_list())
        };
        StepOutcome::ok(detail, lines)
    }
}

impl Actuator for BgpActuator {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Bgp
    }

    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a> {
        Box::pin(self.execute(ctx))
    }
}

/// Whether `birdc show status` output says the daemon runs.
pub fn bird_answers(output: &str) -> bool {
    output.contains("Daemon is up and running")
}

/// Whether `birdc configure` output says BIRD took (or is taking) the new configuration.
pub fn bird_reconfigured(output: &str) -> bool {
    output.contains("Reconfigured")
        || output.contains("Reconfiguration in progress")
        || output.contains("Reconfiguration already in progress")
}

const BIRD_HEADER: &str = "# Written by quorate's bgp actuator: one line per announced prefix.\n\
                           # Do not edit while quorate runs; it replaces this file.\n";

fn read_bird_routes(path: &Path) -> Result<BTreeSet<Prefix>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir {
                if !dir.is_dir() {
                    return Err(format!(
                        "include_file {}: directory {} does not exist",
                        path.display(),
                        dir.display()
                    ));
                }
            }
            return Ok(BTreeSet::new());
        }
        Err(e) => return Err(format!("cannot read include_file {}: {e}", path.display())),
    };
    parse_bird_routes(&text).map_err(|e| format!("include_file {} {e}", path.display()))
}

/// The prefixes of a route file this actuator wrote (`route P blackhole;` lines, comments and
/// blank lines); any other line is refused with its number, so that routes someone else put
/// there are never rewritten away.
pub fn parse_bird_routes(text: &str) -> Result<BTreeSet<Prefix>, String> {
    let mut routes = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let route = match words.as_slice() {
            ["route", prefix, "blackhole;"] => prefix.parse::<Prefix>().ok(),
            _ => None,
        };
        match route {
            Some(p) => {
                routes.insert(p);
            }
            None => {
                return Err(format!(
                    "line {}: {line:?} was not written by quorate; \
                     keep other routes in another file",
                    n + 1
                ))
            }
        }
    }
    Ok(routes)
}

/// The route file that announces exactly `routes`, as `parse_bird_routes` reads it back.
pub fn render_bird_routes(routes: &BTreeSet<Prefix>) -> String {
    let mut s = BIRD_HEADER.to_string();
    for r in routes {
        s.push_str(&format!("route {r} blackhole;\n"));
    }
    s
}

fn read_state(path: &Path) -> Result<BTreeSet<Prefix>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse_exabgp_state(&t).ok_or_else(|| {
            format!(
                "state file {} is not valid: delete it (the next announce is then re-sent)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(format!("cannot read state file {}: {e}", path.display())),
    }
}

/// The prefixes an ExaBGP state file says were announced (`{"announced": ["P", ...]}`), or
/// None when it is not such a file.
pub fn parse_exabgp_state(text: &str) -> Option<BTreeSet<Prefix>> {
    serde_json::from_str::<Value>(text).ok().and_then(|v| {
        v.get("announced")?
            .as_array()?
            .iter()
            .map(|p| p.as_str()?.parse::<Prefix>().ok())
            .collect::<Option<BTreeSet<_>>>()
    })
}

/// The ExaBGP state file for `announced`, as `parse_exabgp_state` reads it back.
pub fn render_exabgp_state(announced: &BTreeSet<Prefix>) -> String {
    serde_json::json!({ "announced": announced }).to_string() + "\n"
}

/// Opens the FIFO without blocking, so a missing reader is an error rather than a hang.
fn write_fifo(pipe: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let meta = std::fs::metadata(pipe)
        .map_err(|e| format!("pipe {}: {e} (create it with mkfifo)", pipe.display()))?;
    if !meta.file_type().is_fifo() {
        return Err(format!(
            "pipe {} is not a FIFO: create it with mkfifo",
            pipe.display()
        ));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        // The flag's bits are a C int; rustix hands them out as the u32 of its bitflags.
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(pipe)
        .map_err(|e| {
            // A FIFO opened for writing without blocking fails with ENXIO when no reader has it.
            if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                format!(
                    "nothing reads pipe {}: is ExaBGP running with the quorate process?",
                    pipe.display()
                )
            } else {
                format!("cannot open pipe {}: {e}", pipe.display())
            }
        })?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("writing to pipe {}: {e}", pipe.display()))
}

/// Temp file in the same directory, fsync, rename: readers see the old or the new file.
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Readable by a router running as another user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bird(extra: Value) -> Value {
        let mut v = json!({"action": "announce", "prefixes": ["198.19.255.0/24"],
                           "backend": "bird", "include_file": "/tmp/x.conf"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    #[test]
    fn a_bird_step_with_all_params_validates() {
        assert!(BgpActuator::from_params(&bird(json!({}))).is_ok());
    }

    #[test]
    fn action_must_be_announce_or_withdraw() {
        let err = BgpActuator::from_params(&bird(json!({"action": "flap"}))).unwrap_err();
        assert!(err.contains("\"announce\" or \"withdraw\""), "{err}");
    }

    #[test]
    fn prefixes_need_a_length_and_no_host_bits() {
        let err =
            BgpActuator::from_params(&bird(json!({"prefixes": ["198.19.255.0"]}))).unwrap_err();
        assert!(err.contains("no length"), "{err}");
        let err =
            BgpActuator::from_params(&bird(json!({"prefixes": ["198.19.255.1/24"]}))).unwrap_err();
        assert!(err.contains("host bits"), "{err}");
        let err =
            BgpActuator::from_params(&bird(json!({"prefixes": ["198.19.255.0/+24"]}))).unwrap_err();
        assert!(err.contains("must be a number from 0 to 32"), "{err}");
        for ok in ["2001:db8::/32", "0.0.0.0/0"] {
            let a = BgpActuator::from_params(&bird(json!({"prefixes": [ok]}))).unwrap();
            assert_eq!(a.params().prefixes[0].to_string(), ok);
        }
    }

    #[test]
    fn bird_needs_an_include_file() {
        let mut v = bird(json!({}));
        v.as_object_mut().unwrap().remove("include_file");
        let err = BgpActuator::from_params(&v).unwrap_err();
        assert!(err.contains("`include_file` is missing"), "{err}");
    }

    #[test]
    fn backend_keys_do_not_leak_across_backends() {
        let err = BgpActuator::from_params(&bird(json!({"pipe": "/x"}))).unwrap_err();
        assert!(err.contains("unknown key `pipe`"), "{err}");
    }

    #[test]
    fn unknown_backend_lists_the_known_ones() {
        let err = BgpActuator::from_params(&bird(json!({"backend": "quagga"}))).unwrap_err();
        assert!(err.contains("\"bird\", \"gobgp\" or \"exabgp\""), "{err}");
    }

    #[test]
    fn gobgp_api_must_be_host_port() {
        let v = json!({"action": "withdraw", "prefixes": ["198.19.255.0/24"],
                       "backend": "gobgp", "api": "localhost"});
        let err = BgpActuator::from_params(&v).unwrap_err();
        assert!(err.contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn bird_route_file_round_trips_and_refuses_foreign_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("routes.conf");
        assert!(read_bird_routes(&f).unwrap().is_empty());
        let set: BTreeSet<Prefix> = ["198.19.255.0/24".parse().unwrap()].into();
        write_atomically(&f, &render_bird_routes(&set)).unwrap();
        assert_eq!(read_bird_routes(&f).unwrap(), set);
        std::fs::write(&f, "route 198.19.0.0/16 via 198.18.0.1;\n").unwrap();
        let err = read_bird_routes(&f).unwrap_err();
        assert!(err.contains("not written by quorate"), "{err}");
    }

    #[tokio::test]
    async fn exabgp_announce_twice_writes_once_and_withdraw_always_writes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("exabgp.fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        // A reader that stays open, like `cat <> FIFO` under ExaBGP.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let params = |action: &str| {
            json!({"action": action, "prefixes": ["198.19.255.0/24"], "backend": "exabgp",
                   "pipe": fifo.to_str().unwrap()})
        };
        let ctx = |dry_run| StepContext {
            site: "a".into(),
            epoch: 1,
            step: "announce".into(),
            idempotency_key: "a/1/announce".into(),
            dry_run,
            timeout: std::time::Duration::from_secs(5),
            params: Value::Null,
        };
        let announce = BgpActuator::from_params(&params("announce")).unwrap();
        let first = announce.run(&ctx(false)).await;
        assert!(first.ok, "{first:?}");
        assert_eq!(
            first.output_tail,
            "announce route 198.19.255.0/24 next-hop self\n"
        );
        let second = announce.run(&ctx(false)).await;
        assert!(second.ok && second.output_tail.is_empty(), "{second:?}");
        let withdraw = BgpActuator::from_params(&params("withdraw")).unwrap();
        let dry = withdraw.run(&ctx(true)).await;
        assert!(dry.ok, "{dry:?}");
        let w = withdraw.run(&ctx(false)).await;
        assert!(
            w.ok && w.output_tail == "withdraw route 198.19.255.0/24\n",
            "{w:?}"
        );
        let mut got = vec![0u8; 4096];
        let n = std::io::Read::read(&mut &reader, &mut got).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got[..n]),
            "announce route 198.19.255.0/24 next-hop self\nwithdraw route 198.19.255.0/24\n"
        );
        drop(reader);
        let no_reader = announce.run(&ctx(false)).await;
        assert!(
            !no_reader.ok && no_reader.detail.contains("nothing reads"),
            "{no_reader:?}"
        );
    }
}
