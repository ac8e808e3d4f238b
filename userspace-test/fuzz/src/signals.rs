//! The process's signal handlers: SIGUSR1, which interrupts blocking
//! calls, and SIGBUS, which a touch of a removed device's mapping raises
//! and which the handler mends and counts.

use crate::config::PAGE;
use std::sync::atomic::{AtomicU64, Ordering};

/// SIGBUS count of this process (the handler's only state).
pub(crate) static SIGBUS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {}

extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: This handler is installed with SA_SIGINFO, so the kernel passes
    // `info` pointing to a valid siginfo_t for the duration of the call;
    // `si_addr` only reads it.
    let addr = unsafe { (*info).si_addr() } as usize & !(PAGE - 1);
    // Map an anonymous page over the page that faulted, so that the access
    // succeeds when the handler returns. mmap is async-signal-safe.
    // SAFETY: MAP_FIXED replaces exactly the one page-aligned page whose access
    // raised SIGBUS: in this process only the fuzzer's raw mappings of a
    // removed device do, and they are reached only through raw addresses in the
    // workers' tables, never through a Rust reference, so swapping in an
    // anonymous page invalidates nothing Rust relies on. mmap takes no pointer
    // it reads and is async-signal-safe.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        // Not ours to mend: let the fault kill the process, loudly.
        // SAFETY: The signal call takes no pointers and is async-signal-safe;
        // SIG_DFL is a valid disposition for SIGBUS.
        unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
    } else {
        SIGBUS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Installs the process's handlers: SIGUSR1 interrupts blocking calls
/// (no `SA_RESTART`), SIGBUS is mended as above.
pub(crate) fn install_handlers() {
    // SAFETY: Each `sa` is a zeroed sigaction (a valid value) with an emptied
    // mask, and the handlers installed only do async-signal-safe work (nothing,
    // or mmap, signal and an atomic add); the old actions are not asked for
    // (null).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}
