// SPDX-License-Identifier: GPL-2.0

//! The address spaces holding a device's user mappings, so that every
//! mapping can be zapped when the device goes away.
//!
//! A VMA of a character device is linked into `vm_file->f_mapping`, the
//! address space of the device node's inode. Each node (devtmpfs, or one
//! made with mknod elsewhere) has its own, so the device counts its live
//! VMAs per address space. No reference is taken: a live VMA's `vm_file`
//! keeps the inode, and with it the address space, alive; the count drops
//! in `vm_ops->close`, before the mm releases `vm_file`. An address space
//! whose count reaches zero is forgotten.

use core::ptr::NonNull;
use kernel::{
    alloc::KVec,
    bindings,
    fs::File,
    prelude::*, //
};

/// The address space a VMA or an open file maps through.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping(NonNull<bindings::address_space>);

// SAFETY: Only an identity here; dereferenced under the rules of `Mappings`.
unsafe impl Send for Mapping {}
// SAFETY: As above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The address space `file` maps through.
    pub(crate) fn of_file(file: &File) -> Result<Self> {
        // SAFETY: The file is a valid open file; `f_mapping` is set at open.
        let m = unsafe { (*file.as_ptr()).f_mapping };
        NonNull::new(m).map(Self).ok_or(EINVAL)
    }

    /// The address space a VMA with a file maps through.
    ///
    /// # Safety
    ///
    /// `vma` is a valid VMA with a `vm_file`, locked by the caller.
    pub(crate) unsafe fn of_vma(vma: *const bindings::vm_area_struct) -> Option<Self> {
        // SAFETY: Guaranteed by the caller.
        let m = unsafe { (*(*vma).vm_file).f_mapping };
        NonNull::new(m).map(Self)
    }
}

/// Live VMAs per address space.
///
/// # Invariants
///
/// Each entry's count is the number of live VMAs of the device linked into
/// that address space, and is never zero: while it is not, those VMAs'
/// files keep the address space valid.
pub(crate) struct Mappings {
    entries: KVec<(Mapping, usize)>,
}

impl Mappings {
    /// An empty set.
    pub(crate) fn new() -> Self {
        Self {
            entries: KVec::new(),
        }
    }

    /// Counts a new VMA in `m`.
    pub(crate) fn add(&mut self, m: Mapping) -> Result {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == m) {
            e.1 += 1;
            return Ok(());
        }
        // INVARIANT: The caller is setting up (or copying) a VMA of `m`.
        self.entries.push((m, 1), GFP_KERNEL)?;
        Ok(())
    }

    /// Uncounts a VMA of `m` that is going away.
    pub(crate) fn remove(&mut self, m: Mapping) {
        if let Some(i) = self.entries.iter().position(|e| e.0 == m) {
            self.entries[i].1 -= 1;
            if self.entries[i].1 == 0 {
                // INVARIANT: No live VMA left: forget the address space.
                let _ = self.entries.remove(i);
            }
        }
    }

    /// Removes every page table entry of every VMA counted. Later accesses
    /// fault again, to the VMA's fault handler.
    pub(crate) fn zap_all(&self) {
        for (m, _) in self.entries.iter() {
            // SAFETY: By the type invariant the address space is valid; a
            // zero length means "to the end", `even_cows` = 1 removes all.
            unsafe { bindings::unmap_mapping_range(m.0.as_ptr(), 0, 0, 1) };
        }
    }
}
