//! A worker's state: the files, mappings and eventfds one thread holds,
//! its generator, argument buffer and counts, and what every call on
//! that state shares (picking a file, counting a result, letting go).

use crate::config::{BUF, Config, MAX_EFDS, MAX_FDS, MAX_MAPS};
use crate::report::Report;
use crate::rng::Rng;
use guest_sys::errno;
use std::ffi::CString;
use std::sync::atomic::AtomicI32;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Fd {
    pub(crate) fd: i32,
    /// BAR2 size from INFO at open (0 if INFO failed).
    pub(crate) size: usize,
    /// Usable vectors from INFO at open.
    pub(crate) vectors: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Map {
    pub(crate) addr: usize,
    pub(crate) len: usize,
    pub(crate) prot: i32,
    /// Not inherited by forked children: MADV_DONTFORK stuck (the kernel
    /// refuses MADV_DOFORK on VM_IO mappings).
    pub(crate) dontfork: bool,
}

pub(crate) struct Worker<'a> {
    pub(crate) rng: Rng,
    pub(crate) paths: Vec<CString>,
    pub(crate) fds: Vec<Fd>,
    pub(crate) maps: Vec<Map>,
    pub(crate) efds: Vec<i32>,
    pub(crate) epfd: i32,
    pub(crate) buf: Vec<u8>,
    pub(crate) tids: &'a [AtomicI32],
    pub(crate) report: Report,
    /// The caller's `until_gone`.
    pub(crate) until_gone: Option<std::path::PathBuf>,
}

impl<'a> Worker<'a> {
    pub(crate) fn new(cfg: &'a Config, seed: u64, tids: &'a [AtomicI32]) -> Self {
        let paths = cfg
            .devices
            .iter()
            .filter_map(|p| CString::new(p.as_os_str().as_encoded_bytes()).ok())
            .collect();
        // SAFETY: The epoll_create1 call takes no pointers; the descriptor it
        // returns (or -1, which `epoll` checks) belongs to this worker alone
        // and is closed in `drop`.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        Worker {
            rng: Rng::new(seed),
            paths,
            fds: Vec::with_capacity(MAX_FDS),
            maps: Vec::with_capacity(MAX_MAPS + 2),
            efds: Vec::with_capacity(MAX_EFDS),
            epfd,
            buf: vec![0; BUF],
            tids,
            report: Report::default(),
            until_gone: cfg.until_gone.clone(),
        }
    }

    /// Counts a call's result: `r < 0` is a failure with errno.
    pub(crate) fn result(&mut self, r: i64) -> i64 {
        if r < 0 {
            *self.report.errors.entry(errno()).or_default() += 1;
        }
        r
    }

    pub(crate) fn some_fd(&mut self) -> Option<Fd> {
        if self.fds.is_empty() {
            None
        } else {
            let i = self.rng.below(self.fds.len() as u64) as usize;
            Some(self.fds[i])
        }
    }

    pub(crate) fn munmap_whole(&mut self) {
        if let Some(m) = self.maps.pop() {
            // SAFETY: The `m` was just popped off this worker's table: `addr`
            // and `len` are exactly a mapping it made, reached only through
            // that raw entry, so nothing refers to the memory once it is gone.
            unsafe { libc::munmap(m.addr as *mut libc::c_void, m.len) };
        }
    }

    pub(crate) fn teardown(&mut self) {
        while !self.maps.is_empty() {
            self.munmap_whole();
        }
        for fd in self.fds.drain(..).map(|f| f.fd).chain(self.efds.drain(..)) {
            // SAFETY: Every `fd` is drained out of this worker's tables, each
            // opened by it and closed here once.
            unsafe { libc::close(fd) };
        }
        if self.epfd >= 0 {
            // SAFETY: The `self.epfd` is the epoll descriptor this worker made
            // and is dropping, closed once here.
            unsafe { libc::close(self.epfd) };
        }
    }
}
