//! What a step may see and leave behind: the clean environment of an exec step, the process
//! group killed when a step ends, the lock that keeps overlapping bgp steps from losing each
//! other's change, and URLs shown without their userinfo.

use quorate::actuators::route_lock::lock_path;
use quorate::actuators::{build, Actuator, ActuatorKind, StepContext, StepOutcome};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn ctx(step: &str, params: Value, timeout: Duration) -> StepContext {
    StepContext {
        site: "site-a".into(),
        epoch: 42,
        step: step.into(),
        idempotency_key: format!("site-a/42/{step}"),
        dry_run: false,
        timeout,
        params,
    }
}

async fn run(kind: ActuatorKind, step: &str, params: Value, timeout: Duration) -> StepOutcome {
    let actuator: Box<dyn Actuator> = build(kind, &params).expect("params are valid");
    actuator.run(&ctx(step, params, timeout)).await
}

const SECS10: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- environment

#[tokio::test]
async fn an_exec_step_sees_its_own_env_but_not_quorates_secrets() {
    // Set once for this test binary; no other test here reads it.
    std::env::set_var("QUORATE_TEST_LB_SECRET", "s3cret-from-parent");
    let out = run(
        ActuatorKind::Exec,
        "env",
        json!({"argv": ["env"], "env": {"LISTED": "yes"}}),
        SECS10,
    )
    .await;
    assert!(out.ok, "{out:?}");
    let mut names: Vec<&str> = out
        .output_tail
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    names.sort();
    assert!(!out.output_tail.contains("s3cret-from-parent"), "{out:?}");
    assert!(out.output_tail.contains("LISTED=yes\n"), "{out:?}");
    assert!(
        out.output_tail.contains(&format!(
            "PATH={}\n",
            quorate::actuators::process::SAFE_PATH
        )),
        "{out:?}"
    );
    assert_eq!(
        names,
        [
            "LISTED",
            "PATH",
            "QUORATE_DRY_RUN",
            "QUORATE_EPOCH",
            "QUORATE_IDEMPOTENCY_KEY",
            "QUORATE_SITE",
            "QUORATE_STEP"
        ]
    );
}

#[tokio::test]
async fn an_exec_step_may_set_its_own_path() {
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("promote-volume");
    std::fs::write(&tool, "#!/bin/sh\necho promoted\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    let out = run(
        ActuatorKind::Exec,
        "promote",
        json!({"argv": ["promote-volume"], "env": {"PATH": path}}),
        SECS10,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.output_tail, "promoted\n");
}

// ---------------------------------------------------------------- leftovers

/// Alive and not a zombie (a zombie has exited; only its parent has not collected it).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn gone_within(pid: u32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while alive(pid) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !alive(pid)
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_step_that_backgrounds_a_sleep_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    for (exit, want_ok) in [(0, true), (3, false)] {
        let pidfile = dir.path().join(format!("sleep-{exit}.pid"));
        // Output closed, so the step ends as soon as the shell does.
        let command = format!(
            "sleep 1000 >/dev/null 2>&1 & echo $! > {}; exit {exit}",
            pidfile.display()
        );
        let started = Instant::now();
        let out = run(
            ActuatorKind::Exec,
            "background",
            json!({"shell": true, "command": command}),
            SECS10,
        )
        .await;
        assert_eq!(out.ok, want_ok, "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{out:?}");
        let pid = read_pid(&pidfile);
        assert!(
            gone_within(pid, Duration::from_secs(3)).await,
            "sleep {pid} outlived its step (exit {exit})"
        );
    }
}

#[tokio::test]
async fn a_leftover_that_ignores_sigterm_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("stubborn.pid");
    let command = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 1000' >/dev/null 2>&1 & \
         while [ ! -s {} ]; do sleep 0.01; done",
        pidfile.display(),
        pidfile.display()
    );
    let out = run(
        ActuatorKind::Exec,
        "stubborn",
        json!({"shell": true, "command": command}),
        SECS10,
    )
    .await;
    assert!(out.ok, "{out:?}");
    let pid = read_pid(&pidfile);
    assert!(
        gone_within(pid, Duration::from_secs(3)).await,
        "{pid} survived"
    );
}

