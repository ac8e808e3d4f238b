//! A seeded fuzzer of `/dev/ivshmemN`, run inside a guest.
//!
//! Several processes, each with several threads, issue random but
//! valid-shaped sequences of calls on the device nodes: open, close, dup
//! and fork; mmap with random offsets, lengths, protections and flags
//! (`MAP_PRIVATE` included); partial munmap, mremap, mprotect,
//! `madvise(MADV_DONTNEED)`; touching mapped pages; read with random
//! sizes, poll and epoll; every ioctl with random bytes in every field and
//! random sizes encoded in the ioctl number; eventfd bindings to random
//! descriptors; and signals between the threads, which interrupt blocking
//! calls.
//!
//! The devices may come and go meanwhile (unbind, hot-unplug): calls then
//! fail (`ENODEV`, `ENOENT`), and a touch of a mapping whose device is gone
//! raises SIGBUS, which the fuzzer counts and survives by mapping an
//! anonymous page over the one that faulted.
//!
//! Each thread draws from its own generator, seeded from the run's seed
//! and its process and thread numbers, so that a seed reproduces every
//! thread's sequence of calls; the interleaving of threads and of the
//! devices' removals is the scheduler's.
//!
//! The fuzzer checks nothing but its own survival: what it is for is the
//! kernel's reports (KASAN, lockdep, UBSAN, hung tasks, soft lockups,
//! WARN), which the test runner watches.

mod config;
mod report;
mod rng;
mod signals;

pub use config::Config;
pub use report::Report;
pub use rng::{Rng, thread_seed};

use config::*;
use guest_sys::errno;
use ivshmem::uapi::*;
use signals::{SIGBUS, install_handlers};
use std::ffi::CString;
use std::sync::atomic::{AtomicI32, Ordering};

#[derive(Debug, Clone, Copy)]
struct Fd {
    fd: i32,
    /// BAR2 size from INFO at open (0 if INFO failed).
    size: usize,
    /// Usable vectors from INFO at open.
    vectors: u32,
}

#[derive(Debug, Clone, Copy)]
struct Map {
    addr: usize,
    len: usize,
    prot: i32,
    /// Not inherited by forked children: MADV_DONTFORK stuck (the kernel
    /// refuses MADV_DOFORK on VM_IO mappings).
    dontfork: bool,
}

/// The kinds of call, in the order of their weights.
const OPS: &[(&str, u64)] = &[
    ("open", 6),
    ("close", 4),
    ("dup", 2),
    ("fork", 1),
    ("mmap", 10),
    ("munmap", 5),
    ("mremap", 3),
    ("mprotect", 3),
    ("madvise", 2),
    ("touch", 14),
    ("read", 6),
    ("poll", 4),
    ("epoll", 4),
    ("ioctl", 22),
    ("ioctl_raw", 6),
    ("eventfd", 3),
    ("bind", 5),
    ("fcntl", 2),
    ("signal", 2),
];

struct Worker<'a> {
    rng: Rng,
    paths: Vec<CString>,
    fds: Vec<Fd>,
    maps: Vec<Map>,
    efds: Vec<i32>,
    epfd: i32,
    buf: Vec<u8>,
    tids: &'a [AtomicI32],
    report: Report,
}

