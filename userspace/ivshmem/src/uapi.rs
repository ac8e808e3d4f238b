//! The raw user API of `uapi/linux/ivshmem.h`, field for field.
//!
//! `tests/abi.rs` compiles the C header and checks every size, offset and
//! ioctl number below against it.

use rustix::ioctl::{Opcode, opcode};

/// The ioctl type byte.
pub const IVSHMEM_IOCTL_MAGIC: u8 = 0xB9;

/// `ivshmem_info.features`: can ring peers (ivshmem-doorbell).
pub const IVSHMEM_FEATURE_DOORBELL: u32 = 1 << 0;
/// `ivshmem_info.features`: doorbells arrive as MSI-X.
pub const IVSHMEM_FEATURE_MSIX: u32 = 1 << 1;
/// `ivshmem_info.features`: doorbells arrive as INTx (revision 0).
pub const IVSHMEM_FEATURE_INTX: u32 = 1 << 2;
/// `ivshmem_info.features`: the doorbell page can be mapped.
pub const IVSHMEM_FEATURE_DOORBELL_MMAP: u32 = 1 << 3;
/// The mmap offset of the doorbell page (the device's registers).
pub const IVSHMEM_DOORBELL_MMAP_OFFSET: u64 = 1 << 52;
/// Offset of the Doorbell register in the doorbell page.
pub const IVSHMEM_REG_DOORBELL: usize = 12;
/// `ivshmem_info.flags`: IVPosition is -1, the memory is not there yet.
pub const IVSHMEM_INFO_NOT_READY: u32 = 1 << 0;

/// `ivshmem_cache.mode`: write-back.
pub const IVSHMEM_CACHE_WB: u32 = 0;
/// `ivshmem_cache.mode`: write-combining.
pub const IVSHMEM_CACHE_WC: u32 = 1;
/// `ivshmem_cache.mode`: uncached (UC-).
pub const IVSHMEM_CACHE_UC: u32 = 2;

/// `struct ivshmem_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ivshmem_info {
    pub size: u64,
    pub ivposition: i32,
    pub vectors: u32,
    pub features: u32,
    pub flags: u32,
    pub index: u32,
    pub revision: u8,
    pub pci_bus: u8,
    pub pci_devfn: u8,
    pub pad0: u8,
    pub pci_domain: u32,
    pub subsystem_vendor: u16,
    pub subsystem_device: u16,
    pub reserved: [u64; 4],
}

/// `struct ivshmem_cache`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ivshmem_cache {
    pub mode: u32,
    pub flags: u32,
    pub reserved: u64,
}

/// Vectors a doorbell can address (QEMU honours 8 bits).
pub const IVSHMEM_MAX_VECTORS: usize = 256;

/// At most this many eventfds are bound to one vector of a device, over all
/// its open files; one more gets `ENOSPC`.
pub const IVSHMEM_MAX_EVENTFDS: usize = 64;
/// `IVSHMEM_MAX_EVENTFDS_PER_USER`: of those, the most one user's files
/// may bind (`EDQUOT` beyond, unless the caller has `CAP_SYS_RESOURCE`).
pub const IVSHMEM_MAX_EVENTFDS_PER_USER: usize = 16;

/// `struct ivshmem_ring`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ivshmem_ring {
    pub peer: u16,
    pub vector: u16,
    pub flags: u32,
    pub reserved: u64,
}

/// `struct ivshmem_mask`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ivshmem_mask {
    pub mask: [u64; IVSHMEM_MAX_VECTORS / 64],
    pub flags: u32,
    pub reserved0: u32,
    pub reserved: u64,
}

/// `struct ivshmem_eventfd`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ivshmem_eventfd {
    pub fd: i32,
    pub vector: u16,
    pub flags: u16,
    pub reserved: u64,
}

/// `struct ivshmem_event`, what read() returns.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ivshmem_event {
    pub vector: u16,
    pub flags: u16,
    pub count: u32,
    pub timestamp_ns: u64,
}

/// `IVSHMEM_IOCTL_INFO`.
pub const IVSHMEM_IOCTL_INFO: Opcode = opcode::read::<ivshmem_info>(IVSHMEM_IOCTL_MAGIC, 0x00);
/// `IVSHMEM_IOCTL_SET_CACHE`.
pub const IVSHMEM_IOCTL_SET_CACHE: Opcode =
    opcode::write::<ivshmem_cache>(IVSHMEM_IOCTL_MAGIC, 0x01);
/// `IVSHMEM_IOCTL_RING`.
pub const IVSHMEM_IOCTL_RING: Opcode = opcode::write::<ivshmem_ring>(IVSHMEM_IOCTL_MAGIC, 0x02);
/// `IVSHMEM_IOCTL_SET_MASK`.
pub const IVSHMEM_IOCTL_SET_MASK: Opcode = opcode::write::<ivshmem_mask>(IVSHMEM_IOCTL_MAGIC, 0x03);
/// `IVSHMEM_IOCTL_BIND_EVENTFD`.
pub const IVSHMEM_IOCTL_BIND_EVENTFD: Opcode =
    opcode::write::<ivshmem_eventfd>(IVSHMEM_IOCTL_MAGIC, 0x04);
