//! The `fork` call: a child that makes a few calls on what it inherited,
//! and the wait for it.

use crate::config::PAGE;
use crate::rng::Rng;
use crate::worker::Worker;
use guest_sys::errno;
use ivshmem::uapi::{IVSHMEM_IOCTL_INFO, ivshmem_info};

impl Worker<'_> {
    /// Forks a child that makes a few calls on the inherited files and
    /// mappings, without allocating, and exits; waits for it.
    pub(crate) fn fork(&mut self) {
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
}
