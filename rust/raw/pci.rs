// SPDX-License-Identifier: GPL-2.0

//! PCI helpers missing from `kernel::pci`: reserving a BAR without mapping
//! it into the kernel, the rest of a sub-page BAR's page, the MSI-X table
//! size, and the device's PCI address.

use super::{
    helpers,
    vma::IoWindow, //
};
use kernel::{
    bindings,
    device::{
        Bound,
        Core, //
    },
    error::to_result,
    pci,
    prelude::*,
    types::Opaque, //
};

/// Returns the C `struct pci_dev` of `pdev`.
pub(super) fn raw(pdev: &pci::Device<Bound>) -> *mut bindings::pci_dev {
    // CAST: `pci::Device` is `#[repr(transparent)]` over
    // `Opaque<bindings::pci_dev>`, itself a transparent wrapper of the C
    // struct, so a reference to it points to the C `struct pci_dev`.
    core::ptr::from_ref(pdev)
        .cast::<bindings::pci_dev>()
        .cast_mut()
}

/// The `IORESOURCE_*` flags of BAR `bar` of `pdev`; `EINVAL` for a
/// resource number that does not exist.
pub(crate) fn resource_flags(pdev: &pci::Device<Bound>, bar: u32) -> Result<u64> {
    let i = usize::try_from(bar)?;
    // SAFETY: The device `raw(pdev)` is valid and bound; its resources are
    // set at enumeration and not changed while a driver is bound.
    let flags = unsafe { (*raw(pdev)).resource.get(i).ok_or(EINVAL)?.flags };
    Ok(u64::try_from(flags)?)
}

/// The device enabled for memory accesses, disabled again on drop: 7.3's
/// `pci::Device::enable_device_mem` has no counterpart.
///
/// # Invariants
///
/// `pdev` was enabled by this object and is disabled only by its drop.
pub(crate) struct Enabled<'bound> {
    pdev: &'bound pci::Device<Bound>,
}

impl<'bound> Enabled<'bound> {
    /// Enables `pdev`'s memory space.
    pub(crate) fn new(pdev: &'bound pci::Device<Core<'_>>) -> Result<Self> {
        pdev.enable_device_mem()?;
        // INVARIANT: Just enabled.
        Ok(Self { pdev })
    }
}

impl Drop for Enabled<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this object enabled the (still
        // bound) device once; this balances it.
        unsafe { bindings::pci_disable_device(raw(self.pdev)) };
    }
}

/// A BAR's resource, reserved for this driver with `pci_request_region()`
/// but not mapped into the kernel: user space maps it.
///
/// # Invariants
///
/// `bar` of `pdev` is reserved by this object and released when it drops.
pub(crate) struct Region<'bound> {
    pdev: &'bound pci::Device<Bound>,
    bar: u32,
}

impl<'bound> Region<'bound> {
    /// Reserves BAR `bar` of `pdev` under `name` (shown in `/proc/iomem`).
    pub(crate) fn request(
        pdev: &'bound pci::Device<Bound>,
        bar: u32,
        name: &'static CStr,
    ) -> Result<Self> {
        let bar_c = c_int::try_from(bar)?;
        // SAFETY: The device `raw(pdev)` is valid and bound for `'bound`, and
        // `name` is a NUL-terminated string that lives forever, as the
        // resource keeps a pointer to it.
        to_result(unsafe { bindings::pci_request_region(raw(pdev), bar_c, name.as_char_ptr()) })
            .inspect_err(|_| dev_err!(pdev, "BAR{bar} is in use by someone else\n"))?;
        // INVARIANT: The region was just reserved.
        Ok(Self { pdev, bar })
    }

    /// The BAR as a window user space may map; `EINVAL` when it is not
    /// page-aligned.
    ///
    /// The driver's [`super::vma::IoMap::lock`] must stop returning the
    /// window before this reservation drops (the driver revokes its
    /// mappings on unbind, before its data, which holds this, is dropped).
    pub(crate) fn window(&self) -> Result<IoWindow> {
        let phys = self.pdev.resource_start(self.bar)?;
        let len = self.pdev.resource_len(self.bar)?;
        // SAFETY: The range is the BAR, reserved by `self` (type
        // invariant); the driver's `IoMap::lock` stops returning the window
        // before `self` drops, as documented above.
        unsafe { IoWindow::new(phys, len) }
    }
}

impl Drop for Region<'_> {
    fn drop(&mut self) {
        // CAST: `bar` fitted in a `c_int` when it was requested.
        let bar = self.bar as c_int;
        // SAFETY: By the type invariant this object reserved `bar` of the
        // still bound `pdev`, so it is released exactly once, here.
        unsafe { bindings::pci_release_region(raw(self.pdev), bar) };
    }
}

/// The PCI address of a device.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Address {
    /// The PCI domain (segment).
    pub(crate) domain: u32,
    /// The bus number.
    pub(crate) bus: u8,
    /// `(slot << 3) | function`.
    pub(crate) devfn: u8,
}

