//! The process heap.

/// Hands the heap's free pages back to the kernel. glibc keeps freed memory in its
/// arenas; after a replaced snapshot of every zone is freed, that is most of the
/// process, and resident memory would otherwise stay at its peak of two generations.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no
    // preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
