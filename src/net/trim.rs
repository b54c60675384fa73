//! Gives the memory of closed connections back to the operating system. A connection holds
//! tens of KiB in many small blocks (QUIC and TLS state, keys, buffers, its tasks), and
//! glibc's allocator keeps freed blocks for reuse: only a free stretch at the top of a heap
//! goes back by itself. A Pinger whose thousand quiet pairs all connected at its start and then
//! parked would hold the start's pages for good (about 50 MiB at 1,000 Indicators against
//! 28 MiB once given back, docs/performance.md), although the connections are gone.
//! `malloc_trim` releases every whole free page of every heap; it takes a few milliseconds
//! at that size, so it runs at most once per `TRIM_EVERY`, and only after enough connections
//! closed to be worth it. Elsewhere than glibc it is nothing.

use super::link::Stop;
use super::shared::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the trimmer looks; a closed connection drains for three of its probe timeouts
/// (tens of milliseconds on a LAN) before quinn frees it, long before the next look.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// Connections closed since the last trim that make the next one worth its milliseconds.
const TRIM_AFTER_CLOSED: u64 = 32;

/// Runs until the mesh stops.
pub(super) async fn trimmer(shared: Arc<Shared>, mut stop: Stop) {
    let mut trimmed_at = 0;
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
        let closed = shared.counters.closed_connections.load(Ordering::Relaxed);
        if closed - trimmed_at >= TRIM_AFTER_CLOSED {
            trimmed_at = closed;
            release_free_memory();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its own locks.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "freed memory given back to the system"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
