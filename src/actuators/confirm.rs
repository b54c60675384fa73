//! The readers that confirm a fence (`[watch.pipeline.fence.confirm]`): each reads, once, the
//! state the fence should have brought about, and succeeds only when it finds it. They never
//! change anything and never retry: the pipeline polls them (`retries`, `interval_ms`) until
//! one read confirms or the budget is spent. A read that cannot be made (controller
//! unreachable, no value at the pointer, router not answering) fails like a read of the wrong
//! state, with its own reason; the last one is what the run's summary shows.
//!
//! - `http` — `GET url` (with `headers`, `token_file`/`token_env` and `ca_file` as for an
//!   http step, under the same credential rules), a JSON body, and the value at the JSON
//!   pointer `pointer` (RFC 6901, e.g. `/PowerState` of a Redfish ComputerSystem) must equal
//!   `expect` (e.g. `"Off"`; a number or boolean is compared as it is written in JSON).
//! - `exec` — runs a program as an exec step does (`argv` or `shell` + `command`, `env`,
//!   `cwd`); it confirms by exiting 0, and, with `expect`, by also printing a line that is
//!   `expect` (trimmed), e.g. `ipmitool ... power status` printing `Chassis Power is off`.
//! - `bgp` — asks a BIRD router that observes the fenced site (`socket`, `birdc`, `netns`) for
//!   each of `prefixes` (`birdc show route PREFIX`, exact prefix, optionally `protocol` = the
//!   BIRD protocol of the session to the fenced site): confirmed when no route for any of them
//!   is left there. Only the BIRD backend reads.
//!
//! Dry runs (drills): a read is harmless, so it is made; it then succeeds whenever the read
//! itself worked, whatever it found (a drill runs while the old primary is up), and says what
//! it read.

use super::exec::ExecActuator;
use super::http::HttpActuator;
use super::process::{cli_command, run_process, Leftovers};
use super::{Actuator, ActuatorKind, Params, StepContext, StepFuture, StepOutcome};
use crate::core::anycast::Prefix;
use serde_json::Value;

/// Checks a confirmation's params at config-check time.
pub fn validate(kind: ActuatorKind, params: &Value) -> Result<(), String> {
    build(kind, params).map(|_| ())
}

/// Builds the reader of a confirmation.
pub fn build(kind: ActuatorKind, params: &Value) -> Result<Box<dyn Actuator>, String> {
    Ok(match kind {
        ActuatorKind::Http => Box::new(HttpReader::from_params(params)?),
        ActuatorKind::Exec => Box::new(ExecReader::from_params(params)?),
        ActuatorKind::Bgp => Box::new(BirdReader::from_params(params)?),
        ActuatorKind::Vpn => {
            return Err(
                "a confirmation cannot be of kind vpn: read the fenced state with kind = \
                 \"http\", \"exec\" or \"bgp\""
                    .to_string(),
            )
        }
    })
}

/// `params` without `keys`: what the actuator the reader borrows from checks.
fn without(params: &Value, keys: &[&str]) -> Value {
    let mut v = params.clone();
    if let Some(m) = v.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    v
}

