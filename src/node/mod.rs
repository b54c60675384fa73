//! The tokio driver of one node: it owns the Pinger and Voter state machines, feeds them
//! mesh events and time, carries out their actions (probes, messages, durable writes) and
//! publishes a snapshot for the REST API. One task owns the cores; nothing else locks them.

mod driver;
pub mod snapshot;

pub use crate::core::node::{Command as CommandKind, CommandOk, CommandReply, OperatorError};
pub use driver::commands::Command;

use crate::config::Fleet;
use crate::core::types::{NodeId, Outcome, SiteId};
use crate::net::{CertPaths, MeshError};
use crate::store::StoreError;
use snapshot::NodeSnapshot;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub fleet: Fleet,
    /// Re-read when it changes; None for a fleet given in memory.
    pub fleet_path: Option<PathBuf>,
    pub node: NodeId,
    pub certs_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Serve REST on the fleet file's `api` address (false: no REST listener).
    pub serve_api: bool,
    /// Where timeline events go (the demo and benchmarks listen); None to keep them in logs.
    pub events: Option<mpsc::UnboundedSender<NodeEvent>>,
}

/// A step of the decision, for timelines.
#[derive(Clone, Debug)]
pub struct NodeEvent {
    pub at: Instant,
    pub node: NodeId,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    FirstMiss {
        site: SiteId,
        indicator: NodeId,
    },
    Opinion {
        site: SiteId,
        opinion: &'static str,
        suspect: bool,
    },
    RoundStarted {
        site: SiteId,
        epoch: u64,
        attempt: u32,
        target: Outcome,
    },
    RoundEnded {
        site: SiteId,
        epoch: u64,
        outcome: &'static str,
        yes: usize,
        electorate: usize,
    },
    Verdict {
        site: SiteId,
        outcome: Outcome,
        epoch: u64,
        leader: NodeId,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {0} is not in the fleet file")]
    UnknownNode(NodeId),
    #[error("certificates: {0}")]
    Certs(String),
    #[error(transparent)]
    Mesh(#[from] MeshError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot bind the REST listener to {addr}: {source}")]
    Api {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running node. Dropping it does not stop it; call `shutdown`.
pub struct NodeHandle {
    pub node: NodeId,
    pub api_addr: Option<SocketAddr>,
    pub mesh_addr: SocketAddr,
    snapshot: watch::Receiver<Arc<NodeSnapshot>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl NodeHandle {
    pub fn snapshot(&self) -> Arc<NodeSnapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<NodeSnapshot>> {
        self.snapshot.clone()
    }

    /// Stops the node and waits until its sockets are released.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts a node: opens its store, binds its mesh and REST sockets, and runs its driver.
pub async fn spawn(spec: NodeSpec) -> Result<NodeHandle, NodeError> {
    driver::spawn(spec).await
}

/// Runs a node until `shutdown` turns true (the `quorate run` entry point).
pub async fn run(spec: NodeSpec, mut shutdown: watch::Receiver<bool>) -> Result<(), NodeError> {
    let handle = spawn(spec).await?;
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    handle.shutdown().await;
    Ok(())
}

pub(crate) fn cert_paths(spec: &NodeSpec) -> CertPaths {
    CertPaths::in_dir(&spec.certs_dir, &spec.node)
}
