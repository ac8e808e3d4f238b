// SPDX-License-Identifier: GPL-2.0

//! The ivshmem device's registers and PCI facts.
//!
//! BAR0 holds four 32-bit little-endian registers, accessed 32 bits at a
//! time only (other widths are not supported by the device model).

use kernel::{
    device::Bound,
    io::Io,
    pci,
    prelude::*, //
};

/// PCI device id of ivshmem (vendor `0x1af4`, Red Hat / Qumranet).
pub(crate) const DEVICE_ID: u32 = 0x1110;

/// Size of the register BAR.
pub(crate) const BAR0_SIZE: usize = 0x100;

/// BAR holding the shared memory.
pub(crate) const SHM_BAR: u32 = 2;

/// IntrMask: which IntrStatus bits raise INTx (revision 0 devices).
pub(crate) const INTR_MASK: usize = 0x00;

/// IntrStatus: why INTx was raised; a read clears it.
pub(crate) const INTR_STATUS: usize = 0x04;

/// IVPosition: this peer's id on doorbell devices, 0 on plain devices, -1
/// on revision 0 devices until their memory has arrived. Read-only.
pub(crate) const IVPOSITION: usize = 0x08;

/// Doorbell: writing `peer << 16 | vector` interrupts that peer. Write-only.
pub(crate) const DOORBELL: usize = 0x0c;

/// The register BAR, mapped.
pub(crate) type Bar0<'bound> = pci::Bar<'bound, BAR0_SIZE>;

/// Reads IVPosition.
pub(crate) fn ivposition(bar0: &Bar0<'_>) -> i32 {
    // CAST: The register holds a signed 32-bit value (-1 = not ready).
    bar0.read32(IVPOSITION) as i32
}

/// Rings `vector` of `peer`.
pub(crate) fn ring(bar0: &Bar0<'_>, peer: u16, vector: u16) {
    bar0.write32(u32::from(peer) << 16 | u32::from(vector), DOORBELL);
}

impl crate::doorbell::IntxRegs for Bar0<'_> {
    fn read_status(&self) -> u32 {
        self.read32(INTR_STATUS)
    }

    fn write_mask(&self, mask: u32) {
        self.write32(mask, INTR_MASK);
    }
}

/// The PCI interrupt pin (0: none), from config space.
pub(crate) fn interrupt_pin(pdev: &pci::Device<Bound>) -> Result<u8> {
    const PCI_INTERRUPT_PIN: usize = 0x3d;
    pdev.config_space().try_read8(PCI_INTERRUPT_PIN)
}