/// A value as it reads in messages: a string without its quotes' escaping, anything else as
/// JSON.
fn as_read(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct HttpReader {
    get: HttpActuator,
    pointer: String,
    expect: String,
}

impl HttpReader {
    fn from_params(params: &Value) -> Result<Self, String> {
        let p = Params::new("http confirmation", params)?;
        p.only(&[
            "url",
            "pointer",
            "expect",
            "headers",
            "token_file",
            "token_env",
            "ca_file",
        ])?;
        let pointer = p.req_str("pointer", "\"/PowerState\"")?;
        if !pointer.starts_with('/') {
            return Err(p.err(
                "pointer",
                format!(
                    "{pointer:?} is not a JSON pointer: it starts with '/', e.g. \"/PowerState\""
                ),
            ));
        }
        let expect = match p.get("expect") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(_) => {
                return Err(p.err(
                    "expect",
                    "must be the value that says fenced, e.g. expect = \"Off\"",
                ))
            }
            None => return Err(p.err("expect", "is missing: add e.g. expect = \"Off\"")),
        };
        let get = HttpActuator::from_params(&without(params, &["pointer", "expect"]))
            .map_err(|e| e.replacen("http step", "http confirmation step", 1))?;
        Ok(HttpReader {
            get,
            pointer,
            expect,
        })
    }

    async fn read(&self, ctx: &StepContext) -> StepOutcome {
        let (status, body) = match self.get.get(ctx.timeout).await {
            Ok(r) => r,
            Err(e) => return StepOutcome::failed(e, ""),
        };
        let text = String::from_utf8_lossy(&body).to_string();
        if !status.is_success() {
            return StepOutcome::failed(format!("GET answered {status}"), text);
        }
        let json: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return StepOutcome::failed(format!("the answer is not JSON: {e}"), text),
        };
        let Some(found) = json.pointer(&self.pointer) else {
            return StepOutcome::failed(
                format!("the answer has no value at {}", self.pointer),
                text,
            );
        };
        let read = as_read(found);
        let says = format!("{} reads {read:?}", self.pointer);
        if ctx.dry_run {
            StepOutcome::ok(
                format!("dry run: {says} (a run waits for {:?})", self.expect),
                "",
            )
        } else if read == self.expect {
            StepOutcome::ok(format!("confirmed: {says}"), "")
        } else {
            StepOutcome::failed(format!("{says}, not {:?}", self.expect), "")
        }
    }
}

impl Actuator for HttpReader {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Http
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a> {
        Box::pin(self.read(ctx))
    }
}

struct ExecReader {
    exec: ExecActuator,
    expect: Option<String>,
}

impl ExecReader {
    fn from_params(params: &Value) -> Result<Self, String> {
        let p = Params::new("exec confirmation", params)?;
        let expect = p.opt_str("expect")?;
        if p.has("dry_run") {
            return Err(p.err(
                "dry_run",
                "does not apply to a confirmation: a read runs in a drill too",
            ));
        }
        let exec = ExecActuator::from_params(&without(params, &["expect"]))
            .map_err(|e| e.replacen("exec step", "exec confirmation step", 1))?;
        Ok(ExecReader { exec, expect })
    }

    async fn read(&self, ctx: &StepContext) -> StepOutcome {
        let out = self.exec.run(ctx).await;
        let line = self
            .expect
            .as_deref()
            .map(|want| out.output_tail.lines().any(|l| l.trim() == want.trim()));
        let wanted = self
            .expect
            .as_deref()
            .map_or(String::new(), |w| format!(" printing {w:?}"));
        if ctx.dry_run {
            // The read worked when the program ran to an exit, whatever its status: the old
            // primary is up during a drill.
            let ran =
                !out.detail.starts_with("could not start") && !out.detail.contains("timed out");
            return StepOutcome {
                ok: ran,
                detail: format!("dry run: {} (a run waits for exit 0{wanted})", out.detail),
                ..out
            };
        }
        match (out.ok, line) {
            (true, None | Some(true)) => StepOutcome {
                detail: format!("confirmed: {}", out.detail),
                ..out
            },
            (true, Some(false)) => StepOutcome {
                ok: false,
                detail: format!(
                    "{}, but no line of its output is {:?}",
                    out.detail,
                    self.expect.as_deref().unwrap_or_default()
                ),
                ..out
            },
            (false, _) => StepOutcome {
                detail: format!("{} (confirms by exit 0{wanted})", out.detail),
                ..out
            },
        }
    }
}

impl Actuator for ExecReader {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Exec
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a> {
        Box::pin(self.read(ctx))
    }
}

struct BirdReader {
    socket: String,
    birdc: String,
    netns: Option<String>,
    prefixes: Vec<Prefix>,
    protocol: Option<String>,
}

