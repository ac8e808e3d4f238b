// SPDX-License-Identifier: GPL-2.0

//! The address spaces holding a device's user mappings, so that every
//! mapping can be zapped when the device goes away.
//!
//! A VMA of a character device is linked into `vm_file->f_mapping`, the
//! address space of the device node's inode. Each node (devtmpfs, or one
//! made with mknod elsewhere) has its own inode, so the device records
//! every one its files were mapped through, holding a reference on the
//! inode so that the address space outlives the record.

use core::ptr::NonNull;
use kernel::{
    alloc::KVec,
    bindings,
    fs::File,
    prelude::*, //
};

/// A set of inodes whose address spaces hold user mappings.
///
/// # Invariants
///
/// Every pointer in `inodes` is a valid inode on which this set holds a
/// reference (`ihold`), dropped (`iput`) when the set drops.
pub(crate) struct Mappings {
    inodes: KVec<NonNull<bindings::inode>>,
}

// SAFETY: inode references may be taken and dropped on any thread.
unsafe impl Send for Mappings {}
// SAFETY: `&self` methods only call `unmap_mapping_range`, which is
// thread-safe.
unsafe impl Sync for Mappings {}

impl Mappings {
    /// An empty set.
    pub(crate) fn new() -> Self {
        Self {
            inodes: KVec::new(),
        }
    }

    /// Records the address space `file` maps through.
    pub(crate) fn add(&mut self, file: &File) -> Result {
        // SAFETY: `file` is a valid open file, so its inode is valid.
        let inode = unsafe { (*file.as_ptr()).f_inode };
        let inode = NonNull::new(inode).ok_or(EINVAL)?;
        if self.inodes.iter().any(|i| *i == inode) {
            return Ok(());
        }
        self.inodes.push(inode, GFP_KERNEL)?;
        // SAFETY: `inode` is valid (the open file holds it); the reference
        // taken here keeps it valid until `drop`.
        // INVARIANT: the pointer was pushed and a reference is now held.
        unsafe { bindings::ihold(inode.as_ptr()) };
        Ok(())
    }

    /// Removes every page table entry of every user mapping in the set.
    /// Later accesses fault again, to the VMA's fault handler.
    pub(crate) fn zap_all(&self) {
        for inode in &self.inodes {
            // SAFETY: by the type invariant the inode is valid; a zero
            // length means "to the end", `even_cows` = 1 removes all.
            unsafe { bindings::unmap_mapping_range((*inode.as_ptr()).i_mapping, 0, 0, 1) };
        }
    }
}

impl Drop for Mappings {
    fn drop(&mut self) {
        for inode in self.inodes.drain_all() {
            // SAFETY: by the type invariant this set holds a reference.
            unsafe { bindings::iput(inode.as_ptr()) };
        }
    }
}
