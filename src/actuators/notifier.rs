//! One call of a `[[notify]]` notifier, through the step actuators: `http` POSTs the event as
//! JSON (with the `Idempotency-Key` header, tokens refused over plain http but to loopback),
//! `exec` runs the program with the event as JSON on stdin and the `QUORATE_*` environment
//! (`QUORATE_STEP` is the event's kind), in its own process group killed at the timeout. It
//! calls once and reports; retries and who calls are decided in `core::notify`.

use super::exec::ExecActuator;
use super::http::HttpActuator;
use super::{Actuator, ActuatorKind, StepContext, StepOutcome};
use crate::config::Notifier;
use crate::core::notify::Event;
use serde_json::{Map, Value};

/// Calls `notifier` once with `event`.
pub async fn call(notifier: &Notifier, event: &Event) -> StepOutcome {
    let ctx = StepContext {
        site: event.site.clone(),
        epoch: event.epoch,
        step: event.kind.as_str().to_string(),
        idempotency_key: event.idempotency_key.clone(),
        dry_run: false,
        timeout: notifier.timeout,
        params: notifier.params.clone(),
    };
    match notifier.kind {
        ActuatorKind::Http => {
            let mut params = notifier.params.clone();
            if let Some(p) = params.as_object_mut() {
                p.insert("body".into(), Value::Object(body(notifier, event)));
            }
            match HttpActuator::from_params(&params) {
                Ok(a) => a.run(&ctx).await,
                Err(e) => StepOutcome::failed(format!("cannot build the notifier: {e}"), ""),
            }
        }
        ActuatorKind::Exec => match ExecActuator::from_params(&notifier.params) {
            Ok(a) => {
                // One line, so that a script may `read` it.
                let mut json = serde_json::to_vec(event).unwrap_or_default();
                json.push(b'\n');
                a.execute_with_input(&ctx, Some(json)).await
            }
            Err(e) => StepOutcome::failed(format!("cannot build the notifier: {e}"), ""),
        },
        other => StepOutcome::failed(format!("{other} is not a notifier kind"), ""),
    }
}

/// The webhook's JSON: the notifier's own `body` keys, the event's fields, and a one-line
/// `text` (what chat webhooks show) unless `body` sets one.
fn body(notifier: &Notifier, event: &Event) -> Map<String, Value> {
    let mut out = notifier
        .params
        .get("body")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Ok(Value::Object(e)) = serde_json::to_value(event) {
        for (k, v) in e {
            out.insert(k, v);
        }
    }
    out.entry("text")
        .or_insert_with(|| Value::from(summary(event)));
    out
}

/// "quorate: site b verdict_changed: down (epoch 4)".
pub fn summary(event: &Event) -> String {
    let epoch = if event.epoch > 0 {
        format!(" (epoch {})", event.epoch)
    } else {
        String::new()
    };
    format!(
        "quorate: site {} {}: {}{epoch}",
        event.site,
        event.kind.as_str(),
        event.detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::notify::EventKind;
    use std::time::Duration;

    fn event() -> Event {
        Event {
            kind: EventKind::VerdictChanged,
            site: "a".into(),
            epoch: 7,
            detail: "down".into(),
            idempotency_key: "verdict/a/7/down".into(),
            at_unix_ms: 1,
        }
    }

    fn exec(command: String, timeout: Duration) -> Notifier {
        Notifier {
            name: "script".into(),
            kind: ActuatorKind::Exec,
            on: EventKind::ALL.to_vec(),
            sites: None,
            timeout,
            retries: 0,
            backoff: Duration::from_secs(1),
            params: serde_json::json!({"shell": true, "command": command}),
        }
    }

    #[tokio::test]
    async fn an_exec_notifier_reads_the_event_on_stdin_with_its_key_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        let n = exec(
            format!(
                "cat > {0}; echo \"$QUORATE_IDEMPOTENCY_KEY $QUORATE_STEP $QUORATE_SITE\" >> {0}",
                out.display()
            ),
            Duration::from_secs(10),
        );
        let outcome = call(&n, &event()).await;
        assert!(outcome.ok, "{outcome:?}");
        let seen = std::fs::read_to_string(&out).unwrap();
        let (json, env) = seen.split_once('\n').expect("the event, then the env line");
        let json: Value = serde_json::from_str(json).unwrap();
        assert_eq!(json["idempotency_key"], "verdict/a/7/down");
        assert_eq!(json["kind"], "verdict_changed");
        assert_eq!(env.trim(), "verdict/a/7/down verdict_changed a");
    }

    #[tokio::test]
    async fn an_exec_notifier_that_hangs_is_killed_at_its_timeout() {
        let n = exec("sleep 30".into(), Duration::from_millis(200));
        let started = std::time::Instant::now();
        let outcome = call(&n, &event()).await;
        assert!(!outcome.ok);
        assert!(outcome.detail.contains("timed out"), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_webhook_body_keeps_the_operators_keys_and_adds_the_event_and_a_text() {
        let mut n = exec(String::new(), Duration::from_secs(1));
        n.params = serde_json::json!({"url": "https://h/x", "body": {"channel": "#ops"}});
        let b = body(&n, &event());
        assert_eq!(b["channel"], "#ops");
        assert_eq!(b["site"], "a");
        assert_eq!(b["text"], "quorate: site a verdict_changed: down (epoch 7)");
    }
}
