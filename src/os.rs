//! What spfd asks of the operating system beyond sockets and files: handing freed heap
//! back, keeping background work out of the way of queries, and as many open files as
//! the hard limit allows.

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

/// Raises the soft limit on open files (RLIMIT_NOFILE) to the hard limit, as NSD and
/// Knot do: the common soft limit of 1024 is below a useful TCP connection cap. Returns
/// the soft limit in force afterwards; `None` when it cannot be read.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit to the pointer it is given, which is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let mut want = limit.rlim_max;
    if want == libc::RLIM_INFINITY {
        // Linux refuses a soft limit above fs.nr_open.
        want = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    if limit.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the
        // hard one needs no privilege and affects only descriptor allocation.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = want;
        }
    }
    Some(limit.rlim_cur)
}
