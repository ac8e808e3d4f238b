// SPDX-License-Identifier: GPL-2.0

//! User mappings of I/O memory, populated at fault time, the way vfio-pci
//! maps BARs.
//!
//! `mmap` only checks and sets up the VMA ([`install`]); pages are inserted
//! when first touched, with PMD or PUD entries where the virtual address,
//! the physical address and the VMA allow it. The driver's [`IoMap`] says,
//! under its own lock, whether the memory is still there: after the device
//! is gone it says no and the access raises SIGBUS. The driver zaps
//! existing entries under that same lock, so no entry can be inserted
//! after the zap. Debuggers and `/proc/PID/mem` reach the memory through
//! `generic_access_phys()`, as for UIO and PCI sysfs `resourceN` maps: it
//! follows the entry already inserted (none: `EIO`), so it never touches
//! memory a zapped mapping no longer has.

use super::{
    mappings::Mapping,
    pat::CacheMode, //
};
use kernel::{
    bindings,
    fs::File,
    mm::virt::{
        flags,
        VmaNew, //
    },
    prelude::*,
    sync::Arc,
    types::ForeignOwnable, //
};

const PAGE_SHIFT: u32 = bindings::PAGE_SHIFT;
const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
const PMD_ORDER: u32 = bindings::PMD_SHIFT - PAGE_SHIFT;
const PUD_ORDER: u32 = bindings::PUD_SHIFT - PAGE_SHIFT;

// CAST: The `vm_fault_reason` constants fit `vm_fault_t`.
const VM_FAULT_SIGBUS: bindings::vm_fault_t =
    bindings::vm_fault_reason_VM_FAULT_SIGBUS as bindings::vm_fault_t;
const VM_FAULT_FALLBACK: bindings::vm_fault_t =
    bindings::vm_fault_reason_VM_FAULT_FALLBACK as bindings::vm_fault_t;
const VM_FAULT_NOPAGE: bindings::vm_fault_t =
    bindings::vm_fault_reason_VM_FAULT_NOPAGE as bindings::vm_fault_t;

/// A range of page frames of I/O memory that user space may map, at file
/// page offsets `[base, base + pages)`. Made only from a reservation of
/// the range ([`super::pci::Region::window`],
/// [`super::pci::PageTail::claim`]).
///
/// # Invariants
///
/// `[pfn, pfn + pages)` is I/O memory (a PCI BAR), not RAM, reserved by
/// the driver that made this window for as long as the window is
/// returned by its [`IoMap::lock`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct IoWindow {
    pfn: usize,
    pages: usize,
    base: usize,
}

impl IoWindow {
    /// A window over `[phys, phys + len)`, mapped at file offset 0; both
    /// must be page-aligned.
    ///
    /// # Safety
    ///
    /// The range must be I/O memory reserved by the caller (e.g. a BAR
    /// held with `pci::Region`), and the driver's [`IoMap::lock`] must stop
    /// returning the window before the reservation ends.
    pub(super) unsafe fn new(phys: u64, len: u64) -> Result<Self> {
        let page = PAGE_SIZE as u64;
        if phys % page != 0 || len % page != 0 || len == 0 {
            return Err(EINVAL);
        }
        // INVARIANT: Guaranteed by the caller.
        Ok(Self {
            pfn: usize::try_from(phys >> PAGE_SHIFT)?,
            pages: usize::try_from(len >> PAGE_SHIFT)?,
            base: 0,
        })
    }

    /// The physical address of the window's first byte.
    pub(super) fn phys(&self) -> u64 {
        // CAST: A page frame number shifted back fits a physical address.
        (self.pfn as u64) << PAGE_SHIFT
    }

    /// The window's length in bytes.
    pub(super) fn len(&self) -> usize {
        self.pages << PAGE_SHIFT
    }

    /// The same window, mapped at file page offset `base`.
    pub(crate) fn at_pgoff(self, base: usize) -> Self {
        Self { base, ..self }
    }

    /// The window's index of file page `pgoff`, if the window has it.
    fn index(&self, pgoff: usize) -> Option<usize> {
        pgoff.checked_sub(self.base).filter(|i| *i < self.pages)
    }
}

/// The page table level a fault filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// A 4 KiB page table entry.
    Pte,
    /// A 2 MiB entry.
    Pmd,
    /// A 1 GiB entry.
    Pud,
}

