//! A whole fleet in one process on loopback: throw-away certificates and data directories,
//! one in-process node per fleet entry, and controls to stop and restart nodes. The demo, the
//! benchmarks and the integration tests run on it; every node is the same code `quorate run`
//! starts.

use crate::config::Fleet;
use crate::core::types::{NodeId, SiteId};
use crate::net::certs;
use crate::node::snapshot::NodeSnapshot;
use crate::node::{self, NodeEvent, NodeHandle, NodeSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub struct LocalFleet {
    /// Deleted when the fleet is dropped, unless the caller gave its own directory.
    _tmp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    pub fleet: Fleet,
    pub fleet_path: PathBuf,
    /// The fleet CA (`ca.pem`, `ca.key`), apart from the nodes as on a real fleet.
    pub ca_dir: PathBuf,
    /// Every node's certificate and key, and `ca.pem`; no CA key.
    pub certs_dir: PathBuf,
    serve_api: bool,
    nodes: BTreeMap<NodeId, NodeHandle>,
    events_tx: mpsc::UnboundedSender<NodeEvent>,
    events_rx: Option<mpsc::UnboundedReceiver<NodeEvent>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalFleetError {
    #[error("fleet: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("certificates: {0}")]
    Certs(#[from] crate::net::CertError),
    #[error("node {node}: {source}")]
    Node {
        node: NodeId,
        source: node::NodeError,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Moves every `127.0.` address of a fleet file to `127.<octet>.` so that several fleets can
/// run side by side on one machine.
pub fn relocate(fleet_text: &str, octet: u8) -> String {
    fleet_text.replace("\"127.0.", &format!("\"127.{octet}."))
}

impl LocalFleet {
    /// Writes the fleet file and certificates into `dir` (a fresh temporary directory when
    /// None) and starts every node.
    pub async fn start(
        fleet_text: &str,
        dir: Option<&Path>,
        serve_api: bool,
    ) -> Result<LocalFleet, LocalFleetError> {
        let mut f = LocalFleet::prepare(fleet_text, dir, serve_api)?;
        let ids: Vec<NodeId> = f.fleet.nodes.iter().map(|n| n.id.clone()).collect();
        for id in ids {
            f.start_node(&id).await?;
        }
        Ok(f)
    }

    /// Like `start`, but starts no node.
    pub fn prepare(
        fleet_text: &str,
        dir: Option<&Path>,
        serve_api: bool,
    ) -> Result<LocalFleet, LocalFleetError> {
        let fleet = Fleet::parse(fleet_text)?;
        let (tmp, dir) = match dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.to_path_buf())
            }
            None => {
                let t = tempfile::Builder::new().prefix("quorate-").tempdir()?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let fleet_path = dir.join("fleet.toml");
        std::fs::write(&fleet_path, fleet_text)?;
        let ca_dir = dir.join("ca");
        let certs_dir = dir.join("certs");
        let ids: Vec<NodeId> = fleet.nodes.iter().map(|n| n.id.clone()).collect();
        certs::init_in(&ca_dir, &certs_dir, &ids, true, certs::NODE_LIFETIME)?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(LocalFleet {
            _tmp: tmp,
            dir,
            fleet,
            fleet_path,
            ca_dir,
            certs_dir,
            serve_api,
            nodes: BTreeMap::new(),
            events_tx,
            events_rx: Some(events_rx),
        })
    }

    /// Issues (or re-issues) `node`'s certificate into the nodes' directory.
    pub fn issue_cert(&self, node: &NodeId) -> Result<(), LocalFleetError> {
        certs::issue_in(&self.ca_dir, &self.certs_dir, node, certs::NODE_LIFETIME)?;
        Ok(())
    }

    pub fn data_dir(&self, node: &NodeId) -> PathBuf {
        self.dir.join("data").join(node.as_str())
    }

    /// Starts (or restarts, with its durable state) one node.
    pub async fn start_node(&mut self, id: &NodeId) -> Result<(), LocalFleetError> {
        if self.nodes.contains_key(id) {
            return Ok(());
        }
        let spec = NodeSpec {
            fleet: self.fleet.clone(),
            fleet_path: Some(self.fleet_path.clone()),
            node: id.clone(),
            certs_dir: self.certs_dir.clone(),
            data_dir: self.data_dir(id),
            retention: Default::default(),
            serve_api: self.serve_api,
            events: Some(self.events_tx.clone()),
        };
        let h = node::spawn(spec)
            .await
            .map_err(|source| LocalFleetError::Node {
                node: id.clone(),
                source,
            })?;
        self.nodes.insert(id.clone(), h);
        Ok(())
    }

    pub async fn stop_node(&mut self, id: &NodeId) {
        if let Some(h) = self.nodes.remove(id) {
            h.shutdown().await;
        }
    }

    /// Stops every node of `site` at once; returns them.
    pub async fn stop_site(&mut self, site: &SiteId) -> Vec<NodeId> {
        let ids: Vec<NodeId> = self
            .fleet
            .nodes
            .iter()
            .filter(|n| &n.site == site)
            .map(|n| n.id.clone())
            .collect();
        let handles: Vec<NodeHandle> = ids.iter().filter_map(|id| self.nodes.remove(id)).collect();
        futures_join_all(handles.into_iter().map(|h| h.shutdown())).await;
        ids
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().cloned().collect()
    }

    pub fn handle(&self, id: &NodeId) -> Option<&NodeHandle> {
        self.nodes.get(id)
    }

    pub fn snapshot(&self, id: &NodeId) -> Option<Arc<NodeSnapshot>> {
        self.nodes.get(id).map(|h| h.snapshot())
    }

    /// Voters that are running.
    pub fn running_voters(&self) -> Vec<NodeId> {
        self.fleet
            .nodes
            .iter()
            .filter(|n| n.roles.voter && self.nodes.contains_key(&n.id))
            .map(|n| n.id.clone())
            .collect()
    }

    /// The timeline events of every node; can be taken once.
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<NodeEvent>> {
        self.events_rx.take()
    }

    /// Polls `pred` every 10 ms until it holds or `timeout` passes.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&LocalFleet) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The committed verdict ("up" | "down" | "none") and epoch each running voter shows for `site`.
    pub fn verdicts(&self, site: &SiteId) -> BTreeMap<NodeId, (&'static str, Option<u64>)> {
        self.running_voters()
            .into_iter()
            .filter_map(|id| {
                let snap = self.snapshot(&id)?;
                let v = snap.sites.iter().find(|s| &s.id == site)?;
                Some((id, (v.verdict, v.epoch)))
            })
            .collect()
    }

    pub async fn shutdown(mut self) {
        let handles: Vec<NodeHandle> = std::mem::take(&mut self.nodes).into_values().collect();
        futures_join_all(handles.into_iter().map(|h| h.shutdown())).await;
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let tasks: Vec<_> = futs.map(tokio::spawn).collect();
    for t in tasks {
        let _ = t.await;
    }
}
