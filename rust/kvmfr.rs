// SPDX-License-Identifier: GPL-2.0

//! Looking Glass compatibility: the ioctls of its `kvmfr` module (0.0.12
//! ABI), accepted on `/dev/ivshmemN` and on its `/dev/kvmfrN` alias
//! ([`crate::raw::kvmfr_node`]). kvmfr compares whole command numbers, so
//! these are matched exactly, size and direction included, before the
//! driver's own commands (whose size field is masked).
//!
//! `KVMFR_DMABUF_CREATE` exports a range of BAR2 as a dma-buf
//! ([`crate::raw::dmabuf`]) whose CPU mmap is a mapping of BAR2 like the
//! node's, zapped on removal, and whose device importers get BAR2's bus
//! addresses where PCI peer-to-peer allows, revoked on removal.

use crate::device::Device;
use crate::raw::dmabuf::{self, Exporter};
use crate::uapi::{self, KvmfrDmabufCreate};
use kernel::{
    fs::File,
    mm::virt::VmaNew,
    page::PAGE_SIZE,
    prelude::*,
    sync::Arc,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// A kvmfr command this driver implements.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Command {
    /// `KVMFR_DMABUF_GETSIZE`.
    GetSize,
    /// `KVMFR_DMABUF_CREATE`.
    Create,
}

/// The kvmfr command `cmd` names exactly, if any.
pub(crate) fn command(cmd: u32) -> Option<Command> {
    match cmd {
        uapi::KVMFR_DMABUF_GETSIZE => Some(Command::GetSize),
        uapi::KVMFR_DMABUF_CREATE => Some(Command::Create),
        _ => None,
    }
}

/// What GETSIZE returns for a BAR2 of `size` bytes: the size, or
/// `EOVERFLOW` from 2 GiB on. Every `ioctl()` wrapper returns an `int`
/// (and Looking Glass keeps the size in one), so a larger size would be
/// truncated into a wrong one (4 GiB into 0) rather than fail.
pub(crate) fn getsize(size: u64) -> Result<isize> {
    i32::try_from(size)
        .map(|s| s as isize)
        .map_err(|_| EOVERFLOW)
}

/// Checks a CREATE request against a BAR2 of `bar` bytes: no flag but
/// CLOEXEC; a page-aligned, non-empty range inside BAR2, whose end does not
/// overflow. (The padding after `flags` is ignored: Looking Glass does not
/// zero it.)
pub(crate) fn check_create(req: &KvmfrDmabufCreate, bar: u64) -> Result {
    let page = PAGE_SIZE as u64;
    if u32::from(req.flags) & !uapi::KVMFR_DMABUF_FLAG_CLOEXEC != 0
        || req.size == 0
        || req.offset % page != 0
        || req.size % page != 0
    {
        return Err(EINVAL);
    }
    match req.offset.checked_add(req.size) {
        Some(end) if end <= bar => Ok(()),
        _ => Err(EINVAL),
    }
}

/// Runs kvmfr command `cmd` with argument `arg` on `dev` (alive, checked
/// by the caller) for `file`.
pub(crate) fn ioctl(dev: &Arc<Device>, file: &File, cmd: Command, arg: usize) -> Result<isize> {
    match cmd {
        Command::GetSize => getsize(dev.facts().size),
        Command::Create => create(dev, file, arg),
    }
}

/// `KVMFR_DMABUF_CREATE`: a new dma-buf descriptor for a range of BAR2.
fn create(dev: &Arc<Device>, file: &File, arg: usize) -> Result<isize> {
    let size = core::mem::size_of::<KvmfrDmabufCreate>();
    let req: KvmfrDmabufCreate = UserSlice::new(UserPtr::from_addr(arg), size)
        .reader()
        .read()?;
    // A buffer is exported read-write and maps readable: a file opened for
    // reading and writing (a write-only open maps nothing, a read-only one
    // must not let an importing device write).
    if file.flags() & kernel::bindings::O_ACCMODE != kernel::bindings::O_RDWR {
        return Err(EBADF);
    }
    check_create(&req, dev.facts().size)?;
    let cloexec = u32::from(req.flags) & uapi::KVMFR_DMABUF_FLAG_CLOEXEC != 0;
    let fd = dmabuf::export_fd(dev.dmabufs(), dev.clone(), req.offset, req.size, cloexec)?;
    Ok(fd as isize)
}

impl Exporter for Device {
    fn mmap(this: &Arc<Self>, file: &File, vma: &VmaNew) -> Result {
        Device::map_dmabuf(this, file, vma)
    }

    fn access(&self) -> Result {
        self.check_alive()
    }
}

#[kunit_tests(ivshmem_kvmfr)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(uapi::KVMFR_DMABUF_GETSIZE, 0x7544);
        assert_eq!(uapi::KVMFR_DMABUF_CREATE, 0x4018_7542);
        assert_eq!(command(0x7544), Some(Command::GetSize));
        assert_eq!(command(0x4018_7542), Some(Command::Create));
        // Exact matches only: another size or direction is another command.
        assert_eq!(command(0x0008_7544), None);
        assert_eq!(command(0x8000_7544), None);
        assert_eq!(command(0x4010_7542), None);
        assert_eq!(command(0xc018_7542), None);
    }

    #[test]
    fn create_requests() {
        let bar = 4u64 << 20;
        let req = |flags: u8, offset: u64, size: u64| KvmfrDmabufCreate {
            flags,
            offset,
            size,
        };
        assert_eq!(check_create(&req(1, 0, bar), bar), Ok(()));
        assert_eq!(check_create(&req(0, 4096, 8192), bar), Ok(()));
        assert_eq!(check_create(&req(0, bar - 4096, 4096), bar), Ok(()));
        // Unknown flags.
        assert_eq!(check_create(&req(2, 0, 4096), bar), Err(EINVAL));
        assert_eq!(check_create(&req(0x80, 0, 4096), bar), Err(EINVAL));
        // Unaligned or empty.
        assert_eq!(check_create(&req(0, 1, 4096), bar), Err(EINVAL));
        assert_eq!(check_create(&req(0, 0, 4095), bar), Err(EINVAL));
        assert_eq!(check_create(&req(0, 0, 0), bar), Err(EINVAL));
        // Past the BAR, or overflowing.
        assert_eq!(check_create(&req(0, bar, 4096), bar), Err(EINVAL));
        assert_eq!(check_create(&req(0, 0, bar + 4096), bar), Err(EINVAL));
        assert_eq!(
            check_create(&req(0, u64::MAX & !4095, 4096), bar),
            Err(EINVAL)
        );
        assert_eq!(
            check_create(&req(0, 4096, u64::MAX & !4095), bar),
            Err(EINVAL)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(getsize(4096), Ok(4096));
        assert_eq!(getsize((1 << 31) - 4096), Ok((1 << 31) - 4096));
        assert_eq!(getsize(1 << 31), Err(EOVERFLOW));
        assert_eq!(getsize(8 << 30), Err(EOVERFLOW));
    }
}