/// What user mappings of a device map, implemented by the driver.
pub(crate) trait IoMap: Send + Sync + Sized + 'static {
    /// Held while a fault inserts an entry; the device's removal waits for it.
    type Guard<'a>
    where
        Self: 'a;

    /// Returns the window that maps file page `pgoff` and a guard keeping
    /// it valid, or `None` once the device is gone (or no window has that
    /// page).
    fn lock(&self, pgoff: usize) -> Option<(Self::Guard<'_>, IoWindow)>;

    /// Called after an entry of `kind` was inserted, under the guard.
    fn faulted(&self, _kind: FaultKind) {}

    /// A VMA linked into `m`, starting at file page `pgoff`, was
    /// duplicated (fork) or split off.
    fn vma_opened(&self, m: Mapping, pgoff: usize);

    /// A VMA linked into `m`, starting at file page `pgoff`, is going away.
    fn vma_closed(&self, m: Mapping, pgoff: usize);
}

/// The page offset (`mmap` offset in pages) a VMA being set up maps.
pub(crate) fn pgoff(vma: &VmaNew) -> usize {
    // SAFETY: The VMA is being set up by mmap, which the caller's `&VmaNew`
    // guarantees; `vm_pgoff` is set and not changing.
    unsafe { (*vma.as_ptr()).vm_pgoff }
}

/// Checks that a VMA being set up can map I/O memory: it must be shared
/// (`MAP_SHARED`), since a private copy-on-write mapping of device memory
/// makes no sense (and the fault path would hit a `BUG_ON`). `VM_MAYSHARE`
/// comes from C: 7.2's `flags::MAYSHARE` is `VM_MAYEXEC`.
pub(crate) fn check_shared(vma: &VmaNew) -> Result {
    // SAFETY: Returns a constant.
    let mayshare = unsafe { super::helpers::ivshmem_vm_mayshare() };
    if vma.flags() & mayshare == 0 {
        return Err(EINVAL);
    }
    Ok(())
}

/// Checks that a VMA being set up is not executable: device memory is never
/// code (vfio-pci and sysfs `resource` files give no exec either).
/// `EPERM` for a `PROT_EXEC` request; the flags come from C, as in
/// [`check_shared`].
pub(crate) fn check_noexec(vma: &VmaNew) -> Result {
    // SAFETY: Returns a constant.
    let exec = unsafe { super::helpers::ivshmem_vm_exec() };
    if vma.flags() & exec != 0 {
        return Err(EPERM);
    }
    Ok(())
}

/// Gives a VMA being set up by the mmap of a sysfs binary attribute a new
/// file of its own, on a new anonymous inode: kernfs then leaves the VMA's
/// operations alone instead of wrapping them (its wrapper forwards neither
/// huge faults nor `close`), and the VMA is zapped through that file's own
/// address space. The VMA keeps its flags, so a read-only open stays
/// read-only. Returns the new file, which the VMA holds.
pub(crate) fn own_file(vma: &VmaNew) -> Result<&File> {
    // SAFETY: The VMA is being set up by mmap (the caller's `&VmaNew`), under
    // the mmap lock, with a file: mm allows `->mmap` to replace the file
    // (`vma_set_file`), and kernfs allows it for its binary attributes.
    let file = unsafe { super::helpers::ivshmem_vma_own_file(vma.as_ptr()) };
    let file = kernel::error::from_err_ptr(file)?;
    // SAFETY: The VMA holds a reference to `file` for as long as it lives,
    // which outlasts the borrow of `vma`; no `fdget_pos` region covers it.
    Ok(unsafe { File::from_raw_file(file) })
}

