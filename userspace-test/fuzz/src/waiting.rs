//! Calls that wait: read, poll and epoll on the device files, and the
//! signals between threads that interrupt them.

use crate::worker::Worker;
use std::sync::atomic::Ordering;

impl Worker<'_> {
    pub(crate) fn read(&mut self) {
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

    pub(crate) fn poll(&mut self) {
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

    pub(crate) fn epoll(&mut self) {
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

    /// SIGUSR1 to a random thread of this process (an interrupted call
    /// fails with EINTR).
    pub(crate) fn signal(&mut self) {
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
}
