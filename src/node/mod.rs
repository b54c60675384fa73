//! The tokio driver of one node: it owns the Pinger and Voter state machines, feeds them
//! mesh events and time, carries out their actions (probes, messages, durable writes) and
//! publishes a snapshot for the REST API. One task owns the cores; nothing else locks them.
//! `run` supervises that task: a node whose driver ended (a panic, a closed channel) must not
//! live on as a REST server showing a frozen picture, so `run` stops it and returns an error
//! and `quorate run` exits non-zero for the process supervisor to restart it.

mod alarm_poll;
mod driver;
mod service;
pub mod snapshot;

pub use crate::core::node::{Command as CommandKind, CommandOk, CommandReply, OperatorError};
pub use driver::commands::Command;

use crate::config::Fleet;
use crate::core::types::{NodeId, Outcome, SiteId};
use crate::net::MeshError;
use crate::store::{Retention, StoreError};
use snapshot::NodeSnapshot;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// A mesh connection that hears nothing for this long is closed and re-dialed. Liveness of
/// a site is judged by probes, not by connections, so this can be long: a peer that restarts
/// resets its peers' connections to its previous process at once (its stateless-reset key is
/// derived from its node key) and its pair's connection is dialed afresh; see `net::mesh`.
pub const MESH_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A mesh connection with nothing to send pings its peer this often: keeps NAT bindings and
/// the idle timer alive, and costs a Pinger CPU per connection.
pub const MESH_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// A pair that speaks only through probes (an Indicator-only node and a Pinger that probes
/// it) closes its connection after this long without a message, keeping its probe sessions:
/// long enough for the statuses a new connection exchanges, short enough that a Pinger of
/// many Indicators holds few connections. News dials again.
pub const MESH_PARK_AFTER: Duration = Duration::from_secs(5);

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub fleet: Fleet,
    /// Re-read when it changes; None for a fleet given in memory.
    pub fleet_path: Option<PathBuf>,
    pub node: NodeId,
    pub certs_dir: PathBuf,
    pub data_dir: PathBuf,
    /// What the store keeps; pruned at start and every hour.
    pub retention: Retention,
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
    /// Not marked as the source: the message already says it, and `{:#}` would repeat it.
    #[error("store: {0}")]
    Store(StoreError),
    #[error("cannot bind the REST listener to {addr}: {source}")]
    Api {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("REST API TLS ([api] tls_cert, tls_key): {0}")]
    ApiTls(String),
    #[error("cannot handle SIGHUP: {0}")]
    Signal(String),
    /// The driver task ended while the node should run; the node was stopped.
    #[error("the node's driver {0}; the node stopped")]
    DriverEnded(String),
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> NodeError {
        NodeError::Store(e)
    }
}

/// A running node. Dropping it does not stop it; call `shutdown`.
pub struct NodeHandle {
    pub node: NodeId,
    pub api_addr: Option<SocketAddr>,
    pub mesh_addr: SocketAddr,
    snapshot: watch::Receiver<Arc<NodeSnapshot>>,
    stop: watch::Sender<bool>,
    reload: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl NodeHandle {
    pub fn snapshot(&self) -> Arc<NodeSnapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<NodeSnapshot>> {
        self.snapshot.clone()
    }

    /// Re-reads the fleet file at once, changed or not (what SIGHUP does to `quorate run`);
    /// an invalid file is reported and the running fleet kept, as with a change on disk.
    pub fn reload_fleet(&self) {
        self.reload.notify_one();
    }

    /// Stops the node and waits until its sockets are released.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts a node: opens its store, binds its mesh and REST sockets, and runs its driver.
pub async fn spawn(spec: NodeSpec) -> Result<NodeHandle, NodeError> {
    driver::spawn(spec, None).await
}

/// Runs a node until `shutdown` turns true (the `quorate run` entry point). Returns
/// `DriverEnded` if the driver task panics or stops before that. Under systemd it reports
/// READY=1 once the mesh and REST listen and pings the watchdog from the event loop; SIGHUP
/// re-reads the fleet file at once.
pub async fn run(spec: NodeSpec, mut shutdown: watch::Receiver<bool>) -> Result<(), NodeError> {
    // Before anything else: a SIGHUP that came without a handler would end the process.
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| NodeError::Signal(e.to_string()))?;
    let watchdog = service::Watchdog::from_env(Instant::now());
    let mut handle = driver::spawn(spec, watchdog).await?;
    service::ready(&format!("node {} running", handle.node));
    #[cfg(unix)]
    {
        let reload = handle.reload.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: re-reading the fleet file");
                reload.notify_one();
            }
        });
    }
    match supervise(&mut handle.task, &mut shutdown).await {
        Ok(()) => {
            service::stopping();
            handle.shutdown().await;
            Ok(())
        }
        Err(e) => {
            tracing::error!(node = %handle.node, error = %e, "stopping the node");
            // The REST server and the mesh listen on the stop signal too.
            let _ = handle.stop.send(true);
            Err(e)
        }
    }
}

/// Waits until `shutdown` turns true (Ok, the task still running) or the driver task ends
/// (an error saying how).
async fn supervise(
    task: &mut tokio::task::JoinHandle<()>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), NodeError> {
    loop {
        if *shutdown.borrow_and_update() {
            return Ok(());
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // Nobody can ask for a stop any more: treat it as one.
                    return Ok(());
                }
            }
            ended = &mut *task => {
                let how = match ended {
                    Ok(()) => "stopped on its own".to_string(),
                    Err(e) if e.is_panic() => {
                        let payload = e.into_panic();
                        let msg = payload
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        format!("panicked: {msg}")
                    }
                    Err(_) => "was cancelled".to_string(),
                };
                return Err(NodeError::DriverEnded(how));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("within 5 s")
    }

    #[tokio::test]
    async fn a_panicked_driver_is_an_error_that_says_so() {
        let (_tx, mut rx) = watch::channel(false);
        let mut task = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("driver bug");
        });
        let err = bounded(supervise(&mut task, &mut rx)).await.unwrap_err();
        assert!(matches!(err, NodeError::DriverEnded(_)));
        assert!(err.to_string().contains("panicked: driver bug"), "{err}");
    }

    #[tokio::test]
    async fn a_driver_that_stops_on_its_own_is_an_error() {
        let (_tx, mut rx) = watch::channel(false);
        let mut task = tokio::spawn(async {});
        let err = bounded(supervise(&mut task, &mut rx)).await.unwrap_err();
        assert!(err.to_string().contains("stopped on its own"), "{err}");
    }

    #[tokio::test]
    async fn a_requested_shutdown_is_not_an_error() {
        let (tx, mut rx) = watch::channel(false);
        let mut task = tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(true);
        });
        bounded(supervise(&mut task, &mut rx)).await.unwrap();
        task.abort();
    }
}