/// Turns a VMA being set up into an I/O mapping of `map`: sets `VM_IO`,
/// `VM_PFNMAP`, `VM_DONTEXPAND` and `VM_DONTDUMP`, the protection bits of
/// `mode` (decrypted, for confidential guests: the memory is shared with
/// the host), and the fault handler. The caller has counted this VMA in
/// `map` already; from here on the VMA owns the reference to `map`,
/// released through [`IoMap::vma_closed`] when it goes. `VM_MAYEXEC` is
/// cleared, so a later `mprotect(PROT_EXEC)` fails. Fails, changing
/// nothing, for a VMA that is not shared or is executable.
pub(crate) fn install<M: IoMap>(vma: &VmaNew, map: Arc<M>, mode: CacheMode) -> Result {
    check_shared(vma)?;
    check_noexec(vma)?;
    // SAFETY: Returns a constant.
    let mayexec = unsafe { super::helpers::ivshmem_vm_mayexec() };
    vma.set_io();
    vma.set_dontexpand();
    vma.set_dontdump();
    let raw = vma.as_ptr();
    // SAFETY: The VMA is being set up by mmap and not yet shared, so these
    // writes do not race. `VM_PFNMAP` is valid with `VM_IO` and without
    // `VM_MIXEDMAP` (never set by this driver); clearing `VM_MAYEXEC` only
    // takes a permission away (`VM_EXEC` is not set: checked above). The
    // operations table is a static; the private data is released by its
    // `close`.
    unsafe {
        (*raw).__bindgen_anon_2.vm_flags |= flags::PFNMAP;
        (*raw).__bindgen_anon_2.vm_flags &= !mayexec;
        (*raw).vm_page_prot = mode.pgprot((*raw).vm_page_prot);
        (*raw).vm_ops = &VmOps::<M>::TABLE;
        (*raw).vm_private_data = map.into_foreign();
    }
    Ok(())
}

struct VmOps<M: IoMap>(PhantomData<M>);

/// The parts of a `struct vm_fault` the handler uses.
#[derive(Clone, Copy)]
struct Fault {
    vmf: *mut bindings::vm_fault,
    vma: *mut bindings::vm_area_struct,
    address: usize,
    pgoff: usize,
    write: bool,
    start: usize,
    end: usize,
}

use core::marker::PhantomData;

/// Inserts a PMD (`order` [`PMD_ORDER`]) or PUD entry for `pfn`, where the
/// kernel has them: without `CONFIG_TRANSPARENT_HUGEPAGE` (or without
/// huge PUDs) the fault falls back to smaller entries.
///
/// # Safety
///
/// `vmf` is a valid fault on a locked VMA set up by [`install`]; the
/// aligned block of `1 << order` frames from `pfn` is I/O memory of this
/// driver, reserved while the fault runs, and lies within the VMA.
#[allow(unused_variables)]
unsafe fn insert_huge(
    vmf: *mut bindings::vm_fault,
    pfn: usize,
    write: bool,
    order: c_uint,
) -> bindings::vm_fault_t {
    #[cfg(CONFIG_TRANSPARENT_HUGEPAGE)]
    if order == PMD_ORDER {
        // SAFETY: Guaranteed by the caller.
        return unsafe { bindings::vmf_insert_pfn_pmd(vmf, pfn, write) };
    }
    #[cfg(all(CONFIG_TRANSPARENT_HUGEPAGE, CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD))]
    if order == PUD_ORDER {
        // SAFETY: Guaranteed by the caller.
        return unsafe { bindings::vmf_insert_pfn_pud(vmf, pfn, write) };
    }
    VM_FAULT_FALLBACK
}

