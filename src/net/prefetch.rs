//! Asking the CPU for memory before it is needed. A Pinger's round touches every probe
//! session once, each a few hundred bytes on the heap, last used a round earlier and long
//! gone from the nearest caches; taken one by one, each session's first read waits for
//! memory. Asked for a few probes ahead (or a whole receive batch at once), the waits
//! overlap. A hint only: nothing else depends on it, and it does nothing on targets
//! without the instruction.

/// Probes looked up ahead of the one being sealed: enough to cover a memory access with the
/// work of the probes between, few enough to stay in the first-level cache.
pub(super) const AHEAD: usize = 8;

/// Brings the cache lines of `bytes` towards the CPU (a node id's, to hash it).
#[inline(always)]
pub(super) fn prefetch_bytes(bytes: &[u8]) {
    prefetch_range(bytes.as_ptr(), bytes.len());
}

/// Brings every cache line of `value` towards the CPU.
#[inline(always)]
pub(super) fn prefetch<T>(value: &T) {
    prefetch_range((value as *const T).cast(), std::mem::size_of::<T>());
}

/// The lines of `len` bytes from `start`, which need not start on a line: the last byte may
/// be on one more.
#[inline(always)]
fn prefetch_range(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let offsets = (0..len)
            .step_by(64)
            .chain(std::iter::once(len.saturating_sub(1)));
        for offset in offsets {
            // SAFETY: SSE is part of every x86_64 CPU, and a prefetch reads nothing into the
            // program and never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}
