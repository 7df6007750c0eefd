//! Keeping the relay's resident memory to what the table needs.
//!
//! glibc's allocator gives every thread that allocates under contention an
//! arena of its own (up to 8 per core) and keeps freed memory in them. A
//! table reload decodes on whichever thread runs it and frees the table
//! before it on another, so after a few reloads a 100k-contact relay held
//! more than twice its table in freed pages (measured: 139 MiB resident
//! after 6 reloads, 61 MiB after the first; docs/performance.md). Two
//! arenas are plenty for a relay (its allocations are small and short),
//! and after each reload the freed pages go back to the kernel.

/// Caps glibc's arenas at two. Call once, before the runtime starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed memory to the kernel (after a reload has freed the
/// decoding's buffers and, unless a session still holds it, the table
/// before).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
