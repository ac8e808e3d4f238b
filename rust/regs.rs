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

/// PCI capability id of MSI-X.
const PCI_CAP_ID_MSIX: u8 = 0x11;

/// Returns the MSI-X table size of `pdev`, or `None` when the device has no
/// MSI-X capability (`ivshmem-plain`).
pub(crate) fn msix_table_size(pdev: &pci::Device<Bound>) -> Result<Option<u16>> {
    const PCI_STATUS: usize = 0x06;
    const PCI_STATUS_CAP_LIST: u16 = 0x10;
    const PCI_CAPABILITY_LIST: usize = 0x34;
    const PCI_MSIX_FLAGS: usize = 2;
    const PCI_MSIX_FLAGS_QSIZE: u16 = 0x07ff;
    // Each capability takes at least 4 bytes of the 192 after the header,
    // so a longer walk means a corrupt (looping) list.
    const MAX_CAPS: usize = 48;

    let cfg = pdev.config_space();
    if cfg.try_read16(PCI_STATUS)? & PCI_STATUS_CAP_LIST == 0 {
        return Ok(None);
    }
    let mut pos = usize::from(cfg.try_read8(PCI_CAPABILITY_LIST)? & !3);
    for _ in 0..MAX_CAPS {
        if pos < 0x40 {
            break;
        }
        if cfg.try_read8(pos)? == PCI_CAP_ID_MSIX {
            let flags = cfg.try_read16(pos + PCI_MSIX_FLAGS)?;
            return Ok(Some((flags & PCI_MSIX_FLAGS_QSIZE) + 1));
        }
        pos = usize::from(cfg.try_read8(pos + 1)? & !3);
    }
    Ok(None)
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
