//! The `http` actuator asks a controller (a load balancer, a DNS API, an orchestration
//! service) to act for a step by sending one JSON request. It owns the request's shape: the
//! step's identity is always in the body and the `Idempotency-Key` header, so the controller
//! can recognise a retried step and act once. It never retries; a 5xx or a timeout is
//! reported and the pipeline decides.
//!
//! Params: `url` (https:// or http://), `method` ("POST" or "PUT", default POST), `body` (a
//! table merged with quorate's fields `site`, `epoch`, `step`, `idempotency_key`, `dry_run`,
//! which win on a clash), `headers` (a table), `token_file` or `token_env` for
//! `Authorization: Bearer` (read at every run, so a rotated token is picked up), `success`
//! (status codes that mean success, default any 2xx), `ca_file` (https only: a PEM bundle of
//! the CAs to trust instead of the built-in roots), `dry_run = "skip"`.
//! During a dry run the request is still sent, with `"dry_run": true` in the body and the
//! header `X-Quorate-Dry-Run: 1`: the controller must check and not act.
//!
//! TLS: `https://` URLs are verified by rustls (ring provider), certificate chain and host
//! name. Without `ca_file` the trusted roots are the Mozilla root program compiled into the
//! binary (the `webpki-roots` crate): the same on every host, no system certificate store
//! needed, nothing fetched at run time. With `ca_file` only the certificates in that PEM file
//! are trusted (a private controller's CA); the file is read at every run, like the token, so
//! a renewed bundle is picked up, and also at config-check time when it is readable there.
//! Client certificates are not supported.
//!
//! Credentials: a bearer token (`token_file`, `token_env`) or URL userinfo is refused with an
//! `http://` URL unless its host is a loopback address written as one (127.0.0.0/8, [::1]):
//! there it never leaves the host. The URL is shown without its userinfo everywhere (see
//! `url_display`).

use super::url_display::{display_url, display_url_text};
use super::{Actuator, ActuatorKind, Params, StepContext, StepFuture, StepOutcome, Tail};
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Debug, Clone)]
enum Token {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone)]
pub struct HttpActuator {
    url: reqwest::Url,
    method: reqwest::Method,
    body: Map<String, Value>,
    headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    token: Option<Token>,
    success: Option<Vec<u16>>,
    skip_in_dry_run: bool,
    ca_file: Option<PathBuf>,
    client: reqwest::Client,
}

const KNOWN: &[&str] = &[
    "url",
    "method",
    "body",
    "headers",
    "token_file",
    "token_env",
    "success",
    "ca_file",
    "dry_run",
];

