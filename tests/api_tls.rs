//! HTTPS on the REST API: a fleet whose `[api] tls_cert` / `tls_key` name the nodes' own
//! certificates from `quorate certs` (`{node}` in the paths) answers over https to a client
//! that trusts the fleet CA, refuses plain http, clients that do not trust the CA and
//! connections that never finish a handshake, and `quorate status` reads it over https.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use std::process::Command;
use std::time::Duration;

const OCTET: u8 = 243;

async fn tls_fleet(dir: &std::path::Path) -> LocalFleet {
    let certs = dir.join("certs");
    let text = format!(
        "{}\n[api]\ntls_cert = \"{}/{{node}}.pem\"\ntls_key = \"{}/{{node}}.key\"\n",
        fleet_text(OCTET),
        certs.display(),
        certs.display()
    );
    LocalFleet::start(&text, Some(dir), true)
        .await
        .expect("the fleet starts")
}

fn client(ca: Option<&std::path::Path>, name: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .resolve(name, addr);
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        b = b
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_https_with_the_nodes_certificate_and_refuses_plain_http() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let fleet = tls_fleet(dir.path()).await;
    let addr = api(&fleet, "b1");
    let ca = fleet.certs_dir.join("ca.pem");
    let url = format!("https://b1:{}/healthz", addr.port());

    let trusting = client(Some(&ca), "b1", addr);
    let body: serde_json::Value = eventually("b1 answers over https", || async {
        let r = trusting.get(&url).send().await.map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("status {}", r.status()));
        }
        r.json::<serde_json::Value>()
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(body["node"], "b1", "{body}");

    // The certificate names b1, not a1: a client that checks the name refuses it.
    let wrong_name = client(Some(&ca), "a1", addr);
    let r = wrong_name
        .get(format!("https://a1:{}/healthz", addr.port()))
        .send()
        .await;
    assert!(r.is_err(), "a certificate for another name was accepted");

    // Without the fleet CA (public roots only) the certificate is refused.
    let stranger = client(None, "b1", addr);
    assert!(stranger.get(&url).send().await.is_err());

    // Plain http gets no answer: the listener speaks TLS only.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = plain.get(format!("http://{addr}/healthz")).send().await;
    assert!(
        r.is_err(),
        "plain http answered: {:?}",
        r.map(|r| r.status())
    );

    // A connection that never starts its handshake is closed after the request-head bound
    // (5 s), like a slowloris on plain HTTP.
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("the server closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // The listener still serves after those refusals.
    assert_eq!(trusting.get(&url).send().await.unwrap().status(), 200);

    // The command line: https with --ca-file, the certificate checked against --tls-name.
    let quorate = env!("CARGO_BIN_EXE_quorate");
    let out = tokio::task::spawn_blocking({
        let (ca, addr) = (ca.clone(), addr);
        move || {
            Command::new(quorate)
                .args(["status", "--output", "json", "--api"])
                .arg(format!("https://{addr}"))
                .arg("--ca-file")
                .arg(&ca)
                .env("QUORATE_TLS_NAME", "b1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(status["node"], "b1");

    // Without --ca-file the public roots do not know the fleet CA: a clear refusal.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(quorate)
            .args(["status", "--tls-name", "b1", "--api"])
            .arg(format!("https://{addr}"))
            .env_remove("QUORATE_CA_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot reach https://b1:"), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}