impl<'a> Worker<'a> {
    fn new(cfg: &'a Config, seed: u64, tids: &'a [AtomicI32]) -> Self {
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
        }
    }

    /// Counts a call's result: `r < 0` is a failure with errno.
    fn result(&mut self, r: i64) -> i64 {
        if r < 0 {
            *self.report.errors.entry(errno()).or_default() += 1;
        }
        r
    }

    fn run(&mut self, calls: u64) {
        let total: u64 = OPS.iter().map(|o| o.1).sum();
        for _ in 0..calls {
            let mut x = self.rng.below(total);
            let mut op = OPS[0].0;
            for (name, w) in OPS {
                if x < *w {
                    op = name;
                    break;
                }
                x -= w;
            }
            self.report.calls += 1;
            *self.report.ops.entry(op.to_string()).or_default() += 1;
            self.call(op);
        }
        self.teardown();
    }

    fn call(&mut self, op: &str) {
        match op {
            "open" => self.open(),
            "close" => self.close(),
            "dup" => self.dup(),
            "fork" => self.fork(),
            "mmap" => self.mmap(),
            "munmap" => self.munmap(),
            "mremap" => self.mremap(),
            "mprotect" => self.mprotect(),
            "madvise" => self.madvise(),
            "touch" => self.touch(),
            "read" => self.read(),
            "poll" => self.poll(),
            "epoll" => self.epoll(),
            "ioctl" => self.ioctl(),
            "ioctl_raw" => self.ioctl_raw(),
            "eventfd" => self.eventfd(),
            "bind" => self.bind(),
            "fcntl" => self.fcntl(),
            _ => self.signal(),
        }
    }

    fn some_fd(&mut self) -> Option<Fd> {
        if self.fds.is_empty() {
            None
        } else {
            let i = self.rng.below(self.fds.len() as u64) as usize;
            Some(self.fds[i])
        }
    }

    fn info_of(&mut self, fd: i32) -> (usize, u32) {
        let mut info = ivshmem_info::default();
        // SAFETY: INFO writes one `ivshmem_info` to the pointer.
        let r = unsafe { libc::ioctl(fd, IVSHMEM_IOCTL_INFO as _, &mut info as *mut ivshmem_info) };
        if r < 0 {
            (0, 0)
        } else {
            (info.size as usize, info.vectors)
        }
    }

    fn open(&mut self) {
        if self.paths.is_empty() {
            return;
        }
        if self.fds.len() >= MAX_FDS {
            self.close();
        }
        let i = self.rng.below(self.paths.len() as u64) as usize;
        let mut flags =
            self.rng
                .pick(&[libc::O_RDWR, libc::O_RDWR, libc::O_RDONLY, libc::O_WRONLY]);
        if self.rng.chance(40) {
            flags |= libc::O_NONBLOCK;
        }
        flags |= libc::O_CLOEXEC;
        // SAFETY: The path is a CString in `self.paths`, NUL-terminated and
        // alive across the call; open only reads it.
        let fd = unsafe { libc::open(self.paths[i].as_ptr(), flags) };
        if self.result(fd as i64) >= 0 {
            let (size, vectors) = self.info_of(fd);
            self.fds.push(Fd { fd, size, vectors });
        }
    }

    fn close(&mut self) {
        if self.fds.is_empty() {
            return;
        }
        let i = self.rng.below(self.fds.len() as u64) as usize;
        let fd = self.fds.swap_remove(i);
        // SAFETY: The `fd.fd` was opened by this worker and has just been taken
        // out of its table, so nothing else uses or closes it again.
        let r = unsafe { libc::close(fd.fd) };
        self.result(r as i64);
    }

    fn dup(&mut self) {
        let Some(fd) = self.some_fd() else { return };
        if self.fds.len() >= MAX_FDS {
            return;
        }
        // SAFETY: F_DUPFD_CLOEXEC takes no pointers; `fd.fd` is a descriptor
        // this worker opened and still holds in its table, so it is open.
        let n = unsafe { libc::fcntl(fd.fd, libc::F_DUPFD_CLOEXEC, 0) };
        if self.result(n as i64) >= 0 {
            self.fds.push(Fd { fd: n, ..fd });
        }
    }

    /// Forks a child that makes a few calls on the inherited files and
    /// mappings, without allocating, and exits; waits for it.
    fn fork(&mut self) {
        let mut rng = Rng::new(self.rng.next_u64());
        // SAFETY: The child only makes system calls on descriptors, mappings
        // and stack buffers it inherited or made before them (no allocation, no
        // locks another thread might hold) and then `_exit`s, so it never
        // returns into Rust code after the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            for _ in 0..16 {
                match rng.below(4) {
                    0 if !self.fds.is_empty() => {
                        let fd = self.fds[rng.below(self.fds.len() as u64) as usize].fd;
                        let mut info = ivshmem_info::default();
                        // SAFETY: INFO writes one `ivshmem_info` into `info`, a
                        // local of exactly that type, alive across the call;
                        // `fd` is from the table the child inherited (a bad one
                        // is only EBADF).
                        unsafe { libc::ioctl(fd, IVSHMEM_IOCTL_INFO as _, &mut info as *mut _) };
                    }
                    1 if !self.maps.is_empty() => {
                        let m = self.maps[rng.below(self.maps.len() as u64) as usize];
                        if m.prot & libc::PROT_READ != 0 && !m.dontfork {
                            let off = rng.below((m.len / PAGE) as u64) as usize * PAGE;
                            // SAFETY: Here `off` is a page inside `m`, a
                            // mapping in the table the child inherited (its
                            // pages are in the child too: `dontfork` ones are
                            // skipped), and it is readable; a SIGBUS from a
                            // removed device is mended by the inherited
                            // handler.
                            unsafe { ((m.addr + off) as *const u32).read_volatile() };
                        }
                    }
                    2 if !self.fds.is_empty() => {
                        let fd = self.fds[rng.below(self.fds.len() as u64) as usize].fd;
                        let mut b = [0u8; 64];
                        let mut p = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: The `p` is one initialised, writable pollfd
                        // on this stack frame and nfds is 1; the read writes at
                        // most `b.len()` bytes into `b`, a local 64-byte array.
                        unsafe {
                            if libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 {
                                libc::read(fd, b.as_mut_ptr().cast(), b.len());
                            }
                        }
                    }
                    _ if !self.fds.is_empty() => {
                        let fd = self.fds[rng.below(self.fds.len() as u64) as usize].fd;
                        // SAFETY: The descriptor is the child's own copy of one
                        // in the inherited table; closing it does not affect
                        // the parent, and the child never uses a `File` or
                        // `OwnedFd` for it.
                        unsafe { libc::close(fd) };
                    }
                    _ => {}
                }
            }
            // SAFETY: The `_exit` call has no preconditions; in the child it
            // ends the process at once, without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(0) };
        }
        if self.result(pid as i64) > 0 {
            self.report.forks += 1;
            let mut status = 0;
            // SAFETY: The `pid` is the child forked above, not reaped yet;
            // `status` is a local int the call writes. The wait is repeated
            // when a sibling's SIGUSR1 interrupts it.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
            if libc::WIFSIGNALED(status) {
                self.report.fork_deaths += 1;
            }
        }
    }

    fn mmap(&mut self) {
        let Some(fd) = self.some_fd() else { return };
        while self.maps.len() >= MAX_MAPS {
            self.munmap_whole();
        }
        let size = fd.size;
        let pages = (size / PAGE) as u64;
        let offset = match self.rng.below(9) {
            0..=2 => 0,
            3 | 4 => self.rng.below(pages) as usize * PAGE,
            5 => size.saturating_sub(PAGE),
            6 => size,
            // The doorbell page: touches then store to the registers.
            7 => DOORBELL_MMAP_OFFSET,
            _ => (self.rng.next_u64() as usize) & !(PAGE - 1),
        };
        let len = match self.rng.below(8) {
            0 | 1 => PAGE,
            2 | 3 => (1 + self.rng.below(pages.min(16 * MIB as u64 / PAGE as u64))) as usize * PAGE,
            4 => 2 * MIB,
            5 => size.saturating_sub(offset),
            6 => 0,
            _ => size + PAGE,
        };
        let prot = self.rng.pick(&[
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ,
            libc::PROT_WRITE,
            libc::PROT_NONE,
            libc::PROT_READ | libc::PROT_EXEC,
        ]);
        let mut flags = if self.rng.chance(85) {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        if self.rng.chance(10) {
            flags |= libc::MAP_POPULATE;
        }
        if self.rng.chance(5) {
            flags |= libc::MAP_NORESERVE;
        }
        if let Ok(p) = guest_sys::mmap(fd.fd, len, prot, flags, offset as libc::off_t) {
            self.maps.push(Map {
                addr: p as usize,
                len,
                prot,
                dontfork: false,
            });
        } else {
            self.result(-1);
        }
    }

    fn munmap_whole(&mut self) {
        if let Some(m) = self.maps.pop() {
            // SAFETY: The `m` was just popped off this worker's table: `addr`
            // and `len` are exactly a mapping it made, reached only through
            // that raw entry, so nothing refers to the memory once it is gone.
            unsafe { libc::munmap(m.addr as *mut libc::c_void, m.len) };
        }
    }

    /// Unmaps a random page-aligned part of a mapping: its head, its tail,
    /// its middle (splitting it) or all of it.
    fn munmap(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let m = self.maps.swap_remove(i);
        let pages = m.len / PAGE;
        let a = self.rng.below(pages as u64) as usize;
        let b = a + 1 + self.rng.below((pages - a) as u64) as usize;
        // SAFETY: The range `a..b` pages lies inside `m` (`a < b <= pages`), a
        // mapping this worker made and has taken out of its table (the pieces
        // left are put back below), reached only through raw addresses, so
        // nothing refers to the unmapped part.
        let r = unsafe { libc::munmap((m.addr + a * PAGE) as *mut libc::c_void, (b - a) * PAGE) };
        if self.result(r as i64) < 0 {
            self.maps.push(m);
            return;
        }
        if a > 0 {
            self.maps.push(Map { len: a * PAGE, ..m });
        }
        if b < pages {
            self.maps.push(Map {
                addr: m.addr + b * PAGE,
                len: (pages - b) * PAGE,
                ..m
            });
        }
    }

    fn mremap(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let m = self.maps[i];
        let pages = (m.len / PAGE) as u64;
        let new_len = match self.rng.below(3) {
            0 => (1 + self.rng.below(pages)) as usize * PAGE,
            1 => m.len + PAGE * (1 + self.rng.below(4)) as usize,
            _ => m.len,
        };
        let flags = if self.rng.chance(70) {
            libc::MREMAP_MAYMOVE
        } else {
            0
        };
        // SAFETY: The `m` is a mapping this worker made and reaches only
        // through its raw table entry; mremap without MREMAP_FIXED picks any
        // new address itself, so no other memory is replaced, and the table is
        // updated with the result.
        let p = unsafe { libc::mremap(m.addr as *mut libc::c_void, m.len, new_len, flags) };
        if p == libc::MAP_FAILED {
            self.result(-1);
        } else {
            self.maps[i] = Map {
                addr: p as usize,
                len: new_len,
                ..m
            };
        }
    }

    fn mprotect(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let prot = self.rng.pick(&[
            libc::PROT_READ,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_NONE,
            libc::PROT_READ | libc::PROT_EXEC,
        ]);
        let m = self.maps[i];
        // SAFETY: The `m.addr` and `m.len` are exactly a mapping this worker
        // made and reaches only through raw addresses; accesses to it check
        // `prot` in the table, updated below.
        let r = unsafe { libc::mprotect(m.addr as *mut libc::c_void, m.len, prot) };
        if self.result(r as i64) == 0 {
            self.maps[i].prot = prot;
        }
    }

    fn madvise(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let m = self.maps[i];
        let advice = self.rng.pick(&[
            libc::MADV_DONTNEED,
            libc::MADV_DONTNEED,
            libc::MADV_WILLNEED,
            libc::MADV_NOHUGEPAGE,
            libc::MADV_DONTFORK,
            libc::MADV_DOFORK,
        ]);
        // SAFETY: The `m.addr` and `m.len` are exactly a mapping this worker
        // made. None of the advice frees memory a Rust reference points to (the
        // mapping is device memory reached only through raw addresses).
        // DONTFORK keeps it out of forked children, which touch the mappings in
        // their table: it is undone at once, and where the kernel refuses that
        // (VM_IO mappings), the mapping is marked so that children leave it.
        let r = unsafe { libc::madvise(m.addr as *mut libc::c_void, m.len, advice) };
        if self.result(r as i64) == 0 && advice == libc::MADV_DONTFORK {
            // SAFETY: The `m.addr` and `m.len` are exactly the mapping just
            // advised, still in this worker's table; MADV_DOFORK only undoes
            // the DONTFORK.
            let undone =
                unsafe { libc::madvise(m.addr as *mut libc::c_void, m.len, libc::MADV_DOFORK) };
            if undone != 0 {
                self.maps[i].dontfork = true;
            }
        }
    }

    /// Reads or writes a random page of a mapping, as its protection allows.
    fn touch(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let m = self.maps[self.rng.below(self.maps.len() as u64) as usize];
        let off = self.rng.below((m.len / PAGE) as u64) as usize * PAGE
            + self.rng.below((PAGE / 8) as u64) as usize * 8;
        let p = (m.addr + off) as *mut u64;
        if m.prot & libc::PROT_WRITE != 0 && self.rng.chance(50) {
            // SAFETY: The 8 bytes at `off` (8-aligned, below `m.len`) lie
            // inside `m`, a mapping this worker made and maps writable; it is
            // device memory no Rust reference points to, and a removed device's
            // SIGBUS is mended by the handler.
            unsafe { p.write_volatile(self.rng.next_u64()) };
        } else if m.prot & libc::PROT_READ != 0 {
            // SAFETY: The 8 bytes at `off` (8-aligned, below `m.len`) lie
            // inside `m`, a mapping this worker made and maps readable; a
            // removed device's SIGBUS is mended by the handler.
            std::hint::black_box(unsafe { p.read_volatile() });
        }
    }

    fn read(&mut self) {
        let Some(fd) = self.some_fd() else { return };
        let n = self.rng.pick(&[0usize, 1, 8, 15, 16, 17, 32, 64, 4096]);
        let mut p = libc::pollfd {
            fd: fd.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: The `p` is one initialised, writable pollfd on this stack
        // frame and nfds is 1; `fd.fd` is a descriptor in this worker's table,
        // so open.
        let ready = unsafe { libc::poll(&mut p, 1, 0) } == 1;
        // SAFETY: F_GETFL takes no pointers; `fd.fd` is a descriptor in this
        // worker's table, so open.
        let nonblock = unsafe { libc::fcntl(fd.fd, libc::F_GETFL) } & libc::O_NONBLOCK != 0;
        if ready || nonblock || n == 0 {
            // SAFETY: The buffer is `self.buf`, BUF bytes (more than 4096, the
            // largest `n`), alive across the call; `fd.fd` is open, as above.
            let r = unsafe { libc::read(fd.fd, self.buf.as_mut_ptr().cast(), n) };
            self.result(r as i64);
        }
    }

    fn poll(&mut self) {
        let mut set = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; 3];
        let k = 1 + self.rng.below(3) as usize;
        for p in set.iter_mut().take(k) {
            if let Some(fd) = self.some_fd() {
                p.fd = fd.fd;
                p.events = self
                    .rng
                    .pick(&[libc::POLLIN, libc::POLLIN | libc::POLLOUT, 0]);
            }
        }
        let timeout = self.rng.below(3) as i32;
        // SAFETY: The `set` is a local array of 3 initialised pollfds and `k <=
        // 3`, so the kernel reads and writes only within it; fds of -1 are
        // ignored by poll.
        let r = unsafe { libc::poll(set.as_mut_ptr(), k as libc::nfds_t, timeout) };
        self.result(r as i64);
    }

    fn epoll(&mut self) {
        if self.epfd < 0 {
            return;
        }
        match self.rng.below(3) {
            0 => {
                let Some(fd) = self.some_fd() else { return };
                let mut ev = libc::epoll_event {
                    events: self.rng.pick(&[
                        libc::EPOLLIN as u32,
                        (libc::EPOLLIN | libc::EPOLLET) as u32,
                        (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
                        (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
                    ]),
                    u64: fd.fd as u64,
                };
                let op = self.rng.pick(&[
                    libc::EPOLL_CTL_ADD,
                    libc::EPOLL_CTL_MOD,
                    libc::EPOLL_CTL_DEL,
                ]);
                // SAFETY: The `ev` is a local epoll_event alive across the
                // call, which the kernel only reads; `self.epfd` (checked
                // non-negative above) and `fd.fd` are descriptors this worker
                // holds open.
                let r = unsafe { libc::epoll_ctl(self.epfd, op, fd.fd, &mut ev) };
                self.result(r as i64);
            }
            _ => {
                let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
                let timeout = self.rng.below(3) as i32;
                // SAFETY: The `evs` is a local array of 8 epoll_events and
                // maxevents is 8, so the kernel writes only within it;
                // `self.epfd` is this worker's epoll descriptor, checked
                // non-negative above.
                let r = unsafe { libc::epoll_wait(self.epfd, evs.as_mut_ptr(), 8, timeout) };
                self.result(r as i64);
            }
        }
    }

    /// Fills `len` bytes of the buffer at `at` with random bytes.
    fn scramble(&mut self, at: usize, len: usize) {
        for chunk in self.buf[at..at + len].chunks_mut(8) {
            let v = self.rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// A known ioctl, its structure filled with random bytes and then,
    /// often, made valid-shaped (zero flags and reserved fields, a vector
    /// in range), with the right size or a random one.
    fn ioctl(&mut self) {
        let Some(fd) = self.some_fd() else { return };
        let nr = self.rng.below(5) as u32;
        let (dir, size) = match nr {
            0 => (2u32, std::mem::size_of::<ivshmem_info>()),
            1 => (1, std::mem::size_of::<ivshmem_cache>()),
            2 => (1, std::mem::size_of::<ivshmem_ring>()),
            3 => (1, std::mem::size_of::<ivshmem_mask>()),
            _ => (1, std::mem::size_of::<ivshmem_eventfd>()),
        };
        let size = match self.rng.below(6) {
            0 => self.rng.below(size as u64) as usize,
            1 => size + 8 * self.rng.below(8) as usize,
            2 => self.rng.below(ARG_SIZE as u64) as usize,
            _ => size,
        };
        let at = self.rng.below((BUF - ARG_SIZE) as u64) as usize & !7;
        self.scramble(at, size.max(64));
        if self.rng.chance(60) {
            let vectors = u64::from(fd.vectors.max(1));
            let b = &mut self.buf[at..];
            match nr {
                1 => {
                    b[..4].copy_from_slice(&(self.rng.below(4) as u32).to_le_bytes());
                    b[4..16].fill(0);
                }
                2 => {
                    let vector = self.rng.below(vectors + 1) as u16;
                    b[2..4].copy_from_slice(&vector.to_le_bytes());
                    b[4..16].fill(0);
                }
                3 => b[32..48].fill(0),
                4 => {
                    let fd = if self.efds.is_empty() || self.rng.chance(20) {
                        -1
                    } else {
                        self.efds[self.rng.below(self.efds.len() as u64) as usize]
                    };
                    let vector = self.rng.below(vectors + 1) as u16;
                    b[..4].copy_from_slice(&fd.to_le_bytes());
                    b[4..6].copy_from_slice(&vector.to_le_bytes());
                    b[6..16].fill(0);
                }
                _ => {}
            }
        }
        let dir = if self.rng.chance(10) {
            self.rng.below(4) as u32
        } else {
            dir
        };
        let cmd = (dir << 30)
            | ((size as u32 & 0x3fff) << 16)
            | (u32::from(IVSHMEM_IOCTL_MAGIC) << 8)
            | nr;
        // SAFETY: The argument points into `self.buf` at `at < BUF - ARG_SIZE`,
        // so at least ARG_SIZE bytes follow it, more than the largest size a
        // command can encode (14 bits); the buffer is alive across the call and
        // no Rust reference into it is held.
        let r = unsafe { libc::ioctl(fd.fd, cmd as _, self.buf.as_mut_ptr().add(at)) };
        self.result(r as i64);
    }

    /// An ioctl number made up: our type with any number, direction and
    /// size, a few foreign ones, and bad argument pointers.
    fn ioctl_raw(&mut self) {
        let Some(fd) = self.some_fd() else { return };
        let cmd: u32 = if self.rng.chance(80) {
            ((self.rng.below(4) as u32) << 30)
                | ((self.rng.below(ARG_SIZE as u64) as u32) << 16)
                | (u32::from(IVSHMEM_IOCTL_MAGIC) << 8)
                | self.rng.below(32) as u32
        } else {
            // TCGETS, FIONREAD, FS_IOC_GETFLAGS, FIOQSIZE.
            self.rng.pick(&[0x5401, 0x541b, 0x8008_6601, 0x5460])
        };
        let at = self.rng.below((BUF - ARG_SIZE) as u64) as usize;
        let arg: usize = match self.rng.below(10) {
            0 => 0,
            1 => 1,
            2 => 0xffff_8000_0000_0000,
            _ => self.buf.as_mut_ptr().wrapping_add(at) as usize,
        };
        self.scramble(at, 256);
        // SAFETY: The argument is either a bad address (0, 1, a kernel
        // address), which the kernel only hands to copy_from_user/copy_to_user
        // and refuses with EFAULT, or points into `self.buf` with at least
        // ARG_SIZE bytes after it, more than any encoded size and than any
        // foreign command's structure; the buffer is alive across the call and
        // no Rust reference into it is held.
        let r = unsafe { libc::ioctl(fd.fd, cmd as _, arg) };
        self.result(r as i64);
    }

    fn eventfd(&mut self) {
        if self.efds.len() >= MAX_EFDS || self.rng.chance(30) {
            if !self.efds.is_empty() {
                let i = self.rng.below(self.efds.len() as u64) as usize;
                let fd = self.efds.swap_remove(i);
                // SAFETY: The `fd` is an eventfd this worker made and has just
                // taken out of its table, so nothing else uses or closes it
                // again.
                unsafe { libc::close(fd) };
            }
            return;
        }
        // SAFETY: The eventfd call takes no pointers; the descriptor it returns
        // goes into this worker's table and is closed by it alone.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if self.result(fd as i64) >= 0 {
            self.efds.push(fd);
        }
    }

    /// BIND_EVENTFD, well-formed, to one of the worker's eventfds, another
    /// descriptor, a closed number or -1 (unbind).
    fn bind(&mut self) {
        let Some(dev) = self.some_fd() else { return };
        let fd = match self.rng.below(5) {
            0 | 1 if !self.efds.is_empty() => {
                self.efds[self.rng.below(self.efds.len() as u64) as usize]
            }
            2 => dev.fd,
            3 => 1000 + self.rng.below(1000) as i32,
            _ => -1,
        };
        let req = ivshmem_eventfd {
            fd,
            vector: self.rng.below(u64::from(dev.vectors) + 2) as u16,
            ..Default::default()
        };
        // SAFETY: BIND_EVENTFD reads one `ivshmem_eventfd`.
        let r = unsafe { libc::ioctl(dev.fd, IVSHMEM_IOCTL_BIND_EVENTFD as _, &req) };
        self.result(r as i64);
    }

    fn fcntl(&mut self) {
        let Some(fd) = self.some_fd() else { return };
        // SAFETY: F_GETFL and F_SETFL take no pointers; `fd.fd` is a descriptor
        // in this worker's table, so open.
        let r = unsafe {
            let fl = libc::fcntl(fd.fd, libc::F_GETFL);
            libc::fcntl(fd.fd, libc::F_SETFL, fl ^ libc::O_NONBLOCK)
        };
        self.result(r as i64);
    }

    /// SIGUSR1 to a random thread of this process (an interrupted call
    /// fails with EINTR).
    fn signal(&mut self) {
        let tid =
            self.tids[self.rng.below(self.tids.len() as u64) as usize].load(Ordering::Relaxed);
        if tid > 0 {
            // SAFETY: The tgkill call takes no pointers and signals `tid` only
            // if it is in this process's thread group; SIGUSR1's handler does
            // nothing.
            let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
            self.result(r);
        }
    }

    fn teardown(&mut self) {
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

/// Runs the threads of process `p`; returns their report.
fn run_process(cfg: &Config, p: usize, calls: u64) -> Report {
    install_handlers();
    let tids: Vec<AtomicI32> = (0..cfg.threads).map(|_| AtomicI32::new(0)).collect();
    let mut total = Report::default();
    let reports: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let tids = &tids;
                let share =
                    calls / cfg.threads as u64 + u64::from((t as u64) < calls % cfg.threads as u64);
                s.spawn(move || {
                    // SAFETY: The gettid call has no preconditions and cannot
                    // fail.
                    tids[t].store(unsafe { libc::gettid() }, Ordering::Relaxed);
                    let mut w = Worker::new(cfg, thread_seed(cfg.seed, p, t), tids);
                    w.run(share);
                    tids[t].store(0, Ordering::Relaxed);
                    w.report
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for r in &reports {
        total.merge(r);
    }
    total.sigbus = SIGBUS.load(Ordering::Relaxed);
    total
}

/// A fuzzing run in progress: its processes, each with the pipe its
/// report comes through.
#[derive(Debug)]
pub struct Running {
    seed: u64,
    kids: Vec<(usize, libc::pid_t, std::fs::File)>,
}

/// Starts the fuzzer: `cfg.procs` processes forked from the caller, each
/// with `cfg.threads` threads, sharing out `cfg.calls`. The caller should
/// be single-threaded when it calls this (a test harness, or `main`).
pub fn spawn(cfg: &Config) -> std::io::Result<Running> {
    if cfg.procs == 0 || cfg.threads == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "procs and threads must be at least 1",
        ));
    }
    let mut running = Running {
        seed: cfg.seed,
        kids: Vec::new(),
    };
    for p in 0..cfg.procs {
        let calls =
            cfg.calls / cfg.procs as u64 + u64::from((p as u64) < cfg.calls % cfg.procs as u64);
        let mut fds = [0; 2];
        // SAFETY: The `fds` is a local array of the two ints pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::other(format!(
                "pipe: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: The child runs the fuzzer in threads of its own and `_exit`s,
        // never returning into the caller; it prints nothing (no stdout lock),
        // and glibc's fork leaves malloc usable in the child even when the
        // caller has other threads.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::other(format!(
                "fork: {}",
                std::io::Error::last_os_error()
            )));
        }
        if pid == 0 {
            // SAFETY: The `fds[0]` is the pipe's read end, just made and owned
            // by no Rust object, so closing the child's copy affects nothing
            // else.
            unsafe { libc::close(fds[0]) };
            let text = run_process(cfg, p, calls).to_text();
            let mut off = 0;
            while off < text.len() {
                // SAFETY: The bytes written are `text[off..]`, a live String's
                // remaining bytes, and the length passed is theirs; `fds[1]` is
                // the child's open write end.
                let n =
                    unsafe { libc::write(fds[1], text[off..].as_ptr().cast(), text.len() - off) };
                if n <= 0 {
                    break;
                }
                off += n as usize;
            }
            // SAFETY: The `_exit` call has no preconditions; in the child it
            // ends the process at once, without running the parent's
            // destructors.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: The `fds[1]` is the write end, owned by no Rust object and
        // needed only by the child; `fds[0]` is the read end, open and owned by
        // nothing else, so the `File` becomes its only owner.
        let f = unsafe {
            libc::close(fds[1]);
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0])
        };
        running.kids.push((p, pid, f));
    }
    Ok(running)
}

