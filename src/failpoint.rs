//! Named crash points, for the tests that kill a node at an exact place in a failover run.
//!
//! A node started with `QUORATE_FAILPOINT=NAME` and `QUORATE_FAILPOINT_ONCE=FILE` in its
//! environment, on reaching the point NAME, creates FILE holding its node id (so only the
//! first node of a fleet to get there stops, however many share the setting), logs it, and
//! freezes its event loop for good: whatever the point follows has happened, nothing after
//! it will, and the test `kill -9`s the process. Without the variables a point costs one
//! check of a value read once.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

struct Armed {
    name: String,
    once: PathBuf,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let name = std::env::var("QUORATE_FAILPOINT").ok()?;
            let once = std::env::var_os("QUORATE_FAILPOINT_ONCE")?;
            Some(Armed {
                name,
                once: PathBuf::from(once),
            })
        })
        .as_ref()
}

/// Point `name()` of node `node` is reached; freezes the calling thread there when it is the
/// armed point and no node stopped at it yet.
pub fn reached(node: &str, name: impl FnOnce() -> String) {
    let Some(a) = armed() else {
        return;
    };
    if name() != a.name {
        return;
    }
    let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.once)
    else {
        return;
    };
    let _ = f.write_all(node.as_bytes());
    let _ = f.sync_all();
    tracing::error!(point = %a.name, "failpoint reached: this node stops here until it is killed");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
