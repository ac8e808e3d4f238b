// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: probe, in named steps, and unbind.

use crate::device::{
    Device,
    Facts, //
};
use crate::file::{
    self,
    OpenFile, //
};
use crate::interrupts::{
    self,
    Interrupts, //
};
use crate::raw::{
    self,
    ida::Index,
    miscdev,
    vma::IoWindow, //
};
use crate::{
    compat,
    regs, //
};
use kernel::{
    bindings,
    device::Core,
    pci,
    prelude::*,
    str::CString, //
};

/// How many devices the driver can bind at once: N of `/dev/ivshmemN` is
/// below this.
const MAX_DEVICES: usize = 1 << 16;

/// Per-device state, alive while the driver is bound to the device.
///
/// Fields drop in order: the misc device goes first (its `/dev/kvmfrN`
/// alias, then `/dev/ivshmemN`: no new opens), then
/// INTx is masked in the device, the interrupt handlers and vectors are
/// freed, then the device number, BAR2's reservation, and last the device
/// is disabled. [`IvshmemDriver::unbind`] has already revoked every open
/// file and mapping by then.
#[pin_data]
pub(crate) struct Ivshmem<'bound> {
    #[pin]
    misc: miscdev::Registration<OpenFile>,
    /// The interrupt vectors and handlers (INTx masked first).
    _interrupts: Interrupts<'bound>,
    _index: Index,
    /// The rest of BAR0's page, reserved while user space may map it.
    _doorbell_tail: Option<raw::pci::PageTail>,
    _shm_region: raw::pci::Region<'bound>,
    _enabled: raw::pci::Enabled<'bound>,
}

/// Whether a BAR with `IORESOURCE_*` flags `flags` is memory, the only kind
/// the driver maps for user space (as vfio-pci): the start of an I/O port
/// BAR is a port number, and a "PFN" made from it would map RAM.
fn is_memory_bar(flags: u64) -> bool {
    let mem = u64::from(bindings::IORESOURCE_MEM);
    let io = u64::from(bindings::IORESOURCE_IO);
    flags & mem != 0 && flags & io == 0
}

/// Refuses the device (`ENODEV`) unless BAR `bar`, `what`, is memory.
fn check_memory_bar(pdev: &pci::Device<Core<'_>>, bar: u32, what: &str) -> Result {
    let flags = raw::pci::resource_flags(pdev, bar)?;
    if !is_memory_bar(flags) {
        dev_err!(
            pdev,
            "BAR{bar} ({what}) is not a memory BAR (flags {flags:#x}): refusing the device\n"
        );
        return Err(ENODEV);
    }
    Ok(())
}

/// BAR2, the shared memory: reserved for this driver but not mapped (user
/// space maps it). Returns the reservation, the window user space maps,
/// and BAR2's size.
fn shared_memory<'bound>(
    pdev: &'bound pci::Device<Core<'_>>,
) -> Result<(raw::pci::Region<'bound>, IoWindow, u64)> {
    let size = pdev.resource_len(regs::SHM_BAR)?;
    let phys = pdev.resource_start(regs::SHM_BAR)?;
    if size == 0 {
        dev_err!(pdev, "BAR2 (shared memory) is absent\n");
        return Err(ENODEV);
    }
    let region = raw::pci::Region::request(pdev, regs::SHM_BAR, c"ivshmem/shm")?;
    // `unbind` revokes `Device` (after which its `IoMap::lock` never
    // returns the window) before the reservation drops.
    let window = region.window().inspect_err(|_| {
        dev_err!(
            pdev,
            "BAR2 at {phys:#x}, {size} bytes, is not page-aligned\n"
        )
    })?;
    Ok((region, window, size))
}

/// The page of BAR0 that user space may map to ring peers with a store
/// (MSI-X devices only: on an INTx device, IntrMask and IntrStatus in that
/// page are the interrupt handler's). Returns the window and the
/// reservation of the rest of the page, or `None` when it cannot be had,
/// which only costs user space the ioctl it rings with instead.
fn doorbell_page(
    pdev: &pci::Device<Core<'_>>,
    msix: bool,
) -> (Option<IoWindow>, Option<raw::pci::PageTail>) {
    if !msix {
        return (None, None);
    }
    match raw::pci::PageTail::claim(pdev, 0) {
        Ok((window, tail)) => (Some(window), tail),
        Err(e) => {
            dev_info!(
                pdev,
                "BAR0's page cannot be given to user space ({e:?}): peers are rung with the ioctl\n"
            );
            (None, None)
        }
    }
}

/// The device's number, N of `/dev/ivshmemN`: the lowest free one.
fn device_number(pdev: &pci::Device<Core<'_>>) -> Result<Index> {
    Index::alloc(MAX_DEVICES).inspect_err(|e| {
        if *e == ENOSPC {
            dev_err!(pdev, "more than {} devices\n", MAX_DEVICES);
        }
    })
}

/// The PCI driver.
pub(crate) struct IvshmemDriver;

compat::pci_device_table!(
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
        _info: compat::ProbeInfo<'bound, Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || {
            check_memory_bar(pdev, 0, "registers")?;
            check_memory_bar(pdev, regs::SHM_BAR, "shared memory")?;
            let enabled = raw::pci::Enabled::new(pdev)?;
            let (shm_region, window, size) = shared_memory(pdev)?;
            let bar0 = pdev.iomap_region_sized::<{ regs::BAR0_SIZE }>(0, c"ivshmem/bar0")?;
            let ivposition = regs::ivposition(&bar0);
            let bar0 = bar0.into_devres()?;
            let (vectors, intx) = interrupts::interrupt_kind(pdev)?;
            let (doorbell_window, doorbell_tail) = doorbell_page(pdev, vectors > 0);

            let index = device_number(pdev)?;
            let facts = Facts::read(pdev, index.get(), size, vectors, intx);
            let nvec = facts.nvec();
            let name = CString::try_from_fmt(fmt!("ivshmem{}", index.get()))?;
            let dev = Device::probe(
                pdev,
                &name,
                facts,
                window,
                doorbell_window,
                bar0,
                ivposition,
            )?;
            let interrupts = Interrupts::new(pdev, &dev, index.get(), nvec, intx)?;

            Ok(try_pin_init!(Ivshmem {
                _interrupts: interrupts,
                misc <- miscdev::Registration::register(
                    name,
                    pdev.as_ref(),
                    0o600,
                    file::attributes(),
                    dev,
                    Some(index.get()),
                ),
                _index: index,
                _doorbell_tail: doorbell_tail,
                _shm_region: shm_region,
                _enabled: enabled,
            }))
        })
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        this.misc.data().revoke();
        dev_info!(pdev, "unbound; open files, mappings and waiters revoked\n");
    }
}

#[kunit_tests(ivshmem_bars)]
mod tests {
    use super::*;

    #[test]
    fn only_memory_bars_are_accepted() {
        let mem = u64::from(bindings::IORESOURCE_MEM);
        let io = u64::from(bindings::IORESOURCE_IO);
        let pref = u64::from(bindings::IORESOURCE_PREFETCH);
        let mem64 = u64::from(bindings::IORESOURCE_MEM_64);
        assert!(is_memory_bar(mem));
        assert!(is_memory_bar(mem | pref | mem64));
        assert!(!is_memory_bar(io));
        assert!(!is_memory_bar(io | mem));
        assert!(!is_memory_bar(0));
    }
}
