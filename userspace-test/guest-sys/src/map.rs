//! Raw mappings made with mmap(2): the one wrapper of the call, and an
//! owning [`Map`] over it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// Calls mmap(2) with raw arguments, at address `hint` if that range is
/// free (0: where the kernel picks; it picks another place too when the
/// range is taken), and returns the new mapping's start. The caller owns
/// the mapping and unmaps it.
///
/// `MAP_FIXED` is refused (`EINVAL`) without a call: only it could replace
/// memory that Rust code refers to. Without it a new mapping never
/// overlaps an existing one, so any other arguments, including a bad or
/// closed `fd`, are safe; the kernel reports what it refuses as an errno.
pub fn mmap(
    hint: usize,
    fd: RawFd,
    len: usize,
    prot: i32,
    flags: i32,
    offset: libc::off_t,
) -> io::Result<*mut u8> {
    if flags & libc::MAP_FIXED != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: MAP_FIXED is excluded above, so the address is only a hint: the
    // kernel places the mapping in unused address space and no memory the
    // program uses is replaced; mmap(2) reads no pointer argument.
    let p = unsafe { libc::mmap(hint as *mut libc::c_void, len, prot, flags, fd, offset) };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}

/// A mapping made with [`mmap`], unmapped on drop.
///
/// An error from [`Map::new`] is the raw errno, so that tests can compare
/// it with the one they expect.
#[derive(Debug)]
pub struct Map {
    /// The start of the mapping.
    pub ptr: *mut u8,
    /// Its length in bytes.
    pub len: usize,
}

impl Map {
    /// Maps `len` bytes of `fd` at `offset` with `prot` and `flags`.
    pub fn new(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: i32,
        flags: i32,
        offset: libc::off_t,
    ) -> io::Result<Self> {
        let ptr = mmap(0, fd.as_raw_fd(), len, prot, flags, offset)?;
        Ok(Map { ptr, len })
    }

    /// As [`Map::new`], at an address aligned to `align` (a power of two)
    /// where the address space allows: for files whose mmap does not align
    /// by itself (no `get_unmapped_area`), so that huge entries fit.
    pub fn aligned(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: i32,
        flags: i32,
        offset: libc::off_t,
        align: usize,
    ) -> io::Result<Self> {
        // Find a free range with room to align in, then let it go: the
        // aligned part of it is the hint, free unless another thread maps
        // there meanwhile.
        let room = len
            .checked_add(align)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let probe = Map {
            ptr: mmap(
                0,
                -1,
                room,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                0,
            )?,
            len: room,
        };
        let hint = (probe.ptr as usize).next_multiple_of(align);
        drop(probe);
        let ptr = mmap(hint, fd.as_raw_fd(), len, prot, flags, offset)?;
        Ok(Map { ptr, len })
    }

    /// Maps `len` bytes of `fd` at `offset`, shared, for reading and
    /// writing.
    pub fn shared(fd: BorrowedFd<'_>, len: usize, offset: libc::off_t) -> io::Result<Self> {
        Self::new(
            fd,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            offset,
        )
    }

    /// Changes the whole mapping's protection to `prot` (`mprotect`).
    pub fn protect(&self, prot: i32) -> io::Result<()> {
        // SAFETY: The range is exactly this mapping, which stays mapped while
        // `self` lives; changing its protection touches no memory, and an
        // access it forbids raises a signal.
        let r = unsafe { libc::mprotect(self.ptr.cast(), self.len, prot) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one byte of every 4 KiB page.
    pub fn touch(&self) {
        for off in (0..self.len).step_by(4096) {
            // SAFETY: Here `off < self.len`, so the byte lies inside the mapping,
            // which stays mapped while `self` lives. A page the mapping does
            // not allow reading raises a signal, not a read of other memory.
            std::hint::black_box(unsafe { self.ptr.add(off).read_volatile() });
        }
    }

    /// Reads the `u32` at `off` (4-byte aligned, within the mapping).
    pub fn read_u32(&self, off: usize) -> u32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.len,
            "{off:#x} out of the mapping"
        );
        // SAFETY: The four bytes are in bounds and aligned (asserted above;
        // mmap returns page-aligned addresses) and stay mapped while `self`
        // lives.
        unsafe { self.ptr.add(off).cast::<u32>().read_volatile() }
    }

    /// Reads the `u64` at `off` (8-byte aligned, within the mapping).
    pub fn read_u64(&self, off: usize) -> u64 {
        assert!(
            off % 8 == 0 && off + 8 <= self.len,
            "{off:#x} out of the mapping"
        );
        // SAFETY: The eight bytes are in bounds and aligned (asserted above;
        // mmap returns page-aligned addresses) and stay mapped while `self`
        // lives.
        unsafe { self.ptr.add(off).cast::<u64>().read_volatile() }
    }

    /// Writes the `u64` at `off` (8-byte aligned, within the mapping).
    pub fn write_u64(&self, off: usize, v: u64) {
        assert!(
            off % 8 == 0 && off + 8 <= self.len,
            "{off:#x} out of the mapping"
        );
        // SAFETY: As in `read_u64`: in bounds, aligned, and mapped while
        // `self` lives; the mapping is shared memory no Rust reference
        // points into.
        unsafe { self.ptr.add(off).cast::<u64>().write_volatile(v) }
    }

    /// Writes the `u32` at `off` (4-byte aligned, within the mapping): a
    /// device register.
    pub fn write_u32(&self, off: usize, v: u32) {
        assert!(
            off % 4 == 0 && off + 4 <= self.len,
            "{off:#x} out of the mapping"
        );
        // SAFETY: As in `read_u32`: in bounds, aligned, and mapped while
        // `self` lives; the mapping is shared memory no Rust reference
        // points into.
        unsafe { self.ptr.add(off).cast::<u32>().write_volatile(v) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: The `ptr` and `len` are exactly the mapping `new` made, owned
        // by this `Map` alone; after drop nothing can reach it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn maps_a_file_and_reads_it() {
        let path = std::env::temp_dir().join(format!("guest-sys-map-{}", std::process::id()));
        let mut f = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        let m = Map::shared(f.as_fd(), 4096, 0).unwrap();
        m.write_u64(8, 0x1122_3344_5566_7788);
        assert_eq!(m.read_u64(8), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u32(8), 0x5566_7788);
        m.touch();
    }

    #[test]
    fn errors_are_raw_errnos() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = Map::new(f.as_fd(), 0, libc::PROT_READ, libc::MAP_SHARED, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let e = mmap(
            0,
            -1,
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_FIXED,
            0,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
