//! The suite's dma-buf importer, `userspace-test/kmod/ivshmem_test_importer.c`:
//! a kernel module that attaches a PCI device of the test's choosing to a
//! dma-buf, as a GPU driver does with one user space hands it, and reports
//! what the exporter gave that device. Its ioctls are those of
//! `ivshmem_test_importer.h`, written out here.

use crate::{Failure, skip};
use guest_sys::errname;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::Command;

/// Where the runner puts the module (from `IVSHMEM_TEST_MODULES`).
const MODULE_PATH: &str = "/lib/modules/test/ivshmem_test_importer.ko";
const MODULE: &str = "ivshmem_test_importer";
const NODE: &str = "/dev/ivshmem_test_importer";

/// `ITI_P2P`: the importer takes memory without struct pages.
pub(crate) const P2P: u32 = 1;
/// `ITI_REVOCABLE`: the importer has `invalidate_mappings`.
pub(crate) const REVOCABLE: u32 = 2;
/// `ITI_DEFER`: `invalidate_mappings` unmaps 500 ms later, from a work item.
pub(crate) const DEFER: u32 = 4;

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((b'I' as u32) << 8) | nr
}

#[repr(C)]
struct Attach {
    fd: i32,
    flags: u32,
    device: [u8; 32],
}

/// One DMA range of a mapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Range {
    pub addr: u64,
    pub len: u64,
}

#[repr(C)]
struct MapOut {
    count: u32,
    pad: u32,
    ranges: [Range; 16],
}

/// `struct iti_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub invalidations: u32,
    pub mapped: u32,
}

#[repr(C)]
struct VmapRead {
    fd: i32,
    len: u32,
    offset: u64,
    data: [u8; 64],
}

const ATTACH: u32 = ioc(1, 1, size_of::<Attach>());
const MAP: u32 = ioc(2, 2, size_of::<MapOut>());
const UNMAP: u32 = ioc(0, 3, 0);
const STATUS: u32 = ioc(2, 4, size_of::<Status>());
const VMAP_READ: u32 = ioc(3, 5, size_of::<VmapRead>());

/// The module, loaded; unloaded on drop.
pub(crate) struct Loaded(());

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = Command::new("rmmod").arg(MODULE).status();
    }
}

/// Loads the importer; a skip when this guest has none (a runner without
/// `IVSHMEM_TEST_MODULES`).
pub(crate) fn load() -> Result<Loaded, Failure> {
    if !Path::new(MODULE_PATH).exists() {
        skip!(
            "no {MODULE_PATH} in this guest: the runner was given no test modules (IVSHMEM_TEST_MODULES)"
        );
    }
    let out = Command::new("insmod").arg(MODULE_PATH).output()?;
    if !out.status.success() {
        return Err(Failure::Fail(format!(
            "insmod {MODULE_PATH}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(Loaded(()))
}

/// One open file of the importer: at most one attachment.
pub(crate) struct Importer {
    file: File,
}

fn ioctl<T>(file: &File, cmd: u32, arg: *mut T) -> Result<(), i32> {
    crate::fixture::ioctl_value(file, cmd, arg.cast()).map(|_| ())
}

impl Importer {
    pub(crate) fn open() -> Result<Self, Failure> {
        let file = OpenOptions::new().read(true).write(true).open(NODE)?;
        Ok(Self { file })
    }

    /// Attaches PCI device `device` ("0000:00:03.0") to dma-buf `buf`
    /// with importer `flags` ([`P2P`], [`REVOCABLE`]; none: a static
    /// attach); the errno of a refusal.
    pub(crate) fn attach(&self, buf: &impl AsFd, device: &str, flags: u32) -> Result<(), i32> {
        let mut a = Attach {
            fd: buf.as_fd().as_raw_fd(),
            flags,
            device: [0; 32],
        };
        let n = device.len().min(31);
        a.device[..n].copy_from_slice(&device.as_bytes()[..n]);
        ioctl(&self.file, ATTACH, &raw mut a)
    }

    /// Maps the attachment: its DMA ranges (the first 16) and how many
    /// there are, or the errno.
    pub(crate) fn map(&self) -> Result<(Vec<Range>, usize), i32> {
        let mut m = MapOut {
            count: 0,
            pad: 0,
            ranges: [Range::default(); 16],
        };
        ioctl(&self.file, MAP, &raw mut m)?;
        let n = m.count as usize;
        Ok((m.ranges[..n.min(16)].to_vec(), n))
    }

    pub(crate) fn unmap(&self) -> Result<(), i32> {
        ioctl(&self.file, UNMAP, std::ptr::null_mut::<u8>())
    }

    pub(crate) fn status(&self) -> Result<Status, Failure> {
        let mut s = Status::default();
        ioctl(&self.file, STATUS, &raw mut s)
            .map_err(|e| Failure::Fail(format!("ITI_STATUS: {}", errname(e))))?;
        Ok(s)
    }

    /// `len` (at most 64) bytes at `offset` of dma-buf `buf`, read through
    /// a kernel mapping (`dma_buf_vmap`); the errno of a refusal.
    pub(crate) fn vmap_read(
        &self,
        buf: &impl AsFd,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, i32> {
        let mut r = VmapRead {
            fd: buf.as_fd().as_raw_fd(),
            len: len as u32,
            offset,
            data: [0; 64],
        };
        ioctl(&self.file, VMAP_READ, &raw mut r)?;
        Ok(r.data[..len.min(64)].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_header() {
        // _IOW('I', 1, 40 bytes), _IOR('I', 2, 264), _IO('I', 3),
        // _IOR('I', 4, 8), _IOWR('I', 5, 80).
        assert_eq!(ATTACH, 0x4028_4901);
        assert_eq!(MAP, 0x8108_4902);
        assert_eq!(UNMAP, 0x4903);
        assert_eq!(STATUS, 0x8008_4904);
        assert_eq!(VMAP_READ, 0xc050_4905);
    }
}
