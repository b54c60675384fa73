//! The fleet file (TOML, one file shared by every node) and its validation. Every error names
//! the key at fault and the fix; nothing here opens a socket.

use crate::core::types::{NodeId, SiteId};
use std::net::SocketAddr;
use std::time::Duration;

/// Timing of probes and votes, shared by the whole fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// An Indicator is unreachable after this many consecutive missed probes.
    pub retries: u32,
    pub vote_timeout: Duration,
    pub max_vote_rounds: u32,
    pub hold_down: Duration,
    /// After a round ends UP (internal false positive) or undecided `max_vote_rounds` times,
    /// the voter waits this long before it asks again while its opinion stays DOWN.
    pub revote_after: Duration,
    /// How often each node sends its status (liveness, fleet hash, verdicts) to every peer.
    pub status_interval: Duration,
}

impl Timing {
    /// Longest time from an Indicator's death to the Pinger's DOWN opinion; also how old
    /// evidence may be and still count in a vote.
    pub fn probe_budget(&self) -> Duration {
        self.probe_interval * self.retries + self.probe_timeout
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    Primary,
    Backup,
    Witness,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub kind: SiteKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Roles {
    pub indicator: bool,
    pub pinger: bool,
    pub voter: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub site: SiteId,
    pub roles: Roles,
    /// The QUIC (UDP) address peers dial.
    pub mesh: SocketAddr,
    /// Where the node binds its QUIC socket, when it differs from `mesh` (NAT, relay).
    pub mesh_bind: Option<SocketAddr>,
    /// The REST (TCP) address.
    pub api: SocketAddr,
}

impl Node {
    pub fn mesh_bind_addr(&self) -> SocketAddr {
        self.mesh_bind.unwrap_or(self.mesh)
    }
}

/// Whether a watch whose electorate is dominated by one site may act on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SingleVantage {
    /// Refused by `check-config` (the default).
    #[default]
    Refuse,
    /// Verdicts are computed and shown, but failover waits for an operator.
    Manual,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The watched site.
    pub site: SiteId,
    /// Sites whose Pingers probe it and whose Voters judge it.
    pub by: Vec<SiteId>,
    pub single_vantage: SingleVantage,
}

/// A validated fleet file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    pub timing: Timing,
    pub sites: Vec<Site>,
    pub nodes: Vec<Node>,
    pub watches: Vec<Watch>,
    /// Hex SHA-256 of the file's text: the fleet version nodes compare.
    pub hash: String,
    /// The file's text as read.
    pub source: String,
}
