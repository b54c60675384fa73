//! The mesh between nodes: the fleet CA and node certificates (`certs`), mutual TLS that
//! admits only nodes of the fleet (`tls`), the QUIC transport carrying messages as streams
//! (`mesh`), and beside it on the same socket the authenticated UDP probe packets (`probe`,
//! `probe_sessions`, `probe_socket`), keyed from each connection's TLS session. It moves and
//! authenticates bytes; what they mean is the node's business.

mod admission;
pub mod certs;
mod inbox;
mod link;
pub mod mesh;
mod prefetch;
pub mod probe;
mod probe_batch;
mod probe_sessions;
mod probe_socket;
mod shared;
pub mod tls;
mod trim;
mod turns;

pub use certs::{CertError, CertPaths};
pub use inbox::{MeshInbox, PEER_QUEUE_BYTES, PEER_QUEUE_EVENTS};
pub use mesh::{Mesh, MeshConfig, MeshError, MeshEvent, MeshStats};
pub use probe_sessions::OutgoingProbe;