impl BirdReader {
    fn from_params(params: &Value) -> Result<Self, String> {
        let p = Params::new("bgp confirmation", params)?;
        p.only(&[
            "backend", "socket", "birdc", "netns", "prefixes", "protocol",
        ])?;
        match p.opt_str("backend")?.as_deref() {
            None | Some("bird") => {}
            Some(b) => {
                return Err(p.err(
                    "backend",
                    format!(
                        "is {b:?}: a confirmation reads a BIRD observer only (backend = \"bird\")"
                    ),
                ))
            }
        }
        let prefixes = p
            .opt_str_list("prefixes")?
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                p.err(
                    "prefixes",
                    "is missing: list the fenced site's prefixes that must be gone, e.g. \
                     prefixes = [\"198.19.255.0/24\"]",
                )
            })?
            .iter()
            .map(|s| Prefix::parse(s).map_err(|e| p.err("prefixes", format!("has {s:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let protocol = p.opt_str("protocol")?;
        if let Some(name) = &protocol {
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(p.err(
                    "protocol",
                    format!("{name:?} is not a BIRD protocol name (letters, digits, _ and -)"),
                ));
            }
        }
        Ok(BirdReader {
            socket: p
                .opt_str("socket")?
                .unwrap_or_else(|| "/run/bird/bird.ctl".into()),
            birdc: p.opt_str("birdc")?.unwrap_or_else(|| "birdc".into()),
            netns: p.opt_str("netns")?,
            prefixes,
            protocol,
        })
    }

    async fn read(&self, ctx: &StepContext) -> StepOutcome {
        let deadline = tokio::time::Instant::now() + ctx.timeout;
        let mut present = Vec::new();
        let mut output = String::new();
        for prefix in &self.prefixes {
            let mut cmd = match &self.netns {
                Some(ns) => {
                    let mut c = cli_command("ip");
                    c.args(["netns", "exec", ns.as_str(), self.birdc.as_str()]);
                    c
                }
                None => cli_command(&self.birdc),
            };
            let text = prefix.to_string();
            cmd.arg("-s")
                .arg(&self.socket)
                .args(["show", "route", text.as_str()]);
            if let Some(proto) = &self.protocol {
                cmd.args(["protocol", proto.as_str()]);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let run = run_process(cmd, left, Leftovers::Kill).await;
            // birdc exits 1 when BIRD answers with an error, and "Network not found" is one.
            let answered = run.output.contains("ready.")
                && (run.success() || run.output.contains("Network not found"));
            if !answered {
                return StepOutcome::failed(
                    format!(
                        "BIRD at {} did not answer `show route {text}` ({})",
                        self.socket,
                        run.describe()
                    ),
                    run.output,
                );
            }
            if has_route(&run.output) {
                present.push(text);
            }
            output = run.output;
        }
        let from = self
            .protocol
            .as_deref()
            .map_or(String::new(), |p| format!(" from protocol {p}"));
        if ctx.dry_run {
            let seen = if present.is_empty() {
                "no route".to_string()
            } else {
                format!("routes for {}", present.join(", "))
            };
            return StepOutcome::ok(
                format!(
                    "dry run: BIRD at {} shows {seen}{from} (a run waits for none)",
                    self.socket
                ),
                output,
            );
        }
        if present.is_empty() {
            StepOutcome::ok(
                format!(
                    "confirmed: BIRD at {} has no route{from} for {}",
                    self.socket,
                    self.prefixes
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "",
            )
        } else {
            StepOutcome::failed(
                format!(
                    "BIRD at {} still has a route{from} for {}",
                    self.socket,
                    present.join(", ")
                ),
                output,
            )
        }
    }
}

/// Whether `birdc show route P` output lists a route: a route line names its protocol in
/// brackets (`198.19.255.0/24  unicast [site_a 12:00:00.000] * (100) [AS65001i]`, or a
/// further route of the same network on an indented line); "Network not found" and the
/// `via` lines under a route do not.
pub fn has_route(output: &str) -> bool {
    output.lines().any(|l| {
        let l = l.trim();
        !l.starts_with("BIRD ")
            && !l.starts_with("Table ")
            && !l.starts_with("via ")
            && l.contains(" [")
            && l.contains(']')
    })
}

impl Actuator for BirdReader {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Bgp
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a> {
        Box::pin(self.read(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bird_route_line_is_told_from_not_found_and_via_lines() {
        let found = "BIRD 2.0.12 ready.\nTable master4:\n198.19.255.0/24      unicast [site_a 12:00:00.000] * (100) [AS65001i]\n\tvia 198.18.100.1 on wan0\n";
        assert!(has_route(found));
        assert!(!has_route("BIRD 2.0.12 ready.\nNetwork not found\n"));
        assert!(!has_route("BIRD 2.0.12 ready.\nTable master4:\n"));
    }

    #[test]
    fn an_http_confirmation_needs_a_pointer_and_the_value_that_says_fenced() {
        let base = json!({"url": "http://127.0.0.1:9/power", "expect": "Off"});
        let err = validate(ActuatorKind::Http, &base).unwrap_err();
        assert!(err.contains("`pointer` is missing"), "{err}");
        let err = validate(
            ActuatorKind::Http,
            &json!({"url": "http://127.0.0.1:9/power", "pointer": "PowerState", "expect": "Off"}),
        )
        .unwrap_err();
        assert!(err.contains("not a JSON pointer"), "{err}");
        let err = validate(
            ActuatorKind::Http,
            &json!({"url": "http://127.0.0.1:9/power", "pointer": "/PowerState"}),
        )
        .unwrap_err();
        assert!(err.contains("`expect` is missing"), "{err}");
        validate(
            ActuatorKind::Http,
            &json!({"url": "http://127.0.0.1:9/power", "pointer": "/PowerState", "expect": "Off"}),
        )
        .unwrap();
    }

    #[test]
    fn a_confirmation_keeps_the_credential_rules_of_an_http_step() {
        let err = validate(
            ActuatorKind::Http,
            &json!({"url": "http://bmc.example.net/power", "pointer": "/PowerState",
                    "expect": "Off", "token_env": "BMC_TOKEN"}),
        )
        .unwrap_err();
        assert!(
            err.contains("http confirmation step") && err.contains("in clear"),
            "{err}"
        );
    }

    #[test]
    fn a_bgp_confirmation_reads_bird_only_and_needs_prefixes() {
        let err = validate(ActuatorKind::Bgp, &json!({"socket": "/run/bird.ctl"})).unwrap_err();
        assert!(err.contains("`prefixes` is missing"), "{err}");
        let err = validate(
            ActuatorKind::Bgp,
            &json!({"backend": "gobgp", "prefixes": ["198.19.255.0/24"]}),
        )
        .unwrap_err();
        assert!(err.contains("BIRD observer only"), "{err}");
        let err = validate(ActuatorKind::Vpn, &json!({})).unwrap_err();
        assert!(err.contains("cannot be of kind vpn"), "{err}");
    }

    #[tokio::test]
    async fn an_exec_confirmation_wants_exit_0_and_the_expected_line() {
        let ctx = |params: Value| StepContext {
            site: crate::core::types::SiteId("a".into()),
            epoch: 1,
            step: "fence-a-confirm".into(),
            idempotency_key: "a/1/confirm/0/fence-a-confirm".into(),
            dry_run: false,
            timeout: std::time::Duration::from_secs(5),
            params,
        };
        let read = |script: &str| {
            let params =
                json!({"shell": true, "command": script, "expect": "Chassis Power is off"});
            let reader = build(ActuatorKind::Exec, &params).unwrap();
            let c = ctx(params);
            async move { reader.run(&c).await }
        };
        let off = read("echo 'Chassis Power is off'").await;
        assert!(off.ok, "{off:?}");
        let on = read("echo 'Chassis Power is on'").await;
        assert!(
            !on.ok && on.detail.contains("no line of its output"),
            "{on:?}"
        );
        let failed = read("echo 'Chassis Power is off'; exit 1").await;
        assert!(
            !failed.ok && failed.detail.contains("exited 1"),
            "{failed:?}"
        );
    }
}
