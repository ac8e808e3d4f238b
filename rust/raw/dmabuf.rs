// SPDX-License-Identifier: GPL-2.0

//! dma-buf export of a range of BAR2: the Rust side of
//! `rust/ivshmem_dmabuf.c`. A buffer owns an [`Exporter`] (the driver's
//! device) and forwards its CPU mmap and CPU access brackets to it; the C
//! side holds the ops table, the export, device importers (PCI
//! peer-to-peer) and their revocation ([`DmaBufs`]).

use super::helpers;
use core::{
    ffi::c_void,
    ptr::NonNull, //
};
use kernel::{
    bindings,
    device::Core,
    fs::File,
    mm::virt::VmaNew,
    pci,
    prelude::*,
    sync::Arc, //
};

/// The dma-bufs of one device: what its removal revokes, and the PCI
/// peer-to-peer provider device importers map BAR `bar` through.
///
/// # Invariants
///
/// `set` holds one reference to a set made by `ivshmem_dmabufs_new()`,
/// dropped on drop.
pub(crate) struct DmaBufs {
    set: NonNull<helpers::ivshmem_dmabufs>,
}

// SAFETY: The set is reference-counted and locked by the C side; every
// function on it may be called from any thread.
unsafe impl Send for DmaBufs {}
// SAFETY: As above: `&DmaBufs` only exports and revokes, which the C side
// serialises with its own lock.
unsafe impl Sync for DmaBufs {}

impl DmaBufs {
    /// The set of `pdev`, being probed, for BAR `bar`. A kernel or device
    /// without PCI peer-to-peer support gets a set whose buffers refuse
    /// device importers (logged). May sleep.
    pub(crate) fn new(pdev: &pci::Device<Core<'_>>, bar: u32) -> Result<Self> {
        let bar = c_int::try_from(bar)?;
        // SAFETY: `pdev` is a live device being probed; the provider the C
        // side sets up is device-managed, and every buffer is revoked
        // (`revoke`, from the driver's unbind) before it goes.
        let set = unsafe { helpers::ivshmem_dmabufs_new(super::pci::raw(pdev), bar) };
        let set = kernel::error::from_err_ptr(set)?;
        // INVARIANT: A new set, with one reference for `Self`.
        NonNull::new(set).map(|set| Self { set }).ok_or(ENOMEM)
    }

    /// Revokes every buffer: importers are told and their mappings
    /// awaited; later exports, attaches and maps get `ENODEV`. CPU
    /// mappings are the caller's to zap. Sleeps, for as long as importers
    /// take to unmap; call before BAR2 is released.
    pub(crate) fn revoke(&self) {
        // SAFETY: The set is live (type invariant).
        unsafe { helpers::ivshmem_dmabufs_revoke(self.set.as_ptr()) }
    }
}

impl Drop for DmaBufs {
    fn drop(&mut self) {
        // SAFETY: The reference `self` holds, dropped once.
        unsafe { helpers::ivshmem_dmabufs_put(self.set.as_ptr()) }
    }
}

/// What a buffer's CPU side does, implemented by the driver's device.
pub(crate) trait Exporter: Send + Sync + 'static {
    /// Sets up `vma`, a mapping of the buffer's `file` whose page offset
    /// was made BAR2's (the dma-buf core checked that it lies in the
    /// buffer).
    fn mmap(this: &Arc<Self>, file: &File, vma: &VmaNew) -> Result;

    /// `Ok` while CPU access may go on (`DMA_BUF_IOCTL_SYNC`), an error
    /// (`ENODEV`) once the memory is gone.
    fn access(&self) -> Result;
}

/// The part of an [`Owner`] that the `#[no_mangle]` callbacks read without
/// knowing its type.
#[repr(C)]
struct Header {
    mmap: unsafe fn(*mut c_void, *mut bindings::file, *mut bindings::vm_area_struct) -> c_int,
    access: unsafe fn(*mut c_void) -> c_int,
    release: unsafe fn(*mut c_void),
}

/// What the C side of a buffer holds as its `owner`.
///
/// # Invariants
///
/// Made by [`export_fd`] and handed to C, which passes it back to the
/// callbacks below while the buffer lives, and once to
/// `ivshmem_dmabuf_release_rust`. `header` holds the functions for `T`.
#[repr(C)]
struct Owner<T: Exporter> {
    header: Header,
    dev: Arc<T>,
}

