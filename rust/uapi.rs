// SPDX-License-Identifier: GPL-2.0

//! The user API, mirroring `uapi/linux/ivshmem.h` field for field.
//!
//! This file uses `core` only, so that a host test,
//! `userspace/ivshmem/tests/kernel_uapi.rs`, includes it as it is and
//! checks every size, offset, constant and ioctl number against the C
//! header compiled by the C compiler. The structures' `AsBytes` and
//! `FromBytes` implementations are in [`crate::raw::bytes`].

use core::mem::size_of;

/// `_IOC_WRITE` (`include/uapi/asm-generic/ioctl.h`).
const IOC_WRITE: u32 = 1;
/// `_IOC_READ`.
const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`: an ioctl number (asm-generic layout: 8
/// bits of number, 8 of type, 14 of size, 2 of direction).
const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    assert!(size < 1 << 14);
    // CAST: Checked just above to fit the 14-bit size field.
    (dir << 30) | ((size as u32) << 16) | (ty << 8) | nr
}

/// The ioctl type byte.
pub(crate) const MAGIC: u32 = 0xB9;

/// `ivshmem_info.features`: can ring peers.
pub(crate) const FEATURE_DOORBELL: u32 = 1 << 0;
/// `ivshmem_info.features`: doorbells arrive as MSI-X.
pub(crate) const FEATURE_MSIX: u32 = 1 << 1;
/// `ivshmem_info.features`: doorbells arrive as INTx.
pub(crate) const FEATURE_INTX: u32 = 1 << 2;
/// `ivshmem_info.features`: the doorbell page can be mapped.
pub(crate) const FEATURE_DOORBELL_MMAP: u32 = 1 << 3;

/// `IVSHMEM_DOORBELL_MMAP_OFFSET` (`1 << 52`, past any BAR2: x86-64
/// physical addresses have at most 52 bits): the mmap offset of the page
/// holding the device's registers.
pub(crate) const DOORBELL_MMAP_OFFSET: u64 = 1 << 52;

/// `ivshmem_info.flags`: IVPosition reads -1, the memory is not there yet.
pub(crate) const INFO_NOT_READY: u32 = 1 << 0;

/// `struct ivshmem_info`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Info {
    pub(crate) size: u64,
    pub(crate) ivposition: i32,
    pub(crate) vectors: u32,
    pub(crate) features: u32,
    pub(crate) flags: u32,
    pub(crate) index: u32,
    pub(crate) revision: u8,
    pub(crate) pci_bus: u8,
    pub(crate) pci_devfn: u8,
    pub(crate) pad0: u8,
    pub(crate) pci_domain: u32,
    pub(crate) subsystem_vendor: u16,
    pub(crate) subsystem_device: u16,
    pub(crate) reserved: [u64; 4],
}

/// `ivshmem_cache.mode` values.
pub(crate) const CACHE_WB: u32 = 0;
pub(crate) const CACHE_WC: u32 = 1;
pub(crate) const CACHE_UC: u32 = 2;

/// `struct ivshmem_cache`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Cache {
    pub(crate) mode: u32,
    pub(crate) flags: u32,
    pub(crate) reserved: u64,
}

/// `poll` events (`include/uapi/linux/eventpoll.h`).
pub(crate) const EPOLLIN: u32 = 0x0001;
/// `EPOLLERR`.
pub(crate) const EPOLLERR: u32 = 0x0008;
/// `EPOLLHUP`.
pub(crate) const EPOLLHUP: u32 = 0x0010;
/// `EPOLLRDNORM`.
pub(crate) const EPOLLRDNORM: u32 = 0x0040;

/// Vectors a doorbell can address (QEMU honours 8 bits).
pub(crate) const MAX_VECTORS: usize = 256;

/// Most eventfds bound to one vector of a device, over all its open files.
pub(crate) const MAX_EVENTFDS: usize = 64;

/// Most of those that the files of one user may bind.
pub(crate) const MAX_EVENTFDS_PER_USER: usize = 16;

/// `struct ivshmem_ring`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Ring {
    pub(crate) peer: u16,
    pub(crate) vector: u16,
    pub(crate) flags: u32,
    pub(crate) reserved: u64,
}

/// `struct ivshmem_mask`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Mask {
    pub(crate) mask: [u64; MAX_VECTORS / 64],
    pub(crate) flags: u32,
    pub(crate) reserved0: u32,
    pub(crate) reserved: u64,
}

/// `struct ivshmem_eventfd`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct EventFdBind {
    pub(crate) fd: i32,
    pub(crate) vector: u16,
    pub(crate) flags: u16,
    pub(crate) reserved: u64,
}

/// `struct ivshmem_event`, what read() returns.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Event {
    pub(crate) vector: u16,
    pub(crate) flags: u16,
    pub(crate) count: u32,
    pub(crate) timestamp_ns: u64,
}

/// `IVSHMEM_IOCTL_INFO`.
pub(crate) const IOCTL_INFO: u32 = ioc(IOC_READ, MAGIC, 0x00, size_of::<Info>());
/// `IVSHMEM_IOCTL_SET_CACHE`.
pub(crate) const IOCTL_SET_CACHE: u32 = ioc(IOC_WRITE, MAGIC, 0x01, size_of::<Cache>());
/// `IVSHMEM_IOCTL_RING`.
pub(crate) const IOCTL_RING: u32 = ioc(IOC_WRITE, MAGIC, 0x02, size_of::<Ring>());
/// `IVSHMEM_IOCTL_SET_MASK`.
pub(crate) const IOCTL_SET_MASK: u32 = ioc(IOC_WRITE, MAGIC, 0x03, size_of::<Mask>());
/// `IVSHMEM_IOCTL_BIND_EVENTFD`.
pub(crate) const IOCTL_BIND_EVENTFD: u32 = ioc(IOC_WRITE, MAGIC, 0x04, size_of::<EventFdBind>());

/// `KVMFR_DMABUF_FLAG_CLOEXEC` of Looking Glass's `kvmfr.h` (0.0.12 ABI,
/// mirrored in `uapi/compat/kvmfr.h`): the dma-buf fd gets `O_CLOEXEC`.
pub(crate) const KVMFR_DMABUF_FLAG_CLOEXEC: u32 = 0x1;

/// The ioctl type byte of kvmfr's ioctls (`'u'`).
pub(crate) const KVMFR_MAGIC: u32 = b'u' as u32;

/// `struct kvmfr_dmabuf_create` (24 bytes on x86-64: 7 bytes of padding
/// after `flags`, which Looking Glass does not zero).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmfrDmabufCreate {
    pub(crate) flags: u8,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// `KVMFR_DMABUF_GETSIZE`, `_IO('u', 0x44)`: BAR2's size as the ioctl's
/// return value.
pub(crate) const KVMFR_DMABUF_GETSIZE: u32 = ioc(0, KVMFR_MAGIC, 0x44, 0);
/// `KVMFR_DMABUF_CREATE`, `_IOW('u', 0x42, struct kvmfr_dmabuf_create)`.
pub(crate) const KVMFR_DMABUF_CREATE: u32 =
    ioc(IOC_WRITE, KVMFR_MAGIC, 0x42, size_of::<KvmfrDmabufCreate>());
