//! What `quorate run` tells its service manager (systemd, `Type=notify`, see
//! docs/install.md): READY=1 once the mesh and REST listen, WATCHDOG=1 from the node's event
//! loop so that a stalled loop is restarted, STOPPING=1 on the way out. Outside systemd
//! (no NOTIFY_SOCKET, no WATCHDOG_USEC) every call here does nothing.
//!
//! Step processes inherit NOTIFY_SOCKET; systemd ignores what they send there unless the unit
//! says `NotifyAccess=all`, which ours does not.

use sd_notify::NotifyState;
use std::time::{Duration, Instant};

/// The node is up: its mesh and REST sockets are bound and its driver runs.
pub(crate) fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The node was asked to stop and is closing its sockets.
pub(crate) fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The watchdog the service manager keeps on this process (`WatchdogSec=`): pinged from the
/// node's event loop, at half its timeout as sd_watchdog_enabled(3) advises, so a loop that
/// stops turning stops pinging and systemd restarts the node.
#[derive(Debug)]
pub(crate) struct Watchdog {
    every: Duration,
    next: Instant,
    /// A failed ping is reported once, not every few seconds.
    failing: bool,
}

impl Watchdog {
    /// The watchdog asked for through WATCHDOG_USEC (and WATCHDOG_PID, when set, naming this
    /// process); None when there is none.
    pub(crate) fn from_env(now: Instant) -> Option<Watchdog> {
        sd_notify::watchdog_enabled().map(|timeout| Watchdog::new(timeout, now))
    }

    fn new(timeout: Duration, now: Instant) -> Watchdog {
        // A zero or absurdly short timeout still gets pings, as often as the loop can.
        let every = (timeout / 2).max(Duration::from_millis(1));
        Watchdog {
            every,
            next: now,
            failing: false,
        }
    }

    /// When the next ping is due: the event loop wakes up by then at the latest.
    pub(crate) fn due(&self) -> Instant {
        self.next
    }

    /// Pings when due. Called only from the event loop: a stalled loop does not call it.
    pub(crate) fn ping_if_due(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        match sd_notify::notify(&[NotifyState::Watchdog]) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(error = %e, "cannot ping the service manager's watchdog");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_timeout() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::from_secs(10), t0);
        assert_eq!(w.due(), t0, "the first ping is due at once");
        w.ping_if_due(t0);
        assert_eq!(w.due(), t0 + Duration::from_secs(5));
        // Not due yet: nothing changes.
        w.ping_if_due(t0 + Duration::from_secs(4));
        assert_eq!(w.due(), t0 + Duration::from_secs(5));
        // A late loop pings when it gets there, and the next one is half a timeout after.
        w.ping_if_due(t0 + Duration::from_secs(7));
        assert_eq!(w.due(), t0 + Duration::from_secs(12));
    }

    #[test]
    fn a_zero_timeout_does_not_spin_on_a_zero_interval() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::ZERO, t0);
        w.ping_if_due(t0);
        assert!(w.due() > t0);
    }
}
