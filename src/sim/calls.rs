//! The world's dynamic events: a fault that picks its node when it happens (the node leading
//! a run crashes), an operator's call at a node, and the lying member's forgeries. Like the
//! rest of the world they only feed cores and record what the checkers need.

use super::faults::Call;
use super::invariants::Check;
use super::net::EventKind;
use super::world::World;
use crate::core::node::{Command, Input};
use crate::wire::{self, MaintenanceWindow};
use std::time::Duration;

impl World {
    /// Fault `k` of `leader_crashes`: the node leading a run of a judged site crashes.
    pub fn on_leader_crash(&mut self, k: usize) -> Check {
        let (_, lasts) = self.faults.leader_crashes[k];
        let leader = (0..self.nodes.len()).find(|&i| {
            let n = &self.nodes[i];
            n.up && n.core.as_ref().is_some_and(|c| {
                c.replicas()
                    .records()
                    .any(|r| !r.is_finished() && c.replicas().is_leader(&r.site, r.run))
            })
        });
        let Some(i) = leader else { return Ok(()) };
        let id = self.nodes[i].id.clone();
        self.log(|| format!("{id}, leading a run, crashes"));
        self.schedule_crash(id, lasts);
        self.apply_faults()
    }

    /// `node` is down from now for `lasts`, as a crash (it restarts from its store); the
    /// caller applies the faults when it is ready to.
    pub(super) fn schedule_crash(&mut self, node: crate::core::types::NodeId, lasts: Duration) {
        let (start, end) = (self.now, self.now + lasts);
        self.faults.outages.push(super::faults::Outage {
            node,
            start,
            end,
            crash: true,
        });
        self.q.push(end, EventKind::Faults);
    }

    /// An operator call at its node (ignored while the node is down: the call fails).
    pub fn on_operator(&mut self, k: usize) -> Check {
        let call = self.faults.operator[k].clone();
        let Some(i) = self.index(&call.node) else {
            return Ok(());
        };
        if !self.nodes[i].up || self.nodes[i].core.is_none() {
            return Ok(());
        }
        let command = match &call.call {
            Call::Maintenance { site, lasts } => {
                let wall = self.now_of(i).wall;
                Command::SetMaintenance {
                    site: site.clone(),
                    until_unix_ms: (wall + *lasts).as_millis(),
                }
            }
            Call::Failback { site } => Command::Failback { site: site.clone() },
        };
        self.next_command += 1;
        let id = self.next_command;
        let who = call.node.clone();
        self.log(|| format!("operator call {id} at {who}: {command:?}"));
        // The windows this call sets are the operator's, whoever stores them later.
        let now = self.now_of(i);
        let c = self.nodes[i].core.as_mut().expect("checked");
        c.handle(now, Input::Command { id, command });
        let windows: Vec<MaintenanceWindow> = c.maintenance_windows().cloned().collect();
        for w in windows {
            if !self.operator_windows.contains(&w) {
                if let Call::Maintenance { site, lasts } = &call.call {
                    self.failover
                        .maintenance
                        .push(super::failover::MaintenanceSet {
                            site: site.clone(),
                            at: self.now,
                            until: self.now + *lasts,
                        });
                }
                self.operator_windows.push(w);
            }
        }
        self.carry_out(i)
    }

    /// The lying member sends one forgery to every voter.
    pub fn on_liar(&mut self) -> Check {
        let Some(i) = self.liar else { return Ok(()) };
        let site = self.nodes[i].site.clone();
        let electorate = self.fleet.electorate(&site);
        let runs: Vec<u64> = self
            .failover
            .runs
            .keys()
            .filter(|(s, _)| *s == site)
            .map(|(_, r)| *r)
            .collect();
        let wall = self.now_of(i).wall;
        let msg = super::liar::forge(
            &mut self.rng,
            &self.nodes[i].id.clone(),
            &site,
            &electorate,
            &runs,
            wall,
        );
        self.counters.forgeries += 1;
        let Ok(bytes) = wire::encode_message(&msg) else {
            return Ok(());
        };
        let now = self.now;
        for t in 0..self.nodes.len() {
            if t != i && self.nodes[t].voter {
                self.net.send_encoded(
                    &mut self.q,
                    &self.faults,
                    &mut self.rng,
                    now,
                    i,
                    t,
                    bytes.clone(),
                );
            }
        }
        self.q
            .push(now + Duration::from_millis(300), EventKind::Liar);
        Ok(())
    }
}