// ---------------------------------------------------------------- route file locks

/// A `birdc` stand-in that answers `configure` like BIRD after a pause, so that steps
/// overlap while each holds its change.
fn fake_birdc(dir: &Path) -> String {
    let path = dir.join("birdc");
    std::fs::write(
        &path,
        "#!/bin/sh\nsleep 0.05\necho '0002-Reconfiguration in progress'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

fn bird_step(include: &Path, birdc: &str, prefix: &str) -> Value {
    json!({"action": "announce", "prefixes": [prefix], "backend": "bird",
           "include_file": include.to_str().unwrap(), "socket": "/nonexistent/bird.ctl",
           "birdc": birdc})
}

fn announced(include: &Path) -> Vec<String> {
    std::fs::read_to_string(include)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("route "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_bird_steps_on_different_prefixes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let include = dir.path().join("anycast.conf");
    let birdc = fake_birdc(dir.path());
    let prefixes: Vec<String> = (0..8).map(|i| format!("198.19.{i}.0/24")).collect();
    let steps = prefixes.iter().map(|p| {
        let params = bird_step(&include, &birdc, p);
        tokio::spawn(async move { run(ActuatorKind::Bgp, "announce", params, SECS10).await })
    });
    for step in steps.collect::<Vec<_>>() {
        let out = step.await.unwrap();
        assert!(out.ok, "{out:?}");
    }
    assert_eq!(announced(&include), prefixes);
    assert!(lock_path(&include).exists());
}

#[tokio::test]
async fn a_bird_step_waits_for_the_lock_and_gives_up_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let include = dir.path().join("anycast.conf");
    let birdc = fake_birdc(dir.path());
    let held = std::fs::File::create(lock_path(&include)).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let params = bird_step(&include, &birdc, "198.19.9.0/24");
    let out = run(
        ActuatorKind::Bgp,
        "announce",
        params.clone(),
        Duration::from_millis(300),
    )
    .await;
    assert!(!out.ok && out.detail.contains("locked"), "{out:?}");
    assert!(!include.exists(), "the step wrote without the lock");

    let waiting =
        tokio::spawn(async move { run(ActuatorKind::Bgp, "announce", params, SECS10).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!include.exists(), "the step wrote without the lock");
    drop(held);
    let out = waiting.await.unwrap();
    assert!(out.ok, "{out:?}");
    assert_eq!(announced(&include), ["198.19.9.0/24"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_exabgp_steps_keep_every_prefix_in_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("exabgp.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // A reader that stays open, like `cat <> FIFO` under ExaBGP.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let prefixes: Vec<String> = (0..8).map(|i| format!("198.19.{i}.0/24")).collect();
    let steps = prefixes.iter().map(|p| {
        let params = json!({"action": "announce", "prefixes": [p], "backend": "exabgp",
                            "pipe": fifo.to_str().unwrap()});
        tokio::spawn(async move { run(ActuatorKind::Bgp, "announce", params, SECS10).await })
    });
    for step in steps.collect::<Vec<_>>() {
        let out = step.await.unwrap();
        assert!(out.ok, "{out:?}");
    }
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("exabgp.fifo.state")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["announced"], json!(prefixes));
}

// ---------------------------------------------------------------- URLs

#[tokio::test]
async fn an_http_step_never_shows_the_urls_userinfo() {
    // Nothing listens on port 1: the request fails and its error names the target.
    let out = run(
        ActuatorKind::Http,
        "notify",
        json!({"url": "https://ops:hunter2@127.0.0.1:1/v1/failover"}),
        SECS10,
    )
    .await;
    assert!(!out.ok, "{out:?}");
    assert!(
        out.detail.contains("https://127.0.0.1:1/v1/failover"),
        "{out:?}"
    );
    assert!(
        !out.detail.contains("hunter2") && !out.detail.contains("ops:"),
        "{out:?}"
    );
}
