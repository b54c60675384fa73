//! The fleet-wide maintenance windows, one per site: while a site's window lasts, no automatic
//! failover of it starts anywhere in the fleet. A window is an operator call, so it is taken
//! only from a node entitled to accept operator calls about that site, and that is a voter of
//! the site's electorate: operator calls about site X are accepted only by members of X's
//! electorate, never by an Indicator host inside X (or anywhere else), whose certificate is
//! as valid as any but whose site is the one being judged. A window's `set_at` orders the
//! calls (the newest wins, fleet-wide); a window claiming to be set more than `MAX_SKEW` ahead
//! of this node's wall clock, or to last beyond `MAX_HORIZON`, is refused, never clamped: a
//! window that would outrank every later call, or outlast every operator, is not a
//! maintenance window but a way to switch failover off for good. Windows read back from disk
//! are held to the same bounds, so one planted before these checks is forgotten on restart.
//!
//! Wall time comes in as milliseconds since the Unix epoch; this module never reads a clock.

use super::quorum::Electorate;
use super::trust::Refusal;
use super::types::{NodeId, SiteId};
use crate::wire::MaintenanceWindow;
use std::collections::BTreeMap;

/// How far ahead of this node's wall clock a peer's `set_at` may be (clock skew between
/// nodes).
pub const MAX_SKEW_MS: i64 = 30_000;

/// The longest maintenance window: 90 days.
pub const MAX_HORIZON_MS: i64 = 90 * 24 * 3600 * 1000;

/// What learning a peer's window did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Not newer than the window known for the site: nothing changed.
    Stale,
    /// A newer window replaced the known one; it lasts until `until_unix_ms`.
    Set { until_unix_ms: i64 },
    /// A newer call ended the site's maintenance (or set a window already over).
    Ended,
}

/// Why an operator's maintenance call was not carried out; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaintenanceError {
    #[error("node {me} is not a voter of site {site}'s electorate; call one of its members")]
    NotOperatorNode { me: NodeId, site: SiteId },
    #[error("the maintenance end is in the past")]
    InThePast,
    #[error("the maintenance window is longer than the {} days allowed", MAX_HORIZON_MS / 86_400_000)]
    TooLong,
    #[error("the newest maintenance call of site {site} is stamped too far ahead to outrank")]
    NoLaterStamp { site: SiteId },
}

/// Whether `window` from `from` may replace `known`: Ok(false) when it is not newer (no news,
/// not worth a refusal), Ok(true) when it may, the refusal otherwise.
pub fn admit(
    now_wall_ms: i64,
    from: &NodeId,
    window: &MaintenanceWindow,
    known: Option<&MaintenanceWindow>,
    electorate: &Electorate,
) -> Result<bool, Refusal> {
    if known.is_some_and(|k| k.set_at_unix_ms >= window.set_at_unix_ms) {
        return Ok(false);
    }
    if !electorate.contains(from) {
        return Err(Refusal::NotOperatorNode);
    }
    within_bounds(now_wall_ms, window)?;
    Ok(true)
}

/// `set_at` at most `MAX_SKEW_MS` ahead of now, `until` at most `MAX_HORIZON_MS` ahead.
pub fn within_bounds(now_wall_ms: i64, w: &MaintenanceWindow) -> Result<(), Refusal> {
    if w.set_at_unix_ms > now_wall_ms.saturating_add(MAX_SKEW_MS)
        || w.until_unix_ms > now_wall_ms.saturating_add(MAX_HORIZON_MS)
    {
        return Err(Refusal::FromTheFuture);
    }
    Ok(())
}

/// The newest maintenance call per site, as this node knows it.
#[derive(Clone, Debug, Default)]
pub struct Maintenance {
    me: NodeId,
    windows: BTreeMap<SiteId, MaintenanceWindow>,
}

impl Maintenance {
    pub fn new(me: NodeId) -> Maintenance {
        Maintenance {
            me,
            windows: BTreeMap::new(),
        }
    }