impl<M: IoMap> VmOps<M> {
    const TABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        open: Some(Self::open),
        close: Some(Self::close),
        fault: Some(Self::fault),
        huge_fault: Some(Self::huge_fault),
        // `ptrace`, `/proc/PID/mem`: entries are plain PFN maps of I/O
        // memory, which is what `generic_access_phys()` handles.
        access: Some(bindings::generic_access_phys),
        // SAFETY: All-zero is a valid `vm_operations_struct` (no callbacks).
        ..unsafe { core::mem::zeroed() }
    };

    /// Calls `f` with the `M` of a VMA.
    ///
    /// # Safety
    ///
    /// `vma` is a live VMA set up by [`install`] with this `M`.
    unsafe fn with_map<R>(vma: *mut bindings::vm_area_struct, f: impl FnOnce(&M) -> R) -> R {
        // SAFETY: The function `install` stored an `Arc<M>` from
        // `into_foreign`, which is released only by `close`, after which the
        // VMA is gone; the borrow does not outlive this call.
        let map = unsafe { <Arc<M> as ForeignOwnable>::borrow((*vma).vm_private_data) };
        f(&map)
    }

    /// # Safety
    ///
    /// Called by the mm on a new copy of a VMA set up by [`install`].
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: The copy has the private data of its original.
        let map = unsafe { <Arc<M> as ForeignOwnable>::borrow((*vma).vm_private_data) };
        // The copy owns a reference of its own, released by its `close`.
        let copy: Arc<M> = map.into();
        // SAFETY: The mm sets the copy up: `vm_pgoff` is set and stable.
        let pgoff = unsafe { (*vma).vm_pgoff };
        // SAFETY: A live VMA of this driver has a `vm_file`.
        if let Some(m) = unsafe { Mapping::of_vma(vma) } {
            copy.vma_opened(m, pgoff);
        }
        // SAFETY: The VMA is being set up by the mm; its private data
        // becomes the copy's own reference.
        unsafe { (*vma).vm_private_data = copy.into_foreign() };
    }

    /// # Safety
    ///
    /// Called by the mm once per VMA set up by [`install`] or `open`.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        // SAFETY: This VMA owns one reference, given up here, once.
        let map = unsafe { <Arc<M> as ForeignOwnable>::from_foreign((*vma).vm_private_data) };
        // SAFETY: The VMA is still live during `close`.
        let pgoff = unsafe { (*vma).vm_pgoff };
        // SAFETY: The VMA is still live (and has its file) during `close`.
        if let Some(m) = unsafe { Mapping::of_vma(vma) } {
            map.vma_closed(m, pgoff);
        }
    }

    /// # Safety
    ///
    /// Called by the mm with a valid fault on a VMA set up by [`install`].
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: Forwarded with the same guarantees.
        unsafe { Self::huge_fault(vmf, 0) }
    }

    /// # Safety
    ///
    /// Called by the mm with a valid fault on a VMA set up by [`install`],
    /// holding the mmap or VMA lock.
    unsafe extern "C" fn huge_fault(
        vmf: *mut bindings::vm_fault,
        order: c_uint,
    ) -> bindings::vm_fault_t {
        // SAFETY: The mm passes a valid fault, whose VMA is valid and locked.
        let f = unsafe {
            let raw = &(*vmf).__bindgen_anon_1;
            let range = &(*raw.vma).__bindgen_anon_1.__bindgen_anon_1;
            Fault {
                vmf,
                vma: raw.vma,
                address: raw.address,
                pgoff: raw.pgoff,
                write: (*vmf).flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0,
                start: range.vm_start,
                end: range.vm_end,
            }
        };
        // SAFETY: The VMA was set up by `install` and is locked.
        unsafe { Self::with_map(f.vma, |map| Self::insert(map, &f, order)) }
    }

    /// Inserts the entry for a fault of `order`, under the map's lock.
    ///
    /// # Safety
    ///
    /// `f` describes a valid fault on a locked VMA set up by [`install`]
    /// with `map`.
    unsafe fn insert(map: &M, f: &Fault, order: c_uint) -> bindings::vm_fault_t {
        let Fault {
            vmf,
            vma,
            address,
            pgoff,
            write,
            start,
            end,
        } = *f;
        let Some((guard, win)) = map.lock(pgoff) else {
            // The device is gone.
            return VM_FAULT_SIGBUS;
        };
        let Some(index) = win.index(pgoff) else {
            return VM_FAULT_SIGBUS;
        };
        let ret = if order == 0 {
            // SAFETY: By the `IoWindow` invariant, the frame is I/O memory
            // of this driver, reserved while `guard` lives; the address is
            // within the locked VMA.
            unsafe { bindings::vmf_insert_pfn(vma, address & !(PAGE_SIZE - 1), win.pfn + index) }
        } else if order == PMD_ORDER || order == PUD_ORDER {
            let size = PAGE_SIZE << order;
            let pages = 1usize << order;
            let base = address & !(size - 1);
            let head = (address - base) >> PAGE_SHIFT;
            match index.checked_sub(head) {
                Some(first)
                    if base >= start
                        && base.checked_add(size).is_some_and(|e| e <= end)
                        && first.checked_add(pages).is_some_and(|e| e <= win.pages)
                        && (win.pfn + first) % pages == 0 =>
                {
                    // SAFETY: As for a PTE; the whole aligned block lies
                    // within both the VMA and the window.
                    unsafe { insert_huge(vmf, win.pfn + first, write, order) }
                }
                _ => VM_FAULT_FALLBACK,
            }
        } else {
            VM_FAULT_FALLBACK
        };
        if ret & VM_FAULT_NOPAGE != 0 {
            map.faulted(match order {
                0 => FaultKind::Pte,
                PMD_ORDER => FaultKind::Pmd,
                _ => FaultKind::Pud,
            });
        }
        drop(guard);
        ret
    }
}
