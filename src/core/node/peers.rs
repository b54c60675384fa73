//! What this node last heard from each peer's status messages: when, which fleet version it
//! runs and its opinions; and when its last probe arrived, for a Pinger that probes this
//! node (its status comes only every few intervals then). Shown in `/v1/status`; no decision
//! hangs on it.

use crate::core::types::{NodeId, SiteId, Time};
use crate::wire::OpinionReport;
use std::collections::BTreeMap;
use tracing::warn;

#[derive(Clone, Debug, Default)]
pub struct PeerState {
    pub last_status: Option<Time>,
    /// When the newest probe of this peer arrived, as a Pinger of this node.
    pub last_probe: Option<Time>,
    pub fleet_hash: Option<String>,
    pub opinions: Vec<(SiteId, OpinionReport)>,
}

impl PeerState {
    /// When this peer was last heard: its status, or its probe.
    pub fn last_heard(&self) -> Option<Time> {
        self.last_status.max(self.last_probe)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Peers {
    by_node: BTreeMap<NodeId, PeerState>,
}

impl Peers {
    pub fn heard(
        &mut self,
        now: Time,
        from: &NodeId,
        fleet_hash: String,
        opinions: Vec<(SiteId, OpinionReport)>,
        ours: &str,
    ) {
        let peer = self.by_node.entry(from.clone()).or_default();
        if peer.fleet_hash.as_deref() != Some(fleet_hash.as_str()) && fleet_hash != ours {
            warn!(peer = %from, theirs = %short(&fleet_hash), ours = %short(ours), "peer runs another fleet version");
        }
        peer.last_status = Some(now);
        peer.fleet_hash = Some(fleet_hash);
        peer.opinions = opinions;
    }

    /// A probe of `from` arrived at `at`.
    pub fn probed_by(&mut self, at: Time, from: &NodeId) {
        let peer = self.by_node.entry(from.clone()).or_default();
        peer.last_probe = peer.last_probe.max(Some(at));
    }

    pub fn get(&self, node: &NodeId) -> Option<&PeerState> {
        self.by_node.get(node)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &PeerState)> {
        self.by_node.iter()
    }
}

pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
