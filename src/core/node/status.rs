//! The periodic status: what this node tells the nodes it talks with every status interval
//! (and a peer whose connection just came up), and what it takes from theirs.
//!
//! A Pinger's or voter's status (its opinions, the newest verdicts and maintenance calls it
//! knows, its fleet version) goes to every node it holds a connection with. An
//! Indicator-only node has no opinions and originates nothing else (docs/trust.md); what it
//! could relay, the voters already know. Its status only says which fleet version it runs,
//! for the voters' mismatch check, so it goes to the voters alone and only every
//! `INDICATOR_STATUS_EVERY` intervals: a Pinger-voter of a thousand Indicators then reads a
//! hundred statuses a second instead of a thousand.

use super::*;

/// An Indicator-only node sends its status every this many status intervals (and to a voter
/// whose connection just came up).
pub const INDICATOR_STATUS_EVERY: u64 = 10;

impl NodeCore {
    pub(super) fn on_status(&mut self, now: Now, from: NodeId, status: PeerStatus) {
        if status.node != from {
            warn!(peer = %from, claimed = %status.node, "status names another node; ignored");
            return;
        }
        // Only a peer that also sees this site up counts against fencing it: a peer heard one
        // way but unable to reach the site would vote it DOWN all the same.
        for (s, r) in &status.opinions {
            if r.opinion == Opinion::Up {
                self.runs.seen_up.insert(s.clone());
            }
        }
        let sees_us_up = status.opinions.iter().any(|(s, r)| {
            s == &self.me.site && matches!(r.opinion, Opinion::Up | Opinion::Suspect)
        });
        if sees_us_up {
            if let Some(iso) = self.isolation.as_mut() {
                iso.fence.peer_seen(now.mono, &from);
            }
        }
        for v in status.verdicts {
            self.voter.learn_from(now.mono, &from, v);
        }
        if !self.abstains() {
            self.voter.resolve_leads(now.mono, &self.pinger);
        }
        self.learn_maintenance(now, &from, status.maintenance);
        self.peers.heard(
            now.mono,
            &from,
            status.fleet_hash,
            status.opinions,
            &self.fleet.hash,
        );
    }

    /// Every status interval: this node's status to those it goes to.
    pub(super) fn send_status(&mut self, now: Now) {
        let tick = self.status_ticks;
        self.status_ticks += 1;
        if !self.me.is_indicator_only() {
            let msg = Message::Status(self.status(now.mono));
            self.actions.push_back(Action::Broadcast { msg });
            return;
        }
        if tick % INDICATOR_STATUS_EVERY != 0 {
            return;
        }
        let msg = Message::Status(self.status(now.mono));
        let voters: Vec<NodeId> = self
            .fleet
            .nodes
            .iter()
            .filter(|n| self.status_goes_to(n))
            .map(|n| n.id.clone())
            .collect();
        for to in voters {
            self.actions.push_back(Action::Send {
                to,
                msg: msg.clone(),
            });
        }
    }

    pub(super) fn on_peer_connected(&mut self, now: Now, peer: &NodeId) {
        if self
            .fleet
            .node(peer)
            .is_some_and(|n| self.status_goes_to(n))
        {
            self.actions.push_back(Action::Send {
                to: peer.clone(),
                msg: Message::Status(self.status(now.mono)),
            });
        }
    }

    /// A Pinger's or voter's status goes to every node it talks with (what a `Broadcast`
    /// reaches), an Indicator-only node's to the voters.
    fn status_goes_to(&self, node: &Node) -> bool {
        if self.me.is_indicator_only() {
            node.roles.voter && node.id != self.me.id
        } else {
            self.me.talks_with(node)
        }
    }

    fn status(&self, t: Time) -> PeerStatus {
        // An Indicator-only node watches no site, and what it would relay the voters, its
        // only readers, told it: its status is its fleet version.
        let relays = !self.me.is_indicator_only();
        PeerStatus {
            node: self.me.id.clone(),
            fleet_hash: self.fleet.hash.clone(),
            opinions: self
                .pinger
                .watched_sites()
                .map(|s| (s.clone(), self.pinger.report(s, t)))
                .collect(),
            // The newest verdict per site: bounded by the number of sites.
            verdicts: if relays {
                self.voter.verdicts().cloned().collect()
            } else {
                Vec::new()
            },
            maintenance: if relays {
                self.operator.maintenance.windows().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }
}