/// Returns the PCI address of `pdev`.
pub(crate) fn address(pdev: &pci::Device<Bound>) -> Address {
    // SAFETY: The device `raw(pdev)` is valid, with a valid bus.
    let domain = unsafe { helpers::ivshmem_pci_domain_nr(raw(pdev).cast()) };
    let id = pdev.dev_id();
    Address {
        // CAST: PCI domains are non-negative.
        domain: domain as u32,
        bus: (id >> 8) as u8,
        devfn: (id & 0xff) as u8,
    }
}

/// The MSI-X table size of `pdev` (`pci_msix_vec_count()`), or 0 when it
/// has no MSI-X capability (`ivshmem-plain`).
pub(crate) fn msix_vec_count(pdev: &pci::Device<Bound>) -> u16 {
    // SAFETY: The device `raw(pdev)` is valid and bound.
    let n = unsafe { bindings::pci_msix_vec_count(raw(pdev)) };
    // Negative (-EINVAL) without an MSI-X capability; at most 2048.
    u16::try_from(n).unwrap_or(0)
}

/// The rest of the page that holds a BAR smaller than a page, reserved in
/// the resource tree so that no other device's resource can be placed
/// there while this object lives: a user mapping of the BAR maps its whole
/// page. vfio-pci does the same before it lets user space map a sub-page
/// BAR ("vfio sub-page reserved").
///
/// # Invariants
///
/// `res` was inserted into the resource tree by [`PageTail::claim`] and is
/// removed from it (`release_resource()`) exactly once, on drop; the tree
/// links it by address, so it stays in its box.
pub(crate) struct PageTail {
    res: Pin<KBox<Opaque<bindings::resource>>>,
}

// SAFETY: The resource is only touched through the resource tree's own
// lock (`request_resource`/`release_resource`), from any thread.
unsafe impl Send for PageTail {}
// SAFETY: No method reads or writes the resource.
unsafe impl Sync for PageTail {}

impl PageTail {
    /// Reserves the rest of the page holding BAR `bar` of `pdev` and
    /// returns the page as a window user space may map, with the
    /// reservation when the BAR is smaller than a page. `EINVAL` when the
    /// BAR does not start on a page or is not in the resource tree; `EBUSY`
    /// when another resource already lies in the rest of its page.
    ///
    /// The BAR itself must stay reserved (it is mapped with
    /// `iomap_region_sized`), and the rest of the page with it, for as long
    /// as the driver's [`super::vma::IoMap::lock`] returns the window.
    pub(crate) fn claim(pdev: &pci::Device<Bound>, bar: u32) -> Result<(IoWindow, Option<Self>)> {
        let (start, tail) = Self::claim_page(pdev, bar)?;
        let page = kernel::page::PAGE_SIZE as u64;
        // SAFETY: The page is the BAR, reserved by the caller, and the rest
        // of the page, reserved by `tail` or by the BAR itself; the caller
        // keeps both while `IoMap::lock` returns the window.
        let window = unsafe { IoWindow::new(start, page) }?;
        Ok((window, tail))
    }

    /// [`PageTail::claim`], returning the page's physical address.
    fn claim_page(pdev: &pci::Device<Bound>, bar: u32) -> Result<(u64, Option<Self>)> {
        let page = kernel::page::PAGE_SIZE as u64;
        let i = usize::try_from(bar)?;
        // SAFETY: The device `raw(pdev)` is valid and bound; its resources
        // are set at enumeration and not changed while a driver is bound.
        let (start, end, flags, parent) = unsafe {
            let r = (*raw(pdev)).resource.get(i).ok_or(EINVAL)?;
            (r.start, r.end, r.flags, r.parent)
        };
        if start % page != 0 || end < start || parent.is_null() {
            return Err(EINVAL);
        }
        let len = end - start + 1;
        if len >= page {
            return if len % page == 0 {
                Ok((start, None))
            } else {
                Err(EINVAL)
            };
        }
        // SAFETY: All-zero is a valid `struct resource` (unlinked, no name).
        let mut tail: bindings::resource = unsafe { core::mem::zeroed() };
        tail.name = c"ivshmem sub-page reserved".as_char_ptr();
        tail.start = end + 1;
        tail.end = start + page - 1;
        tail.flags = flags;
        let res = KBox::pin(Opaque::new(tail), GFP_KERNEL)?;
        // SAFETY: The resource `parent` is the BAR's parent in the tree, which
        // outlives the bound device; `res` is a valid, unlinked resource in
        // a box that is not freed before `release_resource` on drop.
        to_result(unsafe { bindings::request_resource(parent, res.get()) })?;
        // INVARIANT: `res` was just inserted.
        Ok((start, Some(Self { res })))
    }
}

impl Drop for PageTail {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `res` is in the tree, and is taken
        // out only here.
        unsafe { bindings::release_resource(self.res.get()) };
    }
}
