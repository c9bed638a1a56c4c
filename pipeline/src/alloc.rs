//! Options of mimalloc, the global allocator of the courier binary and of the
//! benches (which use it so they measure what the binary runs).
//!
//! mimalloc returns freed memory to the OS 10 ms after it became free
//! (`purge_delay`). Indexing and folding free and reallocate large buffers
//! continually (a tantivy segment's arena, a batch's documents and rows), so a
//! purged page was soon faulted in again and zeroed by the kernel: 18% of the
//! search indexing profile was `clear_page_erms`. A delay of a second keeps
//! memory a busy processor reuses mapped and still returns what an idle one
//! freed (BENCHMARKS.md, "Search view").

use std::ffi::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (v2 and v3 alike).
const PURGE_DELAY: c_int = 15;
/// Milliseconds freed memory stays mapped for reuse.
const PURGE_DELAY_MS: c_long = 1000;

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// Applies courier's allocator options; call first thing in `main`.
pub fn tune() {
    // SAFETY: mimalloc's own option setter, linked through the mimalloc
    // dependency; it only stores the value, read again at each purge.
    unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}
