//! quorate: decides by a majority of independent observers that a site is lost.
//!
//! `core` holds the pure state machines; `node` drives them with tokio, `net` carries their
//! messages over QUIC with mutual TLS, `store` keeps what must survive a crash in SQLite and
//! `api` answers REST queries from published snapshots.

pub mod actuators;
pub mod api;
pub mod cli;
pub mod config;
pub mod core;
pub mod demo;
pub mod failpoint;
pub mod localfleet;
pub mod net;
pub mod node;
pub mod relay;
pub mod sim;
pub mod small_file;
pub mod store;
pub mod wire;
