//! The ioctls: known ones with random (often valid-shaped) arguments and
//! sizes, made-up numbers and bad pointers, and well-formed BIND_EVENTFD.

use crate::config::{ARG_SIZE, BUF};
use crate::worker::Worker;
use ivshmem::uapi::{
    IVSHMEM_IOCTL_BIND_EVENTFD, IVSHMEM_IOCTL_MAGIC, ivshmem_cache, ivshmem_eventfd, ivshmem_info,
    ivshmem_mask, ivshmem_ring,
};

impl Worker<'_> {
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
    pub(crate) fn ioctl(&mut self) {
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
    pub(crate) fn ioctl_raw(&mut self) {
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

    /// BIND_EVENTFD, well-formed, to one of the worker's eventfds, another
    /// descriptor, a closed number or -1 (unbind).
    pub(crate) fn bind(&mut self) {
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
}
