//! The failover recipes of `config/recipes/` run as a pipeline runs them: through the `exec`
//! actuator, with the step's environment. The workload is a process each test starts itself;
//! `criu`, `drbdadm` and `modinfo` are stand-ins placed first on PATH that record their
//! arguments, report a version or a role, and do what the real programs would do to the
//! workload (kill it after a dump, start a stopped copy on restore).

use quorate::actuators::{build, validate, ActuatorKind, StepContext, StepOutcome};
use serde_json::{json, Map, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn recipe(name: &str) -> String {
    root()
        .join("config/recipes")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// Stand-in criu: `--version` reports STANDIN_CRIU_VERSION, `check` passes unless
/// STANDIN_CRIU_CHECK=fail, `dump` writes inventory.img and kills the tree unless
/// --leave-running, `restore` starts a `sleep` in a session of its own (stopped with
/// --leave-stopped) and writes its pid to --pidfile.
const CRIU: &str = r#"#!/bin/sh
echo "criu $*" >> "$STANDIN_LOG"
case $1 in
--version) echo "Version: $STANDIN_CRIU_VERSION"; echo "GitID: v$STANDIN_CRIU_VERSION" ;;
check)
	if [ "$STANDIN_CRIU_CHECK" = fail ]; then
		echo "Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed" >&2
		exit 1
	fi
	echo "Looks good." ;;
dump)
	shift; pid= dir= leave=
	while [ $# -gt 0 ]; do
		case $1 in --tree) pid=$2; shift ;; --images-dir) dir=$2; shift ;; --leave-running) leave=1 ;; esac
		shift
	done
	echo "$pid" > "$dir/inventory.img" && echo "dump ok" > "$dir/dump.log"
	[ -n "$leave" ] || kill -KILL "$pid" ;;
restore)
	shift; dir= pidfile= stopped=
	while [ $# -gt 0 ]; do
		case $1 in --images-dir) dir=$2; shift ;; --pidfile) pidfile=$2; shift ;; --leave-stopped) stopped=1 ;; esac
		shift
	done
	[ -f "$dir/inventory.img" ] || exit 1
	# The copy gets a session of its own, as a restored service would.
	if [ -n "$stopped" ]; then
		setsid sh -c 'kill -STOP $$; exec sleep 300' </dev/null >/dev/null 2>&1 &
		while ! grep -q '^[0-9]* ([^)]*) T' "/proc/$!/stat"; do sleep 0.01; done
	else
		setsid sleep 300 </dev/null >/dev/null 2>&1 &
	fi
	echo $! > "$pidfile" ;;
*) exit 1 ;;
esac
"#;

/// Stand-in drbdadm: the role of resource R lives in $STANDIN_DRBD/R.role.
const DRBDADM: &str = r#"#!/bin/sh
echo "drbdadm $*" >> "$STANDIN_LOG"
f=$STANDIN_DRBD/$2.role
case $1 in
role)
	[ -f "$f" ] || { echo "'$2' not defined in your config (for this host)." >&2; exit 10; }
	cat "$f" ;;
primary) echo "Primary/Unknown" > "$f" ;;
secondary) echo "Secondary/Unknown" > "$f" ;;
*) exit 20 ;;
esac
"#;

/// Stand-in modinfo of a kernel without DRBD.
const MODINFO_WITHOUT_DRBD: &str = r#"#!/bin/sh
echo "modinfo $*" >> "$STANDIN_LOG"
echo "modinfo: ERROR: Module $1 not found." >&2
exit 1
"#;

