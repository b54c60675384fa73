//! Carries out `Action::Notify`: one call of a `[[notify]]` notifier in a task of its own,
//! its end fed back to the core as `Input::NotifyDone` and counted for `/metrics`.

use super::Driver;
use crate::core::node::{Input, NotifyCall};
use tracing::{info, warn};

/// One notifier call's end, on its way back to the event loop.
pub(super) struct NotifyDone {
    key: String,
    notifier: String,
    ok: bool,
}

impl Driver {
    pub(super) fn start_notify(&self, call: NotifyCall) {
        let tx = self.notify_tx.clone();
        let notifier = self.core.fleet().notifier(&call.notifier).cloned();
        let span = tracing::Span::current();
        tokio::spawn(async move {
            let key = call.event.idempotency_key.clone();
            let outcome = match &notifier {
                Some(n) => crate::actuators::notifier::call(n, &call.event).await,
                // Removed by a reload while the call waited: nobody left to tell.
                None => crate::actuators::StepOutcome::failed("notifier no longer configured", ""),
            };
            span.in_scope(|| {
                if outcome.ok {
                    info!(notifier = %call.notifier, key = %key, attempt = call.attempt,
                          detail = %outcome.detail, "notification sent");
                } else {
                    warn!(notifier = %call.notifier, key = %key, attempt = call.attempt,
                          detail = %outcome.detail, "notification failed");
                }
            });
            let _ = tx.send(NotifyDone {
                key,
                notifier: call.notifier,
                ok: outcome.ok,
            });
        });
    }

    pub(super) fn notify_done(&mut self, done: NotifyDone) {
        if done.ok {
            self.observed.counters.notifications_sent += 1;
        } else {
            self.observed.counters.notifications_failed += 1;
        }
        self.dirty = true;
        self.feed(Input::NotifyDone {
            key: done.key,
            notifier: done.notifier,
            ok: done.ok,
        });
    }
}
