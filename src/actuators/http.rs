//! The `http` actuator asks a controller (a load balancer, a DNS API, an orchestration
//! service) to act for a step by sending one JSON request. It owns the request's shape: the
//! step's identity is always in the body and the `Idempotency-Key` header, so the controller
//! can recognise a retried step and act once. It never retries; a 5xx or a timeout is
//! reported and the pipeline decides.
//!
//! Params: `url` (http://), `method` ("POST" or "PUT", default POST), `body` (a table merged
//! with quorate's fields `site`, `epoch`, `step`, `idempotency_key`, `dry_run`, which win on a
//! clash), `headers` (a table), `token_file` or `token_env` for `Authorization: Bearer`
//! (read at every run, so a rotated token is picked up), `success` (status codes that mean
//! success, default any 2xx), `dry_run = "skip"`.
//! During a dry run the request is still sent, with `"dry_run": true` in the body and the
//! header `X-Quorate-Dry-Run: 1`: the controller must check and not act.
//!
//! This build's HTTP client has no TLS, so `https://` URLs are rejected at config-check time;
//! put a local TLS-terminating proxy in front of the controller.

use super::{Actuator, Params, StepContext, StepFuture, StepOutcome, Tail};
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
    "dry_run",
];

impl HttpActuator {
    pub fn from_params(params: &Value) -> Result<Self, String> {
        let p = Params::new("http", params)?;
        p.only(KNOWN)?;
        let url_s = p.req_str("url", "\"http://127.0.0.1:8080/failover\"")?;
        let url = reqwest::Url::parse(&url_s)
            .map_err(|e| p.err("url", format!("{url_s:?} is not a URL: {e}")))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(p.err(
                    "url",
                    "uses https, but this build's HTTP client has no TLS: \
                     use http:// to a local TLS-terminating proxy",
                ))
            }
            s => return Err(p.err("url", format!("has scheme {s:?}: use http://"))),
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
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("http step: cannot build the HTTP client: {e}"))?;
        Ok(HttpActuator {
            url,
            method,
            body,
            headers,
            token,
            success,
            skip_in_dry_run: p.dry_run_skip()?,
            client,
        })
    }

    fn bearer(&self) -> Result<Option<String>, String> {
        let raw = match &self.token {
            None => return Ok(None),
            Some(Token::File(path)) => std::fs::read_to_string(path)
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
        let mut body = self.body.clone();
        body.insert("site".into(), Value::from(ctx.site.as_str()));
        body.insert("epoch".into(), Value::from(ctx.epoch));
        body.insert("step".into(), Value::from(ctx.step.as_str()));
        body.insert(
            "idempotency_key".into(),
            Value::from(ctx.idempotency_key.as_str()),
        );
        body.insert("dry_run".into(), Value::from(ctx.dry_run));

        let mut req = self
            .client
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
        let target = format!("{} {}", self.method, self.url);
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return StepOutcome::failed(
                    format!("{target}: no response within {:?}", ctx.timeout),
                    "",
                )
            }
            Err(e) => return StepOutcome::failed(format!("{target}: {}", error_chain(&e)), ""),
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
            Err(e) => format!(" (reading the body failed: {})", error_chain(&e)),
        };
        let output = tail.into_string();
        if self.is_success(status) {
            StepOutcome::ok(format!("{target} -> {status}{body_note}"), output)
        } else {
            StepOutcome::failed(format!("{target} -> {status}{body_note}"), output)
        }
    }
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
    fn kind(&self) -> &'static str {
        "http"
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
    fn https_is_refused_with_the_reason() {
        let err = HttpActuator::from_params(&json!({"url": "https://lb.example/x"})).unwrap_err();
        assert!(err.contains("no TLS"), "{err}");
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
    fn authorization_header_is_reserved() {
        let err = HttpActuator::from_params(
            &json!({"url": "http://h/x", "headers": {"Authorization": "Bearer x"}}),
        )
        .unwrap_err();
        assert!(err.contains("token_file"), "{err}");
    }
}
