//! The lock that serialises changes to one router's route file: a BIRD include file or an
//! ExaBGP state file. A bgp step reads the file, changes its set of prefixes, writes it and
//! tells the router; two steps doing that at once (two watches, or a step and its
//! compensation run by another node process on the same host) would each write their own
//! set and one change would be lost. This module owns the advisory `flock(2)` on a lock file
//! beside the route file (`FILE.lock`), held from before the read until the router has been
//! told to reconfigure. It never blocks a thread: it polls a non-blocking lock until the
//! step's deadline. Only quorate's steps take the lock; an operator editing the file by hand
//! is not held off (the file says "do not edit").

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// How often a step waiting for the lock tries again.
const RETRY: Duration = Duration::from_millis(10);

/// An exclusive lock on `FILE.lock`; released when dropped (the kernel drops it with the
/// file descriptor, also when the process dies).
#[derive(Debug)]
pub(crate) struct RouteLock {
    _file: File,
}

/// The lock file of `path`: `path` with `.lock` appended, in the same directory.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

impl RouteLock {
    /// Takes the lock of `path`, waiting until `deadline` for another step to let go.
    pub(crate) async fn acquire(path: &Path, deadline: Instant) -> Result<RouteLock, String> {
        let lock = lock_path(path);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(|e| format!("cannot open lock file {}: {e}", lock.display()))?;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(RouteLock { _file: file }),
                Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
                Err(e) => return Err(format!("cannot lock {}: {e}", lock.display())),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} is locked by another step changing {} and was not released before \
                     this step's timeout",
                    lock.display(),
                    path.display()
                ));
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}
