//! The checks as they run: real sockets, a real HTTP server, real programs.

use super::*;
use std::sync::atomic::{AtomicU8, Ordering};

fn check(kind: CheckKind, interval_ms: u64, rise: u32, fall: u32) -> ServiceCheck {
    ServiceCheck {
        name: "svc".into(),
        kind,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(interval_ms),
        rise,
        fall,
    }
}

fn ids() -> (NodeId, SiteId) {
    (NodeId::from("a1"), SiteId::from("a"))
}

async fn once(c: &ServiceCheck) -> Result<(), String> {
    let (node, site) = ids();
    run_check(c, &node, &site).await
}

#[tokio::test]
async fn a_tcp_check_passes_while_something_listens_and_fails_after() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let c = check(CheckKind::Tcp { target }, 500, 1, 1);
    assert_eq!(once(&c).await, Ok(()));
    drop(listener);
    let err = once(&c).await.unwrap_err();
    assert!(err.starts_with("connect 127.0.0.1:"), "{err}");
}

#[tokio::test]
async fn an_http_check_passes_on_2xx_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Answers "200" to the first connection and "503" to the second.
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for status in ["200 OK", "503 Service Unavailable"] {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let answer =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            s.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    let c = check(
        CheckKind::Http {
            url: format!("http://{addr}/healthz"),
        },
        1000,
        1,
        1,
    );
    assert_eq!(once(&c).await, Ok(()));
    let err = once(&c).await.unwrap_err();
    assert!(err.contains("status 503"), "{err}");
}

#[tokio::test]
async fn an_exec_check_sees_only_path_and_who_runs_it() {
    let argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        "test \"$QUORATE_NODE/$QUORATE_SITE\" = a1/a && test -z \"$HOME$USER\" || { env; exit 3; }"
            .to_string(),
    ];
    let c = check(CheckKind::Exec { argv }, 2000, 1, 1);
    assert_eq!(once(&c).await, Ok(()));
    let c = check(
        CheckKind::Exec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo broken >&2; exit 4".into(),
            ],
        },
        2000,
        1,
        1,
    );
    assert_eq!(once(&c).await, Err("exited 4: broken".to_string()));
}

#[tokio::test]
async fn an_exec_check_that_overruns_is_killed_with_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    // The program leaves a child in its group and hangs.
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let c = check(
        CheckKind::Exec {
            argv: vec!["/bin/sh".into(), "-c".into(), script],
        },
        300,
        1,
        1,
    );
    let started = Instant::now();
    assert_eq!(once(&c).await, Err("timed out".to_string()));
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.split(' ').nth(2) == Some("Z"))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone() {
        assert!(
            Instant::now() < deadline,
            "the check's child {pid} outlived it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn running_checks_report_every_change_of_the_service_health() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("up");
    std::fs::write(&flag, b"").unwrap();
    let argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("test -e {}", flag.display()),
    ];
    let said = Arc::new(AtomicU8::new(u8::MAX));
    let sink_said = said.clone();
    let (node, site) = ids();
    let checks = HealthChecks::start(
        &node,
        &site,
        &[check(CheckKind::Exec { argv }, 50, 2, 2)],
        Arc::new(move |h: ServiceHealth| sink_said.store(h as u8, Ordering::SeqCst)),
    );
    assert_eq!(
        said.load(Ordering::SeqCst),
        ServiceHealth::Pending as u8,
        "at once"
    );
    let wait_for = |want: ServiceHealth| {
        let said = said.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while said.load(Ordering::SeqCst) != want as u8 {
                assert!(Instant::now() < deadline, "never {want:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(ServiceHealth::Passing).await;
    std::fs::remove_file(&flag).unwrap();
    wait_for(ServiceHealth::Failing).await;
    let v = &checks.views()[0];
    assert_eq!((v.state, v.kind), (CheckState::Failing, "exec"));
    assert!(v.failures >= 2 && v.last_error.is_some(), "{v:?}");
    assert_eq!(checks.health(), ServiceHealth::Failing);
    std::fs::write(&flag, b"").unwrap();
    wait_for(ServiceHealth::Passing).await;
    assert_eq!(checks.views()[0].last_error, None);
}
