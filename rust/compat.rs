// SPDX-License-Identifier: GPL-2.0

//! What differs between the kernel series this driver builds for (7.2 and
//! 7.3), in one place. Kbuild passes `--cfg ivshmem_7_2` when building for
//! a 7.2 kernel. Everything here is a name or a signature; no driver logic
//! depends on the version. What 7.2 lacks altogether (the IRQ-safe lock,
//! every interrupt vector, the RCU-freed wait queue, the module owner,
//! `VM_MAYSHARE`) has one wrapper in [`crate::raw`] that works on both.

use kernel::{
    error::Error,
    pci, //
};

/// A BAR mapped into the kernel whose access is revoked on unbind.
#[cfg(ivshmem_7_2)]
pub(crate) type DevresBar<const SIZE: usize> = kernel::devres::Devres<pci::Bar<'static, SIZE>>;
/// A BAR mapped into the kernel whose access is revoked on unbind.
#[cfg(not(ivshmem_7_2))]
pub(crate) type DevresBar<const SIZE: usize> = pci::DevresBar<SIZE>;

/// The id-table entry `pci::Driver::probe` is given: 7.3 makes it optional
/// (dynamic ids), 7.2 does not.
#[cfg(ivshmem_7_2)]
pub(crate) type ProbeInfo<'a, T> = &'a T;
/// The id-table entry `pci::Driver::probe` is given: 7.3 makes it optional
/// (dynamic ids), 7.2 does not.
#[cfg(not(ivshmem_7_2))]
pub(crate) type ProbeInfo<'a, T> = Option<&'a T>;

/// The PCI id table `$table` of `$info` entries, with its modalias table.
#[cfg(ivshmem_7_2)]
macro_rules! pci_device_table {
    ($table:ident, $info:ty, $($data:tt)*) => {
        kernel::pci_device_table!($table, MODULE_PCI_TABLE, $info, $($data)*);
    };
}
/// The PCI id table `$table` of `$info` entries, with its modalias table.
#[cfg(not(ivshmem_7_2))]
macro_rules! pci_device_table {
    ($table:ident, $info:ty, $($data:tt)*) => {
        kernel::pci_device_table!($table, $info, $($data)*);
    };
}
pub(crate) use pci_device_table;

/// `EOPNOTSUPP` (95), which 7.2's `kernel::error::code` lacks (its
/// `ENOTSUPP`, 524, is another error).
pub(crate) fn eopnotsupp() -> Error {
    Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32))
}

/// `EDQUOT` (122), which 7.2's `kernel::error::code` lacks.
pub(crate) fn edquot() -> Error {
    Error::from_errno(-(kernel::bindings::EDQUOT as i32))
}