/// A scratch directory with the stand-ins, the state dir, the call log and the workload.
struct Bench {
    dir: tempfile::TempDir,
    /// Processes to kill when the test ends (restored copies).
    strays: std::cell::RefCell<Vec<u32>>,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["bin", "state", "drbd", "checkpoints"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("calls.log"), "").unwrap();
        Bench {
            dir,
            strays: Default::default(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }

    fn stand_in(&self, name: &str, script: &str) {
        let path = self.path("bin").join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The step's `env`: the stand-ins first on PATH, then only the system's user
    /// programs (no sbin: a real criu or modinfo there must not be found by accident).
    fn env(&self) -> Map<String, Value> {
        let mut env = Map::new();
        env.insert(
            "PATH".into(),
            format!("{}:/usr/bin:/bin", self.s("bin")).into(),
        );
        env.insert("STANDIN_LOG".into(), self.s("calls.log").into());
        env.insert("STANDIN_DRBD".into(), self.s("drbd").into());
        env.insert("STANDIN_CRIU_VERSION".into(), "4.1.1".into());
        env.insert("RECIPE_STATE_DIR".into(), self.s("state").into());
        env
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls.log"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Files recorded in the state dir.
    fn records(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![self.path("state")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    fn set_role(&self, res: &str, role: &str) {
        std::fs::write(
            self.path("drbd").join(format!("{res}.role")),
            format!("{role}\n"),
        )
        .unwrap();
    }

    fn role(&self, res: &str) -> String {
        std::fs::read_to_string(self.path("drbd").join(format!("{res}.role")))
            .unwrap()
            .trim()
            .to_string()
    }

    fn stray(&self, pid: u32) {
        self.strays.borrow_mut().push(pid);
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for pid in self.strays.borrow().iter() {
            kill(*pid, "KILL");
        }
    }
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// The stand-in workload: a process the test starts, with a pid file.
struct Workload {
    child: Child,
    pidfile: String,
}

impl Workload {
    fn start(bench: &Bench) -> Workload {
        let child = Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pidfile = bench.s("app.pid");
        std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
        Workload { child, pidfile }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has it exited (been killed) within a few seconds?
    fn exits(&mut self) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one-letter state of a process, or None when it is gone or a zombie.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    (state != 'Z').then_some(state)
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Runs a recipe through the exec actuator as the pipeline would for step `step` of site a,
/// epoch 7.
async fn run_step(
    argv: &[&str],
    env: &Map<String, Value>,
    step: &str,
    dry_run: bool,
) -> StepOutcome {
    let params = json!({"argv": argv, "env": env});
    let actuator = build(ActuatorKind::Exec, &params).expect("valid exec params");
    let ctx = StepContext {
        site: "a".into(),
        epoch: 7,
        step: step.into(),
        idempotency_key: StepContext::key_for(&"a".into(), 7, step),
        dry_run,
        timeout: Duration::from_secs(30),
        params,
    };
    actuator.run(&ctx).await
}

/// The freeze step: criu-dump.sh of the workload into checkpoints/app.
async fn freeze(
    bench: &Bench,
    app: &Workload,
    env: &Map<String, Value>,
    dry_run: bool,
) -> StepOutcome {
    let argv = [
        recipe("criu-dump.sh"),
        app.pidfile.clone(),
        bench.s("checkpoints/app"),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    run_step(&argv, env, "freeze", dry_run).await
}

fn assert_exit(out: &StepOutcome, code: i32) {
    assert!(!out.ok, "{out:?}");
    assert!(
        out.detail.ends_with(&format!("failed: exited {code}")),
        "expected exit {code}: {out:?}"
    );
}

// ---------------------------------------------------------------- CRIU

#[tokio::test]
async fn criu_dump_checkpoints_the_workload_into_the_images_dir_and_criu_kills_it() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let mut app = Workload::start(&bench);
    let images = bench.s("checkpoints/app");
    let out = freeze(&bench, &app, &bench.env(), false).await;
    assert!(out.ok, "{out:?}");
    let pid = app.pid();
    assert_eq!(
        bench.calls(),
        vec![
            "criu --version".to_string(),
            "criu check".to_string(),
            format!("criu dump --tree {pid} --images-dir {images}.partial --log-file dump.log"),
        ]
    );
    // The dump was published under the images dir, not left half-written.
    assert_eq!(
        std::fs::read_to_string(format!("{images}/inventory.img")).unwrap(),
        format!("{pid}\n")
    );
    assert!(!Path::new(&format!("{images}.partial")).exists());
    assert!(
        app.exits(),
        "the workload survived a dump without --leave-running"
    );
    assert!(
        out.output_tail.contains(&format!(
            "dumped pid {pid} into {images} (killed after the dump; site=a epoch=7 step=freeze key=a/7/freeze)"
        )),
        "{out:?}"
    );
    // The record names the key and what was done.
    let records = bench.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = std::fs::read_to_string(&records[0]).unwrap();
    assert!(record.contains("key: a/7/freeze"), "{record}");
    assert!(record.contains("site=a epoch=7 step=freeze"), "{record}");
    assert!(
        record.contains(&format!("done: dumped pid {pid}")),
        "{record}"
    );
}

#[tokio::test]
async fn criu_dump_leave_running_keeps_the_workload_and_passes_extra_criu_args() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let mut app = Workload::start(&bench);
    let images = bench.s("checkpoints/app");
    let out = run_step(
        &[
            &recipe("criu-dump.sh"),
            "--leave-running",
            &app.pidfile,
            &images,
            "--",
            "--tcp-established",
            "--shell-job",
        ],
        &bench.env(),
        "checkpoint",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        bench.calls().last().unwrap(),
        &format!(
            "criu dump --tree {} --images-dir {images}.partial --log-file dump.log \
             --leave-running --tcp-established --shell-job",
            app.pid()
        )
    );
    assert!(app.running());
}

#[tokio::test]
async fn criu_dump_dry_run_checks_and_calls_nothing_that_changes_state() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let mut app = Workload::start(&bench);
    let images = bench.s("checkpoints/app");
    let out = freeze(&bench, &app, &bench.env(), true).await;
    assert!(out.ok, "{out:?}");
    assert!(out.output_tail.contains("dry run:"), "{out:?}");
    assert!(
        out.output_tail.contains(&format!(
            "would run: criu dump --tree {} --images-dir {images}.partial",
            app.pid()
        )),
        "{out:?}"
    );
    assert_eq!(bench.calls(), vec!["criu --version", "criu check"]);
    assert!(!Path::new(&images).exists());
    assert!(!Path::new(&format!("{images}.partial")).exists());
    assert!(bench.records().is_empty(), "a dry run recorded something");
    assert!(app.running());
}

#[tokio::test]
async fn criu_dump_dry_run_fails_when_the_workload_is_not_running() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let out = run_step(
        &[
            &recipe("criu-dump.sh"),
            &bench.s("missing.pid"),
            &bench.s("checkpoints/app"),
        ],
        &bench.env(),
        "freeze",
        true,
    )
    .await;
    assert_exit(&out, 6);
    assert!(out.output_tail.contains("missing.pid not found"), "{out:?}");
}

#[tokio::test]
async fn criu_dump_twice_with_the_same_idempotency_key_dumps_once() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let app = Workload::start(&bench);
    let images = bench.s("checkpoints/app");
    let argv = [
        recipe("criu-dump.sh"),
        "--leave-running".into(),
        app.pidfile.clone(),
        images.clone(),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let first = run_step(&argv, &bench.env(), "checkpoint", false).await;
    assert!(first.ok, "{first:?}");
    let calls = bench.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("criu dump")).count(),
        1
    );

    let again = run_step(&argv, &bench.env(), "checkpoint", false).await;
    assert!(again.ok, "{again:?}");
    assert!(
        again
            .output_tail
            .contains("already done for idempotency key a/7/checkpoint"),
        "{again:?}"
    );
    assert_eq!(bench.calls(), calls, "the second run called something");

    // Another key (another epoch or step) dumps again.
    let other = run_step(&argv, &bench.env(), "checkpoint-2", false).await;
    assert!(other.ok, "{other:?}");
    assert_eq!(
        bench
            .calls()
            .iter()
            .filter(|c| c.starts_with("criu dump"))
            .count(),
        2
    );
}

#[tokio::test]
async fn old_criu_is_refused_with_its_version_and_the_need_for_4_1() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let app = Workload::start(&bench);
    let mut env = bench.env();
    env.insert("STANDIN_CRIU_VERSION".into(), "3.17.1".into());
    let images = bench.s("checkpoints/app");
    for dry_run in [true, false] {
        let out = freeze(&bench, &app, &env, dry_run).await;
        assert_exit(&out, 4);
        assert!(
            out.output_tail.contains(
                "CRIU 3.17.1 found; this recipe needs CRIU 4.1 or newer (4.1 is the first release"
            ),
            "{out:?}"
        );
        assert!(out.output_tail.contains("pidfds"), "{out:?}");
    }
    let out = run_step(
        &[&recipe("criu-restore.sh"), &images],
        &env,
        "migrate",
        false,
    )
    .await;
    assert_exit(&out, 4);
    assert!(out.output_tail.contains("CRIU 3.17.1 found"), "{out:?}");
    assert!(
        bench.calls().iter().all(|c| c == "criu --version"),
        "an old CRIU was used for more than its version: {:?}",
        bench.calls()
    );
}

#[tokio::test]
async fn criu_versions_are_compared_numerically() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let app = Workload::start(&bench);
    for (version, accepted) in [
        ("3.19", false),
        ("4.0", false),
        ("4.0.2", false),
        ("4.1", true),
        ("4.1.1", true),
        ("4.10", true),
        ("5.0", true),
    ] {
        let mut env = bench.env();
        env.insert("STANDIN_CRIU_VERSION".into(), version.into());
        let out = freeze(&bench, &app, &env, true).await;
        if accepted {
            assert!(out.ok, "{version}: {out:?}");
        } else {
            assert_exit(&out, 4);
            assert!(
                out.output_tail.contains(&format!("CRIU {version} found")),
                "{version}: {out:?}"
            );
        }
    }
}

#[tokio::test]
async fn missing_criu_is_named() {
    let bench = Bench::new();
    let app = Workload::start(&bench);
    let mut env = bench.env();
    // Without a stand-in, criu must not be found on PATH (bin:/usr/bin:/bin).
    if ["/usr/bin/criu", "/bin/criu"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        env.insert("CRIU".into(), "/nonexistent/criu".into());
    }
    let out = freeze(&bench, &app, &env, true).await;
    assert_exit(&out, 3);
    assert!(out.output_tail.contains("criu not found"), "{out:?}");
    assert!(
        out.output_tail.contains("install CRIU 4.1 or newer"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_failing_criu_check_is_reported_as_missing_kernel_support() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let app = Workload::start(&bench);
    let mut env = bench.env();
    env.insert("STANDIN_CRIU_CHECK".into(), "fail".into());
    let out = freeze(&bench, &app, &env, true).await;
    assert_exit(&out, 5);
    assert!(out.output_tail.contains("check' failed"), "{out:?}");
    assert!(out.output_tail.contains("kerndat_vdso"), "{out:?}");
}

/// The real CRIU, where installed: Debian bookworm's 3.17.1 must be refused as too old.
#[tokio::test]
async fn the_installed_criu_is_detected_as_too_old() {
    let Some(real) = [
        "/usr/sbin/criu",
        "/usr/bin/criu",
        "/sbin/criu",
        "/usr/local/sbin/criu",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists()) else {
        eprintln!("criu is not installed: nothing to check (apt-get install criu)");
        return;
    };
    let version_out = Command::new(real).arg("--version").output().unwrap();
    let version_text = String::from_utf8_lossy(&version_out.stdout).to_string();
    let version = version_text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("criu --version names its version")
        .trim()
        .to_string();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));

    let bench = Bench::new();
    let app = Workload::start(&bench);
    let mut env = bench.env();
    env.insert("CRIU".into(), real.into());
    let out = freeze(&bench, &app, &env, true).await;
    if (major, minor) < (4, 1) {
        assert_exit(&out, 4);
        assert!(
            out.output_tail.contains(&format!(
                "CRIU {version} found; this recipe needs CRIU 4.1 or newer"
            )),
            "{out:?}"
        );
    } else {
        // New enough: the version passes; `criu check` may still fail on this kernel.
        assert!(
            !out.output_tail.contains("this recipe needs CRIU"),
            "{out:?}"
        );
    }
}

#[tokio::test]
async fn criu_restore_stopped_then_resume_then_discard() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let mut app = Workload::start(&bench);
    let images = bench.s("checkpoints/app");
    let env = bench.env();
    let out = freeze(&bench, &app, &env, false).await;
    assert!(out.ok, "{out:?}");
    assert!(app.exits());

