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
                let json = serde_json::to_vec(event).unwrap_or_default();
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
