//! How the process holds memory.

/// Keeps the process off transparent huge pages. mimalloc (the binary's
/// allocator) reserves large arenas; on a kernel that backs them with 2 MiB
/// pages, every arena it touches becomes resident whole: the dataset bench's six
/// idle nodes peaked at 107 MiB resident with them and 23 MiB without. Call
/// once, early in `main` (after logging is set up, before nodes start): the
/// flag is the whole process's.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages stay allowed");
    }
}