    // Migrate: restore, left stopped.
    let restore = [
        recipe("criu-restore.sh"),
        "--leave-stopped".into(),
        images.clone(),
        "--".into(),
        "--tcp-close".into(),
    ];
    let restore: Vec<&str> = restore.iter().map(String::as_str).collect();
    let dry = run_step(&restore, &env, "migrate", true).await;
    assert!(dry.ok, "{dry:?}");
    assert!(!bench.calls().iter().any(|c| c.starts_with("criu restore")));
    let restored_pidfile = PathBuf::from(format!("{images}/restored.pid"));
    assert!(!restored_pidfile.exists());

    let out = run_step(&restore, &env, "migrate", false).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        bench.calls().last().unwrap(),
        &format!(
            "criu restore --images-dir {images} --restore-detached --pidfile {} \
             --log-file restore.log --leave-stopped --tcp-close",
            restored_pidfile.display()
        )
    );
    let restored = read_pid(&restored_pidfile);
    bench.stray(restored);
    assert_eq!(proc_state(restored), Some('T'), "not left stopped");

    // A retry of the same step does not restore a second copy...
    let calls = bench.calls();
    let again = run_step(&restore, &env, "migrate", false).await;
    assert!(
        again.ok && again.output_tail.contains("already done"),
        "{again:?}"
    );
    assert_eq!(bench.calls(), calls);
    // ... and neither does another step while the copy runs.
    let other = run_step(&restore, &env, "migrate-again", false).await;
    assert_exit(&other, 7);
    assert!(
        other
            .output_tail
            .contains(&format!("a restored copy already runs as pid {restored}")),
        "{other:?}"
    );
    let restores = |calls: &[String]| {
        calls
            .iter()
            .filter(|c| c.starts_with("criu restore"))
            .count()
    };
    assert_eq!(restores(&bench.calls()), restores(&calls));

    // Resume: a dry run leaves it stopped; the step continues it, once.
    let pidfile = restored_pidfile.to_str().unwrap();
    let resume = [recipe("criu-resume.sh"), pidfile.to_string()];
    let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
    let dry = run_step(&resume, &env, "resume", true).await;
    assert!(
        dry.ok && dry.output_tail.contains("would send SIGCONT"),
        "{dry:?}"
    );
    assert_eq!(proc_state(restored), Some('T'));
    let out = run_step(&resume, &env, "resume", false).await;
    assert!(out.ok, "{out:?}");
    assert!(
        matches!(proc_state(restored), Some('S' | 'R')),
        "{:?}",
        proc_state(restored)
    );
    // Stopped again by someone else: the same key does not resume it a second time.
    kill(restored, "STOP");
    let until = Instant::now() + Duration::from_secs(2);
    while proc_state(restored) != Some('T') && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let again = run_step(&resume, &env, "resume", false).await;
    assert!(
        again.ok && again.output_tail.contains("already done"),
        "{again:?}"
    );
    assert_eq!(proc_state(restored), Some('T'));

    // Discard (the compensation): the restored copy is killed, its pid file removed.
    let discard = [recipe("criu-discard.sh"), pidfile.to_string()];
    let discard: Vec<&str> = discard.iter().map(String::as_str).collect();
    let dry = run_step(&discard, &env, "discard-migrated", true).await;
    assert!(dry.ok, "{dry:?}");
    assert!(proc_state(restored).is_some());
    let out = run_step(&discard, &env, "discard-migrated", false).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(proc_state(restored), None, "the restored copy survived");
    assert!(!restored_pidfile.exists());
    let nothing = run_step(&discard, &env, "discard-migrated-2", false).await;
    assert!(
        nothing.ok && nothing.output_tail.contains("nothing to discard"),
        "{nothing:?}"
    );
}

