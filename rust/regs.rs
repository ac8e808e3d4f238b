// SPDX-License-Identifier: GPL-2.0

//! The ivshmem device's registers and PCI facts.
//!
//! BAR0 holds four 32-bit little-endian registers, accessed 32 bits at a
//! time only (other widths are not supported by the device model), typed
//! with [`register!`], as is the one config space register the driver
//! reads.

use kernel::{
    device::Bound,
    io::{
        register,
        Io, //
    },
    pci,
    prelude::*, //
};

/// PCI device id of ivshmem (vendor `0x1af4`, Red Hat / Qumranet).
pub(crate) const DEVICE_ID: u32 = 0x1110;

/// Size of the register BAR.
pub(crate) const BAR0_SIZE: usize = 0x100;

/// BAR holding the shared memory.
pub(crate) const SHM_BAR: u32 = 2;

register! {
    /// IntrMask: which IntrStatus bits raise INTx (revision 0 devices).
    pub(crate) INTR_MASK(u32) @ 0x00 {
        /// One bit per cause; QEMU's revision 0 device uses bit 0.
        31:0 mask;
    }

    /// IntrStatus: why INTx was raised; a read clears it.
    pub(crate) INTR_STATUS(u32) @ 0x04 {
        /// One bit per cause.
        31:0 status;
    }

    /// IVPosition: this peer's id on doorbell devices, 0 on plain devices,
    /// -1 on revision 0 devices until their memory has arrived. Read-only.
    pub(crate) IVPOSITION(u32) @ 0x08 {
        /// The id, as a 32-bit two's complement value.
        31:0 position;
    }

    /// Doorbell: interrupts a peer on a vector. Write-only.
    pub(crate) DOORBELL(u32) @ 0x0c {
        /// The peer's id (its IVPosition).
        31:16 peer;
        /// The vector; QEMU honours its low 8 bits.
        15:0 vector;
    }
}

/// The register BAR, mapped.
pub(crate) type Bar0<'bound> = pci::Bar<'bound, BAR0_SIZE>;

/// Reads IVPosition.
pub(crate) fn ivposition(bar0: &Bar0<'_>) -> i32 {
    let raw: u32 = bar0.read(IVPOSITION).position().get();
    // CAST: The register holds a signed 32-bit value (-1 = not ready).
    raw as i32
}

/// Rings `vector` of `peer`.
pub(crate) fn ring(bar0: &Bar0<'_>, peer: u16, vector: u16) {
    bar0.write_reg(DOORBELL::zeroed().with_peer(peer).with_vector(vector));
}

register! {
    /// Interrupt Pin, in PCI config space: 0 none, 1 to 4 INTA to INTD.
    pub(crate) INTERRUPT_PIN(u8) @ 0x3d {
        /// The pin.
        7:0 pin;
    }
}

/// The PCI interrupt pin (0: none), from config space.
pub(crate) fn interrupt_pin(pdev: &pci::Device<Bound>) -> u8 {
    pdev.config_space().read(INTERRUPT_PIN).pin().get()
}