impl<T: Exporter> Owner<T> {
    const HEADER: Header = Header {
        mmap: Self::mmap,
        access: Self::access,
        release: Self::release,
    };

    /// # Safety
    ///
    /// `this` is a live `Owner<T>`; `file` and `vma` are valid for the call,
    /// the VMA being set up by mmap.
    unsafe fn mmap(
        this: *mut c_void,
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: See above.
        let this = unsafe { &*this.cast::<Self>() };
        // SAFETY: The file is valid for the call; no fdget_pos region.
        let file = unsafe { File::from_raw_file(file) };
        // SAFETY: The VMA is undergoing setup for this call.
        let vma = unsafe { VmaNew::from_raw(vma) };
        match T::mmap(&this.dev, file, vma) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `this` is a live `Owner<T>`.
    unsafe fn access(this: *mut c_void) -> c_int {
        // SAFETY: See above.
        let this = unsafe { &*this.cast::<Self>() };
        match this.dev.access() {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `this` is an `Owner<T>` made by [`export_fd`], given back once.
    unsafe fn release(this: *mut c_void) {
        // SAFETY: See above: the box is taken back once.
        drop(unsafe { KBox::from_raw(this.cast::<Self>()) });
    }
}

/// Exports `[offset, offset + size)` of BAR2 (page-aligned, inside BAR2:
/// checked by the caller) as a dma-buf of `set`, held by `dev`, and returns
/// a new descriptor for it, close-on-exec when `cloexec`; `ENODEV` once
/// `set` is revoked. The buffer holds the module until it is released.
pub(crate) fn export_fd<T: Exporter>(
    set: &DmaBufs,
    dev: Arc<T>,
    offset: u64,
    size: u64,
    cloexec: bool,
) -> Result<i32> {
    let owner = KBox::new(
        Owner::<T> {
            header: Owner::<T>::HEADER,
            dev,
        },
        GFP_KERNEL,
    )?;
    let owner = KBox::into_raw(owner).cast::<c_void>();
    // SAFETY: `set` is live; `owner` is an `Owner<T>` handed over to C,
    // which gives it back to the callbacks below while the buffer lives and
    // once to `ivshmem_dmabuf_release_rust`, on success or failure.
    // INVARIANT: As above.
    let fd = unsafe {
        helpers::ivshmem_dmabuf_export_fd(set.set.as_ptr(), owner, offset, size, cloexec)
    };
    kernel::error::to_result(fd)?;
    Ok(fd)
}

/// The buffer's CPU mmap: its page offset is BAR2's already.
///
/// # Safety
///
/// Called by `rust/ivshmem_dmabuf.c` with the `owner` of a live buffer, its
/// file and a VMA being set up by mmap.
#[no_mangle]
unsafe extern "C" fn ivshmem_dmabuf_mmap_rust(
    owner: *mut c_void,
    file: *mut bindings::file,
    vma: *mut bindings::vm_area_struct,
) -> c_int {
    // SAFETY: `owner` is a live `Owner<T>`, which starts with its `Header`
    // (`repr(C)`).
    let mmap = unsafe { (*owner.cast::<Header>()).mmap };
    // SAFETY: `mmap` is `Owner::<T>::mmap` of the `T` that `owner` holds, and
    // the caller meets its other conditions.
    unsafe { mmap(owner, file, vma) }
}

/// The buffer's CPU access brackets.
///
/// # Safety
///
/// Called by `rust/ivshmem_dmabuf.c` with the `owner` of a live buffer.
#[no_mangle]
unsafe extern "C" fn ivshmem_dmabuf_access_rust(owner: *mut c_void) -> c_int {
    // SAFETY: As in `ivshmem_dmabuf_mmap_rust`.
    let access = unsafe { (*owner.cast::<Header>()).access };
    // SAFETY: As in `ivshmem_dmabuf_mmap_rust`.
    unsafe { access(owner) }
}

/// The buffer's release, or a failed export's.
///
/// # Safety
///
/// Called by `rust/ivshmem_dmabuf.c` once per `owner` made by [`export_fd`].
#[no_mangle]
unsafe extern "C" fn ivshmem_dmabuf_release_rust(owner: *mut c_void) {
    // SAFETY: As in `ivshmem_dmabuf_mmap_rust`.
    let release = unsafe { (*owner.cast::<Header>()).release };
    // SAFETY: As in `ivshmem_dmabuf_mmap_rust`; given back once.
    unsafe { release(owner) }
}