#[tokio::test]
async fn criu_restore_without_a_checkpoint_is_named() {
    let bench = Bench::new();
    bench.stand_in("criu", CRIU);
    let images = bench.s("checkpoints/none");
    std::fs::create_dir(&images).unwrap();
    let out = run_step(
        &[&recipe("criu-restore.sh"), &images],
        &bench.env(),
        "migrate",
        true,
    )
    .await;
    assert_exit(&out, 6);
    assert!(
        out.output_tail.contains("no complete checkpoint"),
        "{out:?}"
    );
}

// ---------------------------------------------------------------- DRBD

/// A bench with the stand-in drbdadm and a loaded drbd module (a stand-in /proc/drbd).
fn drbd_bench() -> (Bench, Map<String, Value>) {
    let bench = Bench::new();
    bench.stand_in("drbdadm", DRBDADM);
    std::fs::write(
        bench.path("proc-drbd"),
        "version: 9.2.12 (api:2/proto:86-122)\n",
    )
    .unwrap();
    let mut env = bench.env();
    env.insert("DRBD_PROC".into(), bench.s("proc-drbd").into());
    (bench, env)
}

#[tokio::test]
async fn drbd_promote_makes_the_resource_primary_once_per_key() {
    let (bench, env) = drbd_bench();
    bench.set_role("r0", "Secondary/Unknown");
    let argv = [recipe("drbd-promote.sh"), "r0".into()];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = run_step(&argv, &env, "promote-volumes", false).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        bench.calls(),
        vec!["drbdadm role r0", "drbdadm primary r0", "drbdadm role r0"]
    );
    assert_eq!(bench.role("r0"), "Primary/Unknown");

    let again = run_step(&argv, &env, "promote-volumes", false).await;
    assert!(
        again.ok && again.output_tail.contains("already done"),
        "{again:?}"
    );
    assert_eq!(bench.calls().len(), 3, "the second run called drbdadm");
}

#[tokio::test]
async fn drbd_promote_of_a_primary_does_nothing() {
    let (bench, env) = drbd_bench();
    bench.set_role("r0", "Primary/Unknown");
    bench.set_role("r1", "Primary");
    let out = run_step(
        &[&recipe("drbd-promote.sh"), "r0", "r1"],
        &env,
        "promote-volumes",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.output_tail.contains("already Primary: r0 r1"),
        "{out:?}"
    );
    assert_eq!(bench.calls(), vec!["drbdadm role r0", "drbdadm role r1"]);
}

#[tokio::test]
async fn drbd_dry_run_only_reads_the_roles() {
    let (bench, env) = drbd_bench();
    bench.set_role("r0", "Secondary/Unknown");
    let out = run_step(
        &[&recipe("drbd-promote.sh"), "r0"],
        &env,
        "promote-volumes",
        true,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.output_tail.contains("would run: drbdadm primary r0"),
        "{out:?}"
    );
    assert!(out.output_tail.contains("drbd module loaded"), "{out:?}");
    assert_eq!(bench.calls(), vec!["drbdadm role r0"]);
    assert_eq!(bench.role("r0"), "Secondary/Unknown");
    assert!(bench.records().is_empty());
}

#[tokio::test]
async fn drbd_demote_makes_the_resource_secondary() {
    let (bench, env) = drbd_bench();
    bench.set_role("r0", "Primary/Unknown");
    let out = run_step(
        &[&recipe("drbd-demote.sh"), "r0"],
        &env,
        "demote-volumes",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        bench.calls(),
        vec!["drbdadm role r0", "drbdadm secondary r0", "drbdadm role r0"]
    );
    assert_eq!(bench.role("r0"), "Secondary/Unknown");
}

#[tokio::test]
async fn drbd_promote_refuses_while_the_peer_is_primary() {
    let (bench, env) = drbd_bench();
    bench.set_role("r0", "Secondary/Primary");
    for dry_run in [true, false] {
        let out = run_step(
            &[&recipe("drbd-promote.sh"), "r0"],
            &env,
            "promote-volumes",
            dry_run,
        )
        .await;
        assert_exit(&out, 7);
        assert!(
            out.output_tail.contains("the peer of r0 is Primary"),
            "{out:?}"
        );
    }
    assert!(!bench.calls().iter().any(|c| c.contains("primary")));
}

