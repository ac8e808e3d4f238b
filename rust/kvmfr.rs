// SPDX-License-Identifier: GPL-2.0

//! Looking Glass compatibility: the ioctls of its `kvmfr` module (0.0.12
//! ABI), accepted on `/dev/ivshmemN` and on its `/dev/kvmfrN` alias
//! ([`crate::raw::kvmfr_node`]). kvmfr compares whole command numbers, so
//! these are matched exactly, size and direction included, before the
//! driver's own commands (whose size field is masked).
//!
//! `KVMFR_DMABUF_CREATE` (dma-buf export) is not implemented yet: it gets
//! `ENOTTY` like any unknown command.

use crate::device::Device;
use crate::uapi;
use kernel::prelude::*;

/// A kvmfr command this driver implements.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Command {
    /// `KVMFR_DMABUF_GETSIZE`.
    GetSize,
}

/// The kvmfr command `cmd` names exactly, if any.
pub(crate) fn command(cmd: u32) -> Option<Command> {
    match cmd {
        uapi::KVMFR_DMABUF_GETSIZE => Some(Command::GetSize),
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

/// Runs kvmfr command `cmd` on `dev` (alive, checked by the caller).
pub(crate) fn ioctl(dev: &Device, cmd: Command) -> Result<isize> {
    match cmd {
        Command::GetSize => getsize(dev.facts().size),
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
        // Exact matches only: another size or direction is not GETSIZE,
        // and CREATE is not implemented yet.
        assert_eq!(command(0x0008_7544), None);
        assert_eq!(command(0x8000_7544), None);
        assert_eq!(command(0x4018_7542), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(getsize(4096), Ok(4096));
        assert_eq!(getsize((1 << 31) - 4096), Ok((1 << 31) - 4096));
        assert_eq!(getsize(1 << 31), Err(EOVERFLOW));
        assert_eq!(getsize(8 << 30), Err(EOVERFLOW));
    }
}
