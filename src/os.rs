//! What spfd asks of the operating system beyond sockets and files: handing freed heap
//! back, and keeping background work out of the way of queries.

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

/// Moves the calling thread to the idle scheduling class (SCHED_IDLE, Linux applies
/// it per thread): it runs only on CPU time no other thread wants, so on a machine
/// where queries keep every core busy a snapshot build waits for them instead of
/// delaying them by a time slice. Failure only means the thread keeps the normal class.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_param is plain data; sched_setscheduler with pid 0 changes only the
    // calling thread's scheduling class.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}