#[tokio::test]
async fn an_unknown_drbd_resource_is_named() {
    let (bench, env) = drbd_bench();
    let out = run_step(
        &[&recipe("drbd-promote.sh"), "r9"],
        &env,
        "promote-volumes",
        true,
    )
    .await;
    assert_exit(&out, 6);
    assert!(
        out.output_tail.contains("'drbdadm role r9' failed"),
        "{out:?}"
    );
    assert_eq!(bench.calls(), vec!["drbdadm role r9"]);
}

#[tokio::test]
async fn a_missing_drbd_module_is_named() {
    let (bench, mut env) = drbd_bench();
    bench.stand_in("modinfo", MODINFO_WITHOUT_DRBD);
    env.insert("DRBD_PROC".into(), bench.s("no-proc-drbd").into());
    bench.set_role("r0", "Secondary/Unknown");
    for argv in [
        [recipe("drbd-promote.sh"), "r0".into()],
        [recipe("drbd-demote.sh"), "r0".into()],
    ] {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = run_step(&argv, &env, "promote-volumes", true).await;
        assert_exit(&out, 5);
        assert!(
            out.output_tail
                .contains("the drbd kernel module is neither loaded")
                && out.output_tail.contains("Module drbd not found"),
            "{out:?}"
        );
    }
    assert!(
        bench.calls().iter().all(|c| c == "modinfo drbd"),
        "{:?}",
        bench.calls()
    );
}

#[tokio::test]
async fn an_installed_but_not_loaded_drbd_module_is_enough() {
    let (bench, mut env) = drbd_bench();
    bench.stand_in(
        "modinfo",
        "#!/bin/sh\necho \"filename:       /lib/modules/6.1.0/updates/dkms/drbd.ko\"\n",
    );
    env.insert("DRBD_PROC".into(), bench.s("no-proc-drbd").into());
    bench.set_role("r0", "Secondary/Unknown");
    let out = run_step(
        &[&recipe("drbd-promote.sh"), "r0"],
        &env,
        "promote-volumes",
        true,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.output_tail.contains(
            "drbd module installed but not loaded (/lib/modules/6.1.0/updates/dkms/drbd.ko)"
        ),
        "{out:?}"
    );
}

#[tokio::test]
async fn missing_drbdadm_is_named() {
    let bench = Bench::new();
    let out = run_step(
        &[&recipe("drbd-promote.sh"), "r0"],
        &bench.env(),
        "promote-volumes",
        true,
    )
    .await;
    assert_exit(&out, 3);
    assert!(out.output_tail.contains("drbdadm not found"), "{out:?}");
    assert!(out.output_tail.contains("drbd-utils"), "{out:?}");
}

// ---------------------------------------------------------------- virtual IP

/// Stand-in ip: device D exists when $STANDIN_IP/D.link exists (its content is the flags,
/// e.g. "UP,LOWER_UP"), its addresses are the lines of $STANDIN_IP/D.addrs ("inet A/L");
/// `ip netns list` lists $STANDIN_IP/netns, `ip netns exec NS CMD` runs CMD.
const IP: &str = r#"#!/bin/sh
echo "ip $*" >> "$STANDIN_LOG"
if [ "$1" = -n ]; then
	grep -qx "$2" "$STANDIN_IP/netns" 2>/dev/null || { echo "Cannot open network namespace \"$2\"" >&2; exit 1; }
	shift 2
fi
if [ "$1" = netns ]; then
	case $2 in
	list) cat "$STANDIN_IP/netns" 2>/dev/null; exit 0 ;;
	exec) shift 3; exec "$@" ;;
	esac
fi
[ "$1" = -o ] && shift
case $1 in -4 | -6) shift ;; esac
obj=$1 verb=$2
case $obj in
link)
	dev=$4
	[ -f "$STANDIN_IP/$dev.link" ] || { echo "Device \"$dev\" does not exist." >&2; exit 1; }
	echo "2: $dev: <BROADCAST,MULTICAST,$(cat "$STANDIN_IP/$dev.link")> mtu 1500 qdisc noqueue state UP" ;;
address)
	case $verb in
	show)
		dev=$4
		[ -f "$STANDIN_IP/$dev.link" ] || { echo "Device \"$dev\" does not exist." >&2; exit 1; }
		while read -r fam cidr flags; do
			echo "2: $dev    $fam $cidr scope global ${flags:+$flags }$dev\       valid_lft forever preferred_lft forever"
		done < "$STANDIN_IP/$dev.addrs" ;;
	add)
		cidr=$3 dev=$5
		grep -q " $cidr\$" "$STANDIN_IP/$dev.addrs" && { echo "RTNETLINK answers: File exists" >&2; exit 2; }
		case $cidr in
		# IPv6: DAD ends at once, or fails when STANDIN_DAD=failed (another host holds it).
		*:*) echo "inet6 $cidr${STANDIN_DAD:+ $STANDIN_DAD}" >> "$STANDIN_IP/$dev.addrs" ;;
		*) echo "inet $cidr" >> "$STANDIN_IP/$dev.addrs" ;;
		esac ;;
	del)
		cidr=$3 dev=$5
		grep -q " $cidr\( .*\)\{0,1\}\$" "$STANDIN_IP/$dev.addrs" || { echo "RTNETLINK answers: Cannot assign requested address" >&2; exit 2; }
		grep -v " $cidr\( .*\)\{0,1\}\$" "$STANDIN_IP/$dev.addrs" > "$STANDIN_IP/$dev.tmp"
		mv "$STANDIN_IP/$dev.tmp" "$STANDIN_IP/$dev.addrs" ;;
	esac ;;
*) exit 1 ;;
esac
"#;

/// Stand-in arping of iputils: `-V` names iputils, every other call is recorded; `-D`
/// (duplicate address detection) finds the host STANDIN_ARP_OWNER (a MAC) when it is set.
const ARPING: &str = r#"#!/bin/sh
case $1 in -V) echo "arping from iputils 20221126"; exit 0 ;; esac
echo "arping $*" >> "$STANDIN_LOG"
if [ "$1" = -D ] && [ -n "$STANDIN_ARP_OWNER" ]; then
	for last; do :; done
	echo "ARPING $last from 0.0.0.0 l2"
	echo "Unicast reply from $last [$STANDIN_ARP_OWNER]  0.612ms"
	exit 1
