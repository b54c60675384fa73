//! The node's own service checks (`[[site.check]]` of its site, Indicators only): started with
//! the node, restarted when a fleet reload changes them, stopped when they are gone. Their
//! result reaches the Pingers through this node's probe answers (`Mesh::set_service_health`).

use super::Driver;
use crate::config::{Fleet, Node};
use crate::core::health::ServiceHealth;
use crate::health::HealthChecks;
use crate::net::Mesh;
use std::sync::Arc;

/// The checks `me` runs under `fleet`, started; None when it runs none (and then its answers
/// say `unchecked`).
pub(super) fn start(fleet: &Fleet, me: &Node, mesh: &Mesh) -> Option<HealthChecks> {
    let checks = fleet.service.checks_of(&me.site);
    if !me.roles.indicator || checks.is_empty() {
        mesh.set_service_health(ServiceHealth::Unchecked);
        return None;
    }
    let sink_mesh = mesh.clone();
    Some(HealthChecks::start(
        &me.id,
        &me.site,
        checks,
        Arc::new(move |h| sink_mesh.set_service_health(h)),
    ))
}

impl Driver {
    /// After a fleet reload: restarts the checks only if this node's changed.
    pub(super) fn reload_service_checks(&mut self) {
        let fleet = self.core.fleet().clone();
        let me = self.core.me().clone();
        let wanted = if me.roles.indicator {
            fleet.service.checks_of(&me.site)
        } else {
            &[]
        };
        let running = self.service_checks.as_ref().map_or(&[][..], |c| c.config());
        if wanted != running {
            // The old tasks stop before the new ones say anything.
            self.service_checks = None;
            self.service_checks = start(&fleet, &me, &self.mesh);
        }
    }
}
