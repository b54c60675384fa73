//! The `http` actuator over https: a controller stand-in on 127.0.0.1 that speaks only TLS
//! (rustls, ring), with a certificate issued by a throw-away CA made for each test.

use quorate::actuators::{build, ActuatorKind, StepContext, StepOutcome};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A CA and a server certificate it signed.
struct Pki {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
}

/// A throw-away CA named `ca_name` and a server certificate for `sans` (IP addresses or DNS
/// names).
fn pki(ca_name: &str, sans: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "dr-orchestrator");
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*s).try_into().unwrap()),
        })
        .collect();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: cert.der().clone(),
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// One request the controller received over TLS.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves https on 127.0.0.1 with the server certificate of `pki`; answers 200 with a small
/// JSON body to every request and records it. Handshakes that fail are dropped.
fn https_controller(pki: &Pki) -> (u16, Log) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let config = config.clone();
            let seen = seen.clone();
            std::thread::spawn(move || serve(tcp, config, &seen));
        }
    });
    (port, log)
}

fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, log: &Log) {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return, // handshake refused by the client, or closed
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    log.lock().unwrap().push(Seen {
        request_line,
        headers,
        body,
    });
    let answer = br#"{"accepted":true}"#;
    let _ = write!(
        tls,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = tls.write_all(answer);
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
}

fn ctx(params: Value, dry_run: bool) -> StepContext {
    StepContext {
        site: "a".into(),
        epoch: 7,
        step: "notify-dr-orchestrator".into(),
        idempotency_key: "a/7/notify-dr-orchestrator".into(),
        dry_run,
        timeout: Duration::from_secs(10),
        params,
    }
}

async fn run(params: Value, dry_run: bool) -> StepOutcome {
    let actuator = build(ActuatorKind::Http, &params).expect("params are valid");
    actuator.run(&ctx(params, dry_run)).await
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn https_with_ca_file_succeeds_and_sends_the_idempotency_key_over_tls() {
    let pki = pki("controller CA", &["127.0.0.1"]);
    let (port, log) = https_controller(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &pki.ca_pem);
    let token_file = write(dir.path(), "token", "s3cret\n");
    let out = run(
        json!({
            "url": format!("https://127.0.0.1:{port}/v1/failover"),
            "ca_file": ca_file,
            "token_file": token_file,
            "body": {"event": "site-lost", "target": "b"},
        }),
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(out.detail.contains("-> 200"), "{out:?}");
    assert_eq!(out.output_tail, r#"{"accepted":true}"#);

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let req = &seen[0];
    assert_eq!(req.request_line, "POST /v1/failover HTTP/1.1");
    assert_eq!(
        req.headers.get("idempotency-key").map(String::as_str),
        Some("a/7/notify-dr-orchestrator")
    );
    assert_eq!(
        req.headers.get("authorization").map(String::as_str),
        Some("Bearer s3cret")
    );
    assert!(!req.headers.contains_key("x-quorate-dry-run"));
    assert_eq!(req.body["idempotency_key"], "a/7/notify-dr-orchestrator");
    assert_eq!(req.body["epoch"], 7);
    assert_eq!(req.body["event"], "site-lost");
    assert_eq!(req.body["dry_run"], false);
}

#[tokio::test]
async fn https_dry_run_is_flagged_over_tls() {
    let pki = pki("controller CA", &["127.0.0.1"]);
    let (port, log) = https_controller(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &pki.ca_pem);
    let out = run(
        json!({
            "url": format!("https://127.0.0.1:{port}/v1/failover"),
            "ca_file": ca_file,
            "method": "PUT",
        }),
        true,
    )
    .await;
    assert!(out.ok, "{out:?}");
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].request_line, "PUT /v1/failover HTTP/1.1");
    assert_eq!(
        seen[0].headers.get("x-quorate-dry-run").map(String::as_str),
        Some("1")
    );
    assert_eq!(seen[0].body["dry_run"], true);
}

#[tokio::test]
async fn https_without_ca_file_refuses_the_untrusted_certificate() {
    let pki = pki("controller CA", &["127.0.0.1"]);
    let (port, log) = https_controller(&pki);
    let out = run(
        json!({"url": format!("https://127.0.0.1:{port}/v1/failover")}),
        false,
    )
    .await;
    assert!(!out.ok, "{out:?}");
    assert!(
        out.detail.contains("invalid peer certificate") && out.detail.contains("UnknownIssuer"),
        "{out:?}"
    );
    assert!(out.detail.contains("set ca_file"), "{out:?}");
    assert!(log.lock().unwrap().is_empty(), "a request was sent");
}

#[tokio::test]
async fn https_with_another_ca_in_ca_file_is_refused_and_names_the_file() {
    let pki = pki("controller CA", &["127.0.0.1"]);
    let other = self::pki("another CA", &["127.0.0.1"]);
    let (port, log) = https_controller(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "other-ca.pem", &other.ca_pem);
    let out = run(
        json!({"url": format!("https://127.0.0.1:{port}/v1/failover"), "ca_file": ca_file}),
        false,
    )
    .await;
    assert!(!out.ok, "{out:?}");
    assert!(out.detail.contains("UnknownIssuer"), "{out:?}");
    assert!(out.detail.contains(&ca_file), "{out:?}");
    assert!(log.lock().unwrap().is_empty(), "a request was sent");
}

#[tokio::test]
async fn https_checks_the_host_name_against_the_certificate() {
    // Signed by the trusted CA, but for another name than the URL's host.
    let pki = pki("controller CA", &["dr.example.net"]);
    let (port, log) = https_controller(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &pki.ca_pem);
    let out = run(
        json!({"url": format!("https://127.0.0.1:{port}/v1/failover"), "ca_file": ca_file}),
        false,
    )
    .await;
    assert!(!out.ok, "{out:?}");
    assert!(
        out.detail.contains("invalid peer certificate")
            && out.detail.contains("not valid for name")
            && out
                .detail
                .contains("host name or address the certificate lists"),
        "{out:?}"
    );
    assert!(log.lock().unwrap().is_empty(), "a request was sent");
}

#[tokio::test]
async fn ca_file_is_read_when_the_step_runs() {
    let pki = pki("controller CA", &["127.0.0.1"]);
    let (port, log) = https_controller(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let params = json!({
        "url": format!("https://127.0.0.1:{port}/v1/failover"),
        "ca_file": ca_file.to_str().unwrap(),
    });
    // Not there when the config is checked (it only exists on the nodes)...
    let actuator =
        build(ActuatorKind::Http, &params).expect("a missing ca_file is left to run time");
    let out = actuator.run(&ctx(params.clone(), false)).await;
    assert!(!out.ok, "{out:?}");
    assert!(
        out.detail.starts_with("not sent: cannot read ca_file"),
        "{out:?}"
    );
    assert!(log.lock().unwrap().is_empty());
    // ... and picked up by the same actuator once it is in place.
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let out = actuator.run(&ctx(params, false)).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(log.lock().unwrap().len(), 1);
}