fi
"#;

const VIP: &str = "198.18.50.10/24";

/// A bench with the stand-in ip and arping and one device, l2, up and without address.
fn vip_bench() -> (Bench, Map<String, Value>) {
    let bench = Bench::new();
    bench.stand_in("ip", IP);
    bench.stand_in("arping", ARPING);
    std::fs::create_dir(bench.path("ip")).unwrap();
    std::fs::write(bench.path("ip/l2.link"), "UP,LOWER_UP").unwrap();
    std::fs::write(bench.path("ip/l2.addrs"), "").unwrap();
    let mut env = bench.env();
    env.insert("STANDIN_IP".into(), bench.s("ip").into());
    (bench, env)
}

fn addresses(bench: &Bench) -> String {
    std::fs::read_to_string(bench.path("ip/l2.addrs")).unwrap()
}

#[tokio::test]
async fn vip_add_adds_the_address_then_sends_gratuitous_arp_once_per_key() {
    let (bench, env) = vip_bench();
    let argv = [recipe("vip-add.sh"), VIP.into(), "l2".into()];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = run_step(&argv, &env, "vip-add-b", false).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(addresses(&bench), format!("inet {VIP}\n"));
    let garp = "arping -U -c 1 -I l2 198.18.50.10".to_string();
    assert_eq!(
        bench.calls(),
        vec![
            "ip -o link show dev l2".to_string(),
            "ip -o -4 address show dev l2".to_string(),
            format!("ip address add {VIP} dev l2"),
            garp.clone(),
            garp.clone(),
            garp,
        ]
    );
    assert!(
        out.output_tail.contains(&format!(
            "added {VIP} on l2 and announced it (site=a epoch=7 step=vip-add-b key=a/7/vip-add-b)"
        )),
        "{out:?}"
    );
    let records = bench.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = std::fs::read_to_string(&records[0]).unwrap();
    assert!(
        record.contains(&format!("done: added {VIP} on l2")),
        "{record}"
    );

    // The same key again: nothing is called, the address is not added twice.
    let calls = bench.calls();
    let again = run_step(&argv, &env, "vip-add-b", false).await;
    assert!(
        again.ok
            && again
                .output_tail
                .contains("already done for idempotency key a/7/vip-add-b"),
        "{again:?}"
    );
    assert_eq!(bench.calls(), calls);
    assert_eq!(addresses(&bench), format!("inet {VIP}\n"));
}

#[tokio::test]
async fn vip_add_of_an_address_already_there_announces_it_without_adding() {
    let (bench, env) = vip_bench();
    std::fs::write(bench.path("ip/l2.addrs"), format!("inet {VIP}\n")).unwrap();
    let out = run_step(
        &[&recipe("vip-add.sh"), "--count", "1", VIP, "l2"],
        &env,
        "vip-add-b",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.output_tail
            .contains(&format!("{VIP} was already on l2; announced")),
        "{out:?}"
    );
    assert!(!bench.calls().iter().any(|c| c.contains("address add")));
    assert_eq!(
        bench.calls().last().unwrap(),
        "arping -U -c 1 -I l2 198.18.50.10"
    );
}

#[tokio::test]
async fn vip_dry_runs_only_read() {
    let (bench, env) = vip_bench();
    let out = run_step(&[&recipe("vip-add.sh"), VIP, "l2"], &env, "vip-add-b", true).await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.output_tail.contains(&format!(
            "would run: ip address add {VIP} dev l2; arping -U -c 1 -I l2 198.18.50.10 (3 times, 0.2 s apart)"
        )),
        "{out:?}"
    );
    std::fs::write(bench.path("ip/l2.addrs"), format!("inet {VIP}\n")).unwrap();
    let out = run_step(
        &[&recipe("vip-remove.sh"), VIP, "l2"],
        &env,
        "vip-remove-a",
        true,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.output_tail
            .contains(&format!("would run: ip address del {VIP} dev l2")),
        "{out:?}"
    );
    assert_eq!(addresses(&bench), format!("inet {VIP}\n"));
    assert!(
        bench
            .calls()
            .iter()
            .all(|c| c.contains(" show ") || c.contains("link show")),
        "{:?}",
        bench.calls()
    );
    assert!(bench.records().is_empty(), "a dry run recorded something");
}

#[tokio::test]
async fn vip_remove_then_its_compensation_puts_the_address_back() {
    let (bench, env) = vip_bench();
    std::fs::write(
        bench.path("ip/l2.addrs"),
        format!("inet 198.18.50.1/24\ninet {VIP}\n"),
    )
    .unwrap();
    let remove = [recipe("vip-remove.sh"), VIP.into(), "l2".into()];
    let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
    let out = run_step(&remove, &env, "vip-remove-a", false).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(addresses(&bench), "inet 198.18.50.1/24\n");
    assert!(
        out.output_tail.contains(&format!("removed {VIP} from l2")),
        "{out:?}"
    );
    // Nothing there (a retry under another key, a host that lost it): success.
    let out = run_step(&remove, &env, "vip-remove-a-2", false).await;
    assert!(
        out.ok && out.output_tail.contains("nothing to remove"),
        "{out:?}"
    );
    // The failback: the compensation adds it back and announces it.
    let out = run_step(
        &[&recipe("vip-add.sh"), VIP, "l2"],
        &env,
        "vip-add-a",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        addresses(&bench),
        format!("inet 198.18.50.1/24\ninet {VIP}\n")
    );
}

#[tokio::test]
async fn vip_recipes_act_inside_the_named_network_namespace() {
    let (bench, mut env) = vip_bench();
    std::fs::write(bench.path("ip/netns"), "svc-b\n").unwrap();
    env.insert("VIP_NETNS".into(), "svc-b".into());
    let out = run_step(
        &[&recipe("vip-add.sh"), "--count", "1", VIP, "l2"],
        &env,
        "vip-add-b",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.output_tail
            .contains("on l2 in network namespace svc-b and announced it"),
        "{out:?}"
    );
    let calls = bench.calls();
    assert!(
        calls.contains(&format!("ip -n svc-b address add {VIP} dev l2")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"ip netns exec svc-b timeout 0.2 /dev/null".replace(
            "/dev/null",
            &format!("{} -U -c 1 -I l2 198.18.50.10", bench.s("bin/arping"))
        )),
        "{calls:?}"
    );

    env.insert("VIP_NETNS".into(), "svc-x".into());
    let out = run_step(
        &[&recipe("vip-remove.sh"), VIP, "l2"],
        &env,
        "vip-remove-x",
        true,
    )
    .await;
    assert_exit(&out, 6);
    assert!(
        out.output_tail
            .contains("network namespace svc-x not found"),
        "{out:?}"
    );
}

