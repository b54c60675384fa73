//! The mesh between nodes: the fleet CA and node certificates (`certs`), mutual TLS that
//! admits only nodes of the fleet (`tls`), and the QUIC transport carrying probes as datagrams
//! and messages as streams (`mesh`). It moves and authenticates bytes; what they mean is the
//! node's business.

pub mod certs;
mod link;
pub mod mesh;
mod shared;
pub mod tls;

pub use certs::{CertError, CertPaths};
pub use mesh::{Mesh, MeshConfig, MeshError, MeshEvent, MeshStats};
