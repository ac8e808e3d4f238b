// SPDX-License-Identifier: GPL-2.0

//! Guest driver for QEMU's inter-VM shared memory device (ivshmem).
//!
//! Binds PCI `1af4:1110`, both `ivshmem-plain` (shared memory only) and
//! `ivshmem-doorbell` (shared memory plus MSI-X doorbells), with any
//! subsystem ids. The device is described in QEMU's
//! `docs/specs/ivshmem-spec.rst`: BAR0 holds four 32-bit registers, BAR1
//! the MSI-X table of doorbell devices, BAR2 the shared memory.

use kernel::{
    device::Core,
    io::Io,
    pci,
    prelude::*, //
};

mod regs;

/// Per-device state, alive while the driver is bound to the device.
struct Ivshmem<'bound> {
    pdev: &'bound pci::Device,
    /// The register BAR; kept mapped for the lifetime of the binding.
    #[expect(dead_code, reason = "used by the character device (next step)")]
    bar0: regs::Bar0<'bound>,
}

/// The PCI driver.
struct IvshmemDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <IvshmemDriver as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, regs::DEVICE_ID),
        ()
    )]
);

impl pci::Driver for IvshmemDriver {
    type IdInfo = ();
    type Data<'bound> = Ivshmem<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pdev.enable_device_mem()?;

        let shm_len = pdev.resource_len(regs::SHM_BAR)?;
        if shm_len == 0 {
            dev_err!(pdev, "BAR2 (shared memory) is absent\n");
            return Err(ENODEV);
        }

        let bar0 = pdev.iomap_region_sized::<{ regs::BAR0_SIZE }>(0, c"ivshmem/bar0")?;
        let ivposition = regs::ivposition(&bar0);
        let msix = regs::msix_table_size(pdev)?;

        let rev = pdev.revision_id();
        match msix {
            Some(vectors) => dev_info!(
                pdev,
                "revision {rev}, {shm_len} bytes of shared memory, IVPosition {ivposition}, doorbell with {vectors} MSI-X vectors\n"
            ),
            None => dev_info!(
                pdev,
                "revision {rev}, {shm_len} bytes of shared memory, IVPosition {ivposition}, plain (no interrupts)\n"
            ),
        }

        Ok(Ivshmem { pdev, bar0 })
    }
}

impl Drop for Ivshmem<'_> {
    fn drop(&mut self) {
        dev_info!(self.pdev, "unbound\n");
    }
}

kernel::module_pci_driver! {
    type: IvshmemDriver,
    name: "ivshmem",
    authors: ["The ivshmem-rs developers"],
    description: "Guest driver for QEMU's inter-VM shared memory device",
    license: "GPL",
}
