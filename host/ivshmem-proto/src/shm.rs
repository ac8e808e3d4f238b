//! A mapping of the shared memory region.

use std::ffi::c_void;
use std::os::fd::AsFd;
use std::ptr::{self, NonNull};

use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

use crate::error::{Error, Result};

/// The shared memory, mapped read-write and shared.
///
/// Other processes (guests, other clients) may change the memory at any
/// time, so it is never exposed as a Rust slice: [`SharedMemory::read`] and
/// [`SharedMemory::write`] copy in and out, and [`SharedMemory::as_ptr`]
/// gives the raw pointer for code that synchronises by its own means.
#[derive(Debug)]
pub struct SharedMemory {
    ptr: NonNull<c_void>,
    len: usize,
}

impl SharedMemory {
    /// Maps `len` bytes of `fd` from offset 0. Pages are mapped lazily, so
    /// mapping a large sparse region costs only address space.
    pub fn map(fd: impl AsFd, len: u64) -> Result<Self> {
        let len = usize::try_from(len).map_err(|_| {
            Error::io(
                "mapping shared memory",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "region larger than the address space",
                ),
            )
        })?;
        if len == 0 {
            return Err(Error::io(
                "mapping shared memory",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "region is empty"),
            ));
        }
        // SAFETY: We ask for a fresh mapping at an address the kernel picks, so
        // no existing Rust object is aliased or invalidated. The mapping is
        // owned by the returned value and unmapped once, in Drop.
        let ptr = unsafe {
            mmap(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| Error::io("mapping shared memory", e))?;
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            Error::io(
                "mapping shared memory",
                std::io::Error::other("mmap returned a null address"),
            )
        })?;
        Ok(Self { ptr, len })
    }

    /// Size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true: empty maps are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    /// Checks that `len` bytes at `offset` lie inside the region, e.g.
    /// before allocating a buffer for them.
    pub fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.len as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(Error::OutOfBounds { offset, len, size }),
        }
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        self.check_range(offset, len as u64)?;
        // Inside the mapping, so it fits in a usize.
        Ok(offset as usize)
    }

    /// Copies `buf.len()` bytes at `offset` out of the region.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = self.check(offset, buf.len())?;
        // SAFETY: The range start..start+len is inside the mapping (`check`
        // made sure), which lives as long as `self`. `buf` is a distinct Rust
        // allocation, so the ranges do not overlap. Concurrent writers in other
        // processes can only make the copied bytes stale, which is inherent to
        // shared memory; u8 has no invalid values.
        unsafe {
            ptr::copy_nonoverlapping(self.as_ptr().add(start), buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }

    /// Copies `data` into the region at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let start = self.check(offset, data.len())?;
        // SAFETY: As in `read`: the destination range is inside the writable
        // shared mapping and does not overlap `data`. No Rust reference to the
        // mapping's contents exists, so writing through the raw pointer from
        // `&self` aliases nothing.
        unsafe {
            ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(start), data.len());
        }
        Ok(())
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: The pointer and length are exactly the mapping made in `map`,
        // unmapped only here; no references into it outlive `self`.
        let _ = unsafe { munmap(self.ptr.as_ptr(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{MemfdFlags, ftruncate, memfd_create};

    #[test]
    fn read_write_and_bounds() {
        let fd = memfd_create("ivshmem-proto-test", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&fd, 8192).unwrap();
        let a = SharedMemory::map(&fd, 8192).unwrap();
        let b = SharedMemory::map(&fd, 8192).unwrap();
        assert_eq!(a.len(), 8192);
        a.write(8190, b"hi").unwrap();
        let mut buf = [0u8; 2];
        b.read(8190, &mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        assert!(matches!(
            a.write(8191, b"hi"),
            Err(Error::OutOfBounds {
                offset: 8191,
                len: 2,
                size: 8192
            })
        ));
        assert!(a.read(u64::MAX, &mut buf).is_err());
        assert!(a.check_range(0, 8192).is_ok());
        assert!(a.check_range(8192, 0).is_ok());
        assert!(matches!(
            a.check_range(0, 100 << 30),
            Err(Error::OutOfBounds {
                offset: 0,
                len: 107_374_182_400,
                size: 8192
            })
        ));
        assert!(a.check_range(1, u64::MAX).is_err());
        assert!(SharedMemory::map(&fd, 0).is_err());
    }
}