    /// Windows read back from the store; one outside the bounds is dropped and returned, so
    /// that the caller can say so.
    pub fn load(
        &mut self,
        now_wall_ms: i64,
        stored: impl IntoIterator<Item = MaintenanceWindow>,
    ) -> Vec<MaintenanceWindow> {
        let mut dropped = Vec::new();
        for w in stored {
            if within_bounds(now_wall_ms, &w).is_err() {
                dropped.push(w);
                continue;
            }
            self.stored(w);
        }
        dropped
    }

    /// A peer's window; `electorate` is the site's. Nothing changes here yet: the caller
    /// makes a `Set` or `Ended` window durable, then hands it to `stored` (persist, then
    /// advance), so a window that could not be stored is not acted on either.
    pub fn learn(
        &mut self,
        now_wall_ms: i64,
        from: &NodeId,
        window: MaintenanceWindow,
        electorate: &Electorate,
    ) -> Result<Learned, Refusal> {
        if !admit(
            now_wall_ms,
            from,
            &window,
            self.windows.get(&window.site),
            electorate,
        )? {
            return Ok(Learned::Stale);
        }
        let until_unix_ms = window.until_unix_ms;
        Ok(if until_unix_ms > now_wall_ms {
            Learned::Set { until_unix_ms }
        } else {
            Learned::Ended
        })
    }

    /// The operator's call at this node: no automatic failover of `site` before
    /// `until_unix_ms`. Stamped after every call known for the site, so it wins fleet-wide.
    /// The window takes effect when the caller hands it to `stored`, once it is durable.
    pub fn set_by_operator(
        &mut self,
        now_wall_ms: i64,
        site: &SiteId,
        until_unix_ms: i64,
        electorate: &Electorate,
    ) -> Result<MaintenanceWindow, MaintenanceError> {
        if until_unix_ms <= now_wall_ms {
            return Err(MaintenanceError::InThePast);
        }
        if until_unix_ms > now_wall_ms.saturating_add(MAX_HORIZON_MS) {
            return Err(MaintenanceError::TooLong);
        }
        self.call(now_wall_ms, site, until_unix_ms, electorate)
    }

    /// The operator ends the maintenance of `site` (a window ending at 0).
    pub fn end_by_operator(
        &mut self,
        now_wall_ms: i64,
        site: &SiteId,
        electorate: &Electorate,
    ) -> Result<MaintenanceWindow, MaintenanceError> {
        self.call(now_wall_ms, site, 0, electorate)
    }

    fn call(
        &mut self,
        now_wall_ms: i64,
        site: &SiteId,
        until_unix_ms: i64,
        electorate: &Electorate,
    ) -> Result<MaintenanceWindow, MaintenanceError> {
        if !electorate.contains(&self.me) {
            return Err(MaintenanceError::NotOperatorNode {
                me: self.me.clone(),
                site: site.clone(),
            });
        }
        let set_at_unix_ms = match self.windows.get(site) {
            None => now_wall_ms,
            Some(k) => k
                .set_at_unix_ms
                .checked_add(1)
                .map(|next| next.max(now_wall_ms))
                .ok_or_else(|| MaintenanceError::NoLaterStamp { site: site.clone() })?,
        };
        Ok(MaintenanceWindow {
            site: site.clone(),
            until_unix_ms,
            set_at_unix_ms,
        })
    }

    /// A window from `learn` or an operator call, now durable: it takes effect unless a newer
    /// call for the site arrived meanwhile.
    pub fn stored(&mut self, w: MaintenanceWindow) {
        let newer = self
            .windows
            .get(&w.site)
            .is_none_or(|k| k.set_at_unix_ms < w.set_at_unix_ms);
        if newer {
            self.windows.insert(w.site.clone(), w);
        }
    }

    /// Until when `site` is in maintenance, while it is.
    pub fn active(&self, site: &SiteId, now_wall_ms: i64) -> Option<i64> {
        self.windows
            .get(site)
            .map(|w| w.until_unix_ms)
            .filter(|until| *until > now_wall_ms)
    }

    /// The newest call known for `site` (passed on in status messages).
    pub fn window(&self, site: &SiteId) -> Option<&MaintenanceWindow> {
        self.windows.get(site)
    }

    pub fn windows(&self) -> impl Iterator<Item = &MaintenanceWindow> {
        self.windows.values()
    }
}

#[cfg(test)]
#[path = "maintenance_tests.rs"]
mod tests;