/// The HTTP client every step uses: no redirects (a controller that moved must be
/// reconfigured, not followed), and with `roots` the only trusted CAs instead of the
/// built-in ones.
fn client(roots: Option<Vec<reqwest::Certificate>>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(roots) = roots {
        builder = builder.tls_built_in_root_certs(false);
        for cert in roots {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| error_chain(&e))
}

/// The certificates of a PEM bundle; an error names the file and what is wrong with it.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let pem = crate::small_file::read(path)
        .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for der in CertificateDer::pem_slice_iter(&pem) {
        let der = der.map_err(|e| format!("ca_file {} is not valid PEM: {e}", path.display()))?;
        let cert = reqwest::Certificate::from_der(&der).map_err(|e| {
            format!(
                "ca_file {} holds a bad certificate: {}",
                path.display(),
                error_chain(&e)
            )
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!(
            "ca_file {} holds no certificate: give a PEM file with at least one \
             -----BEGIN CERTIFICATE----- block",
            path.display()
        ));
    }
    Ok(certs)
}

impl HttpActuator {
    pub fn from_params(params: &Value) -> Result<Self, String> {
        let p = Params::new("http", params)?;
        p.only(KNOWN)?;
        let url_s = p.req_str("url", "\"https://dr.example.net/v1/failover\"")?;
        let url = reqwest::Url::parse(&url_s).map_err(|e| {
            p.err(
                "url",
                format!("{:?} is not a URL: {e}", display_url_text(&url_s)),
            )
        })?;
        match url.scheme() {
            "http" | "https" => {}
            s => {
                return Err(p.err(
                    "url",
                    format!("has scheme {s:?}: use https:// (or http://)"),
                ))
            }
        }
        if url.host_str().is_none() {
            return Err(p.err("url", "has no host"));
        }
        let method = match p.opt_str("method")?.as_deref().map(str::to_ascii_uppercase) {
            None => reqwest::Method::POST,
            Some(m) if m == "POST" => reqwest::Method::POST,
            Some(m) if m == "PUT" => reqwest::Method::PUT,
            Some(m) => return Err(p.err("method", format!("is {m:?}: use \"POST\" or \"PUT\""))),
        };
        let body = match p.get("body") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(p.err("body", "must be a table (it becomes a JSON object)")),
        };
        let mut headers = Vec::new();
        for (k, v) in p.opt_str_map("headers")? {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| p.err("headers", format!("has an invalid header name {k:?}")))?;
            if name == reqwest::header::AUTHORIZATION || name.as_str() == "idempotency-key" {
                return Err(p.err(
                    "headers",
                    format!("sets {k}, which quorate sets itself: use token_file/token_env for the bearer token"),
                ));
            }
            let value = reqwest::header::HeaderValue::from_str(&v)
                .map_err(|_| p.err("headers", format!("has an invalid value for {k}")))?;
            headers.push((name, value));
        }
        let token = match (p.opt_str("token_file")?, p.opt_str("token_env")?) {
            (Some(_), Some(_)) => {
                return Err(p.err("token_file", "and `token_env` are both set: keep one"))
            }
            (Some(f), None) => Some(Token::File(PathBuf::from(f))),
            (None, Some(e)) => Some(Token::Env(e)),
            (None, None) => None,
        };
        if url.scheme() == "http" && !is_loopback(&url) {
            // A secret sent in clear can be read by anyone on the path; on a loopback address
            // it never leaves the host, like the token file it came from.
            let key = match &token {
                Some(Token::File(_)) => Some("token_file"),
                Some(Token::Env(_)) => Some("token_env"),
                None if !url.username().is_empty() || url.password().is_some() => Some("url"),
                None => None,
            };
            if let Some(key) = key {
                return Err(p.err(
                    key,
                    format!(
                        "would send a credential in clear to {}: a bearer token or URL                          userinfo may only travel over https:// (plain http:// is allowed                          with a credential only to a loopback address such as 127.0.0.1)",
                        display_url(&url)
                    ),
                ));
            }
        }
        let success = match p.get("success") {
            None => None,
            Some(Value::Array(codes)) if !codes.is_empty() => Some(
                codes
                    .iter()
                    .map(|c| {
                        c.as_u64()
                            .filter(|c| (100..=599).contains(c))
                            .map(|c| c as u16)
                            .ok_or_else(|| {
                                p.err(
                                    "success",
                                    format!("has {c}: use HTTP status codes such as [200, 202]"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => {
                return Err(p.err(
                    "success",
                    "must be a non-empty list of status codes, e.g. success = [200, 202]",
                ))
            }
        };
        let ca_file = p.opt_str("ca_file")?.map(PathBuf::from);
        if let Some(ca) = &ca_file {
            if url.scheme() != "https" {
                return Err(p.err(
                    "ca_file",
                    "is set but `url` is http://: a CA bundle only applies to https:// URLs",
                ));
            }
            // Checked now when it can be read here; a file that only exists on the nodes (or
            // that only quorate's user may read) is read and checked when the step runs.
            if std::fs::File::open(ca).is_ok() {
                let roots = read_ca_file(ca).map_err(|e| p.err("ca_file", e))?;
                client(Some(roots)).map_err(|e| p.err("ca_file", format!("is unusable: {e}")))?;
            }
        }
        let client =
            client(None).map_err(|e| format!("http step: cannot build the HTTP client: {e}"))?;
        Ok(HttpActuator {
            url,
            method,
            body,
            headers,
            token,
            success,
            skip_in_dry_run: p.dry_run_skip()?,
            ca_file,
            client,
        })
    }

    fn bearer(&self) -> Result<Option<String>, String> {
        let raw = match &self.token {
            None => return Ok(None),
            Some(Token::File(path)) => crate::small_file::read_to_string(path)
                .map_err(|e| format!("cannot read token_file {}: {e}", path.display()))?,
            Some(Token::Env(name)) => std::env::var(name)
                .map_err(|_| format!("token_env {name} is not set in quorate's environment"))?,
        };
        let token = raw.trim().to_string();
        if token.is_empty() {
            return Err("the bearer token is empty".to_string());
        }
        Ok(Some(token))
    }

    /// What to do about a certificate the client did not accept.
    fn tls_hint(&self, e: &reqwest::Error) -> String {
        let chain = error_chain(e);
        if !chain.contains("invalid peer certificate") {
            return String::new();
        }
        if chain.contains("not valid for name") || chain.contains("NotValidForName") {
            return " (the URL's host is not a name in the controller's certificate: \
                    use a host name or address the certificate lists)"
                .to_string();
        }
        match &self.ca_file {
            None => " (the controller's certificate is not trusted by the built-in roots: \
                      set ca_file to the PEM bundle of its CA)"
                .to_string(),
            Some(path) => format!(
                " (the controller's certificate is not trusted by ca_file {}: \
                 it must hold the CA that signed the certificate)",
                path.display()
            ),
        }
    }

    fn is_success(&self, status: reqwest::StatusCode) -> bool {
        match &self.success {
            Some(codes) => codes.contains(&status.as_u16()),
            None => status.is_success(),
        }
    }

    async fn execute(&self, ctx: &StepContext) -> StepOutcome {
        if ctx.dry_run && self.skip_in_dry_run {
            return StepOutcome::skipped_dry_run();
        }
        let token = match self.bearer() {
            Ok(t) => t,
            Err(e) => return StepOutcome::failed(format!("not sent: {e}"), ""),
        };
        // With a private CA the client is built per run from the bundle read now.
        let ca_client;
        let client = match &self.ca_file {
            None => &self.client,
            Some(path) => match read_ca_file(path).and_then(|roots| client(Some(roots))) {
                Ok(c) => {
                    ca_client = c;
                    &ca_client
                }
                Err(e) => return StepOutcome::failed(format!("not sent: {e}"), ""),
            },
        };
        let mut body = self.body.clone();
        body.insert("site".into(), Value::from(ctx.site.as_str()));
        body.insert("epoch".into(), Value::from(ctx.epoch));
        body.insert("step".into(), Value::from(ctx.step.as_str()));
        body.insert(
            "idempotency_key".into(),
            Value::from(ctx.idempotency_key.as_str()),
        );
        body.insert("dry_run".into(), Value::from(ctx.dry_run));

        let mut req = client
            .request(self.method.clone(), self.url.clone())
            .timeout(ctx.timeout)
            .header("Idempotency-Key", &ctx.idempotency_key)
            .json(&Value::Object(body));
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if ctx.dry_run {
            req = req.header("X-Quorate-Dry-Run", "1");
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let target = format!("{} {}", self.method, display_url(&self.url));
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return StepOutcome::failed(
                    format!("{target}: no response within {:?}", ctx.timeout),
                    "",
                )
            }
            Err(e) => {
                let e = e.without_url();
                return StepOutcome::failed(
                    format!("{target}: {}{}", error_chain(&e), self.tls_hint(&e)),
                    "",
                );
            }
        };
        let status = resp.status();
        // Keep only the tail of the body, even if the controller sends megabytes.
        let mut tail = Tail::default();
        let read_body = async {
            while let Some(chunk) = resp.chunk().await? {
                tail.push(&chunk);
            }
            Ok::<(), reqwest::Error>(())
        };
        let body_note = match read_body.await {
            Ok(()) => String::new(),
            Err(e) => format!(
                " (reading the body failed: {})",
                error_chain(&e.without_url())
            ),
        };
        let output = tail.into_string();
        if self.is_success(status) {
            StepOutcome::ok(format!("{target} -> {status}{body_note}"), output)
        } else {
            StepOutcome::failed(format!("{target} -> {status}{body_note}"), output)
        }
    }
}

/// The most of a body a `get` reads: a power controller's resource is a few KiB.
pub(super) const MAX_GET_BODY: usize = 1 << 20;

impl HttpActuator {
    /// One GET of `url` with the step's headers, bearer token and CA bundle (a fence
    /// confirmation's read): the status and the body, at most `MAX_GET_BODY` bytes of it, or
    /// what went wrong. Nothing is sent but the request itself.
    pub(super) async fn get(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        let target = format!("GET {}", display_url(&self.url));
        let token = self.bearer().map_err(|e| format!("not sent: {e}"))?;
        let ca_client;
        let client = match &self.ca_file {
            None => &self.client,
            Some(path) => {
                ca_client = read_ca_file(path)
                    .and_then(|roots| client(Some(roots)))
                    .map_err(|e| format!("not sent: {e}"))?;
                &ca_client
            }
        };
        let mut req = client
            .get(self.url.clone())
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("{target}: no response within {timeout:?}")
            } else {
                let e = e.without_url();
                format!("{target}: {}{}", error_chain(&e), self.tls_hint(&e))
            }
        })?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            format!(
                "{target}: reading the body: {}",
                error_chain(&e.without_url())
            )
        })? {
            if body.len() + chunk.len() > MAX_GET_BODY {
                return Err(format!(
                    "{target}: the body is larger than {MAX_GET_BODY} bytes; point url at the \
                     resource that holds the state"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

/// Whether the URL's host is a loopback address, written as one (a name is not trusted to
/// resolve to loopback).
fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Actuator for HttpActuator {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Http
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
    fn url_is_required() {
        let err = HttpActuator::from_params(&json!({})).unwrap_err();
        assert!(err.contains("`url` is missing"), "{err}");
    }

    #[test]
    fn https_is_accepted() {
        assert!(HttpActuator::from_params(&json!({"url": "https://lb.example/x"})).is_ok());
    }

    #[test]
    fn other_schemes_are_refused() {
        let err = HttpActuator::from_params(&json!({"url": "ftp://lb.example/x"})).unwrap_err();
        assert!(err.contains("\"ftp\"") && err.contains("https://"), "{err}");
    }

    #[test]
    fn ca_file_needs_https() {
        let err = HttpActuator::from_params(
            &json!({"url": "http://lb.example/x", "ca_file": "/etc/quorate/ca.pem"}),
        )
        .unwrap_err();
        assert!(
            err.contains("`ca_file`") && err.contains("https://"),
            "{err}"
        );
    }

    #[test]
    fn ca_file_missing_here_is_left_to_run_time() {
        let p = json!({"url": "https://lb.example/x", "ca_file": "/nonexistent/quorate-ca.pem"});
        assert!(HttpActuator::from_params(&p).is_ok());
    }

    #[test]
    fn ca_file_without_a_certificate_is_refused_when_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = HttpActuator::from_params(
            &json!({"url": "https://lb.example/x", "ca_file": path.to_str().unwrap()}),
        )
        .unwrap_err();
        assert!(
            err.contains("`ca_file`") && err.contains("no certificate"),
            "{err}"
        );
    }

    #[test]
    fn only_post_and_put() {
        let err = HttpActuator::from_params(&json!({"url": "http://h/x", "method": "DELETE"}))
            .unwrap_err();
        assert!(err.contains("\"POST\" or \"PUT\""), "{err}");
        assert!(HttpActuator::from_params(&json!({"url": "http://h/x", "method": "put"})).is_ok());
    }

    #[test]
    fn one_token_source_only() {
        let err = HttpActuator::from_params(
            &json!({"url": "http://h/x", "token_file": "/t", "token_env": "T"}),
        )
        .unwrap_err();
        assert!(err.contains("both set"), "{err}");
    }

    #[test]
    fn success_codes_must_be_status_codes() {
        let err = HttpActuator::from_params(&json!({"url": "http://h/x", "success": [200, 9000]}))
            .unwrap_err();
        assert!(err.contains("`success`"), "{err}");
    }

    #[test]
    fn a_token_over_plain_http_is_refused_naming_the_key() {
        for key in ["token_file", "token_env"] {
            let err = HttpActuator::from_params(
                &json!({"url": "http://lb.example/x", key: "QUORATE_LB_TOKEN"}),
            )
            .unwrap_err();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("https://"),
                "{err}"
            );
        }
        let err =
            HttpActuator::from_params(&json!({"url": "http://ops:pw@lb.example/x"})).unwrap_err();
        assert!(err.contains("`url`") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn a_token_may_go_over_https_or_to_a_loopback_address() {
        for url in [
            "https://lb.example/x",
            "http://127.0.0.1:8080/x",
            "http://127.3.2.1/x",
            "http://[::1]:8080/x",
        ] {
            assert!(
                HttpActuator::from_params(&json!({"url": url, "token_env": "T"})).is_ok(),
                "{url}"
            );
        }
        // A name is not trusted to resolve to loopback.
        assert!(
            HttpActuator::from_params(&json!({"url": "http://localhost/x", "token_env": "T"}))
                .is_err()
        );
    }

    #[test]
    fn an_unparsable_url_is_quoted_without_its_userinfo() {
        let err = HttpActuator::from_params(&json!({"url": "https://ops:hunter2@lb example/x"}))
            .unwrap_err();
        assert!(err.contains("`url`") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn authorization_header_is_reserved() {
        let err = HttpActuator::from_params(
            &json!({"url": "http://h/x", "headers": {"Authorization": "Bearer x"}}),
        )
        .unwrap_err();
        assert!(err.contains("token_file"), "{err}");
    }
}