#[tokio::test]
async fn vip_add_of_an_ipv6_address_lets_the_kernel_advertise_it_and_refuses_a_duplicate() {
    let (bench, env) = vip_bench();
    bench.stand_in(
        "sysctl",
        "#!/bin/sh\necho \"sysctl $*\" >> \"$STANDIN_LOG\"\n",
    );
    let out = run_step(
        &[&recipe("vip-add.sh"), "2001:db8::10/64", "l2"],
        &env,
        "vip-add-b",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.output_tail
            .contains("2001:db8::10 passed DAD on l2: the kernel advertised it (unsolicited NA)"),
        "{out:?}"
    );
    let calls = bench.calls();
    assert_eq!(
        calls[2..4],
        [
            "sysctl -w net.ipv6.conf.l2.ndisc_notify=1".to_string(),
            "ip address add 2001:db8::10/64 dev l2".to_string()
        ],
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("arping")), "{calls:?}");

    // Another host holds the address: DAD fails, the address is taken off again, exit 7.
    let (bench, mut env) = vip_bench();
    bench.stand_in("sysctl", "#!/bin/sh\n");
    env.insert("STANDIN_DAD".into(), "dadfailed tentative".into());
    let out = run_step(
        &[&recipe("vip-add.sh"), "2001:db8::10/64", "l2"],
        &env,
        "vip-add-b",
        false,
    )
    .await;
    assert_exit(&out, 7);
    assert!(
        out.output_tail
            .contains("another host on the segment of l2 holds 2001:db8::10"),
        "{out:?}"
    );
    assert_eq!(addresses(&bench), "");
    assert!(bench
        .records()
        .iter()
        .all(|r| r.to_string_lossy().ends_with(".started")));
}

#[tokio::test]
async fn vip_add_refuse_duplicate_asks_the_segment_first() {
    let (bench, mut env) = vip_bench();
    env.insert("STANDIN_ARP_OWNER".into(), "02:00:5E:00:00:0A".into());
    let argv = [
        recipe("vip-add.sh"),
        "--refuse-duplicate".into(),
        VIP.into(),
        "l2".into(),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    for dry_run in [true, false] {
        let out = run_step(&argv, &env, "vip-add-b", dry_run).await;
        assert_exit(&out, 7);
        assert!(
            out.output_tail.contains(
                "another host (02:00:5E:00:00:0A) on the segment of l2 still answers for 198.18.50.10"
            ),
            "{out:?}"
        );
    }
    assert_eq!(addresses(&bench), "");
    assert!(
        !bench.calls().iter().any(|c| c.starts_with("arping -U")),
        "{:?}",
        bench.calls()
    );

    // Nobody answers: added and announced.
    env.remove("STANDIN_ARP_OWNER");
    let out = run_step(&argv, &env, "vip-add-b", false).await;
    assert!(out.ok, "{out:?}");
    assert!(bench
        .calls()
        .contains(&"arping -D -c 2 -w 1 -I l2 198.18.50.10".to_string()));
    assert_eq!(addresses(&bench), format!("inet {VIP}\n"));
}

#[tokio::test]
async fn vip_refusals_are_named() {
    let (bench, mut env) = vip_bench();
    // A device that does not exist, or is down: nothing to act on.
    let out = run_step(
        &[&recipe("vip-add.sh"), VIP, "eth9"],
        &env,
        "vip-add-b",
        true,
    )
    .await;
    assert_exit(&out, 6);
    assert!(out.output_tail.contains("device eth9 not found"), "{out:?}");
    std::fs::write(bench.path("ip/l2.link"), "").unwrap();
    let out = run_step(&[&recipe("vip-add.sh"), VIP, "l2"], &env, "vip-add-b", true).await;
    assert_exit(&out, 6);
    assert!(out.output_tail.contains("device l2 is down"), "{out:?}");
    std::fs::write(bench.path("ip/l2.link"), "UP,LOWER_UP").unwrap();
    // Not an address.
    for bad in ["198.18.50/24", "198.18.50.10/33", "host.example"] {
        let out = run_step(&[&recipe("vip-add.sh"), bad, "l2"], &env, "vip-add-b", true).await;
        assert_exit(&out, 2);
    }
    // No arping of iputils.
    env.insert("ARPING".into(), "/nonexistent/arping".into());
    let out = run_step(&[&recipe("vip-add.sh"), VIP, "l2"], &env, "vip-add-b", true).await;
    assert_exit(&out, 3);
    assert!(
        out.output_tail.contains("install iputils-arping"),
        "{out:?}"
    );
    env.insert("ARPING".into(), "/bin/true".into());
    let out = run_step(&[&recipe("vip-add.sh"), VIP, "l2"], &env, "vip-add-b", true).await;
    assert_exit(&out, 3);
    assert!(
        out.output_tail.contains("is not iputils' arping"),
        "{out:?}"
    );
    assert_eq!(addresses(&bench), "");
}

// ---------------------------------------------------------------- common

#[tokio::test]
async fn an_unwritable_state_dir_is_refused_before_acting() {
    let (bench, mut env) = drbd_bench();
    bench.set_role("r0", "Secondary/Unknown");
    let file = bench.path("not-a-dir");
    std::fs::write(&file, "").unwrap();
    // A path below a regular file can never be created.
    env.insert(
        "RECIPE_STATE_DIR".into(),
        format!("{}/state", file.display()).into(),
    );
    let out = run_step(
        &[&recipe("drbd-promote.sh"), "r0"],
        &env,
        "promote-volumes",
        false,
    )
    .await;
    assert!(!out.ok, "{out:?}");
    assert!(out.output_tail.contains("state dir"), "{out:?}");
    assert_eq!(bench.role("r0"), "Secondary/Unknown");
}

#[test]
fn the_recipes_are_posix_sh() {
    let dir = root().join("config/recipes");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 7, "{scripts:?}");
    for script in &scripts {
        let status = Command::new("sh").arg("-n").arg(script).status().unwrap();
        assert!(status.success(), "{} does not parse", script.display());
        if script.file_name().unwrap() != "common.sh" {
            let text = std::fs::read_to_string(script).unwrap();
            assert!(text.starts_with("#!/bin/sh\n"), "{}", script.display());
            let mode = std::fs::metadata(script).unwrap().permissions().mode();
            assert!(mode & 0o111 != 0, "{} is not executable", script.display());
        }
    }
}

