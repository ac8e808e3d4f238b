//! Calls on the descriptor table: open, close, dup and fcntl of the
//! device files, and the eventfds that BIND_EVENTFD binds.

use crate::config::{MAX_EFDS, MAX_FDS};
use crate::worker::{Fd, Worker};
use ivshmem::uapi::{IVSHMEM_IOCTL_INFO, ivshmem_info};

impl Worker<'_> {
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

    pub(crate) fn open(&mut self) {
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

    pub(crate) fn close(&mut self) {
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

    pub(crate) fn dup(&mut self) {
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

    pub(crate) fn fcntl(&mut self) {
        let Some(fd) = self.some_fd() else { return };
        // SAFETY: F_GETFL and F_SETFL take no pointers; `fd.fd` is a descriptor
        // in this worker's table, so open.
        let r = unsafe {
            let fl = libc::fcntl(fd.fd, libc::F_GETFL);
            libc::fcntl(fd.fd, libc::F_SETFL, fl ^ libc::O_NONBLOCK)
        };
        self.result(r as i64);
    }

    pub(crate) fn eventfd(&mut self) {
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
}