impl Running {
    /// Waits for every process; fails if one died (of a signal, or
    /// without its report).
    pub fn wait(self) -> std::io::Result<Report> {
        let mut total = Report::default();
        let mut failures = Vec::new();
        for (p, pid, mut f) in self.kids {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut f, &mut text);
            let mut status = 0;
            // SAFETY: The `pid` is a child forked above and not reaped yet;
            // `status` is a local int the call writes.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) {
                failures.push(format!(
                    "process {p} (seed {:#x}) died of signal {}",
                    self.seed,
                    libc::WTERMSIG(status)
                ));
            } else if let Some(r) = Report::from_text(&text) {
                if r.fork_deaths > 0 {
                    failures.push(format!(
                        "process {p} (seed {:#x}): {} of its {} forked children died of a signal",
                        self.seed, r.fork_deaths, r.forks
                    ));
                }
                total.merge(&r);
            } else {
                failures.push(format!("process {p} sent no report"));
            }
        }
        if failures.is_empty() {
            Ok(total)
        } else {
            Err(std::io::Error::other(failures.join("; ")))
        }
    }
}

/// Runs the fuzzer to the end: [`spawn`], then [`Running::wait`].
pub fn run(cfg: &Config) -> std::io::Result<Report> {
    spawn(cfg)?.wait()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without devices, every worker still runs its share of calls (each
    /// a no-op or an eventfd/epoll/signal call) and the processes report.
    #[test]
    fn runs_without_devices() {
        let cfg = Config {
            seed: 7,
            calls: 2000,
            procs: 2,
            threads: 3,
            devices: vec![],
        };
        let r = run(&cfg).expect("run");
        assert_eq!(r.calls, 2000);
        assert_eq!(r.ops.values().sum::<u64>(), 2000);
    }
}
