//! Pure state machines. Nothing in here reads a clock, spawns a task, touches a socket or a
//! file, or draws from an unseeded RNG: time and randomness are passed in, so the driver, the
//! simulator and the unit tests all run exactly the same logic.

pub mod actuator_kind;
pub mod alarm;
pub mod anycast;
pub mod fence;
pub mod health;
pub mod maintenance;
pub mod net_prefix;
pub mod node;
pub mod notify;
pub mod oplock;
pub mod pinger;
pub mod pipeline;
pub mod quorum;
pub mod replica;
pub mod trust;
pub mod types;
pub mod voter;