/// The step tables of a TOML text: every `[[...step]]`/`[[...precheck]]` entry, its
/// compensation included, as (kind, actuator params).
fn steps_of(doc: &toml::Value, out: &mut Vec<(String, Value)>) {
    const STEP_KEYS: &[&str] = &[
        "name",
        "kind",
        "timeout_s",
        "retries",
        "backoff_ms",
        "on_failure",
        "compensation",
    ];
    match doc {
        toml::Value::Table(t) => {
            if let Some(toml::Value::String(kind)) = t.get("kind") {
                let params: Map<String, Value> = t
                    .iter()
                    .filter(|(k, _)| !STEP_KEYS.contains(&k.as_str()) && k.as_str() != "confirm")
                    .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap()))
                    .collect();
                out.push((kind.clone(), Value::Object(params)));
            }
            for (k, v) in t {
                // A fence's confirmation is a reader, checked as one (`confirms_of`).
                if k != "confirm" {
                    steps_of(v, out);
                }
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| steps_of(v, out)),
        _ => {}
    }
}

#[test]
fn the_readme_examples_are_valid_steps() {
    let readme = std::fs::read_to_string(root().join("config/recipes/README.md")).unwrap();
    let mut steps = Vec::new();
    let mut blocks = 0;
    for block in readme.split("```toml\n").skip(1) {
        let text = block.split("```").next().unwrap();
        let doc: toml::Value = toml::from_str(text)
            .unwrap_or_else(|e| panic!("a TOML example does not parse: {e}\n{text}"));
        steps_of(&doc, &mut steps);
        blocks += 1;
    }
    assert!(blocks >= 3, "only {blocks} TOML examples");
    let kinds: Vec<&str> = steps.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        kinds.contains(&"exec") && kinds.contains(&"http"),
        "{kinds:?}"
    );
    for (kind, params) in &steps {
        let k: ActuatorKind = kind.parse().expect("a known step kind");
        validate(k, params).unwrap_or_else(|e| panic!("{kind} step {params}: {e}"));
    }
    // Every fence confirmation (`[...fence.confirm]`) is a valid reader.
    let mut confirms = 0;
    for block in readme.split("```toml\n").skip(1) {
        let doc: toml::Value = toml::from_str(block.split("```").next().unwrap()).unwrap();
        let fences = doc
            .get("watch")
            .and_then(|w| w.get("pipeline"))
            .and_then(|p| p.get("fence"))
            .and_then(|f| f.as_array());
        for fence in fences.into_iter().flatten() {
            let mut c = fence["confirm"]
                .as_table()
                .cloned()
                .expect("a confirm table");
            for k in ["name", "kind", "timeout_s", "retries", "interval_ms"] {
                c.remove(k);
            }
            let kind: ActuatorKind = fence["confirm"]["kind"].as_str().unwrap().parse().unwrap();
            let params = serde_json::to_value(&c).unwrap();
            quorate::actuators::confirm::validate(kind, &params)
                .unwrap_or_else(|e| panic!("confirmation {params}: {e}"));
            confirms += 1;
        }
    }
    assert!(confirms >= 1, "no fence example in the README");
}

/// The recipes the exec steps of an example fleet file call; each exists in config/recipes/.
fn recipes_called_by(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join("config").join(file)).unwrap();
    let doc: toml::Value = toml::from_str(&text).unwrap();
    let mut steps = Vec::new();
    steps_of(&doc, &mut steps);
    let mut used = Vec::new();
    for (kind, params) in &steps {
        if kind != "exec" {
            continue;
        }
        let program = params["argv"][0].as_str().unwrap();
        let Some(name) = program.strip_prefix("/usr/share/quorate/recipes/") else {
            continue;
        };
        let path = root().join("config/recipes").join(name);
        assert!(path.exists(), "{file}: {program}: no config/recipes/{name}");
        used.push(name.to_string());
    }
    used
}

#[test]
fn the_vip_move_plan_calls_the_vip_recipes() {
    // Two steps and their compensations, and the isolation step.
    let mut used = recipes_called_by("vip-move.toml");
    used.sort();
    assert_eq!(
        used,
        [
            "vip-add.sh",
            "vip-add.sh",
            "vip-remove.sh",
            "vip-remove.sh",
            "vip-remove.sh"
        ]
    );
}

#[test]
fn the_gmpls_migration_plan_calls_the_recipes() {
    let text = std::fs::read_to_string(root().join("config/gmpls-migration.toml")).unwrap();
    let doc: toml::Value = toml::from_str(&text).unwrap();
    let mut steps = Vec::new();
    steps_of(&doc, &mut steps);
    let mut used = Vec::new();
    for (kind, params) in &steps {
        if kind != "exec" {
            continue;
        }
        let program = params["argv"][0].as_str().unwrap();
        let name = program
            .strip_prefix("/usr/share/quorate/recipes/")
            .unwrap_or_else(|| panic!("exec step runs {program}, not a recipe"));
        let path = root().join("config/recipes").join(name);
        assert!(path.exists(), "{program}: no config/recipes/{name}");
        used.push(name.to_string());
    }
    for name in ["criu-restore.sh", "criu-discard.sh", "criu-resume.sh"] {
        assert!(used.iter().any(|u| u == name), "{name} unused: {used:?}");
    }
}
