//! How much of an attempt's output the journal keeps.

/// The most of an attempt's detail (actuator output) a journal entry keeps. Every entry is
/// replicated to the electorate and kept on disk; a noisy step retried many times must not
/// grow the journal by its whole output each time.
pub const MAX_DETAIL_BYTES: usize = 2048;

/// `detail` cut to at most `MAX_DETAIL_BYTES`: its head and its tail (where errors usually
/// are) around a marker saying how much was left out. Cuts fall on char boundaries.
pub fn cap_detail(detail: String) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    // The marker is at most 40 bytes; the rest is split between head and tail.
    let keep = (MAX_DETAIL_BYTES - 40) / 2;
    let mut head = keep;
    while !detail.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = detail.len() - keep;
    while !detail.is_char_boundary(tail) {
        tail += 1;
    }
    let cut = tail - head;
    format!(
        "{}\n[... {cut} bytes cut ...]\n{}",
        &detail[..head],
        &detail[tail..]
    )
}
