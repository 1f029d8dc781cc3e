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

/// The nice value of background threads (snapshot builds, expansion): the lowest
/// priority that still gets CPU time under full load (SCHED_IDLE could starve a build, and with it every
/// edit, while queries keep every core busy).
const BACKGROUND_NICE: libc::c_int = 19;

/// Lowers the calling thread's scheduling priority (Linux applies nice values per
/// thread), so that on a machine where queries keep every core busy background work
/// yields to them instead of delaying them by a time slice. Failure only means the
/// thread keeps the normal priority.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and a thread
    // id changes only that thread's nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE);
    }
}

/// The message of a caught panic, for the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
