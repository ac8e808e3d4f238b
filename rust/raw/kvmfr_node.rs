// SPDX-License-Identifier: GPL-2.0

//! `/dev/kvmfrN`, the Looking Glass name of `/dev/ivshmemN`: a character
//! device in class `kvmfr` whose open hands the file to the misc device
//! (as `misc_open()` does), so that every later operation is the misc
//! device's own. The class, its device numbers and the open are C, in
//! `rust/ivshmem_helpers.c`; this is the owner of one node.

use super::helpers;
use core::ptr::NonNull;
use kernel::{
    bindings,
    device,
    prelude::*, //
};

/// A `/dev/kvmfrN` node, deleted on drop.
///
/// # Invariants
///
/// `node` was returned by `ivshmem_kvmfr_node_add()` and is deleted only
/// on drop. The misc device it opens stays registered until then.
pub(crate) struct KvmfrNode {
    node: NonNull<helpers::ivshmem_kvmfr_node>,
}

// SAFETY: The node is only deleted (on any thread); the C side serialises
// that against opens with its own mutex.
unsafe impl Send for KvmfrNode {}
// SAFETY: A shared reference gives access to nothing.
unsafe impl Sync for KvmfrNode {}

impl KvmfrNode {
    /// Makes `/dev/kvmfr<index>`, child of `parent`, whose opens become
    /// opens of `misc`. `None` when the `kvmfr_nodes` module parameter is
    /// off, or when another module owns class `kvmfr` (logged). May
    /// sleep.
    ///
    /// # Safety
    ///
    /// `misc` is a registered misc device that stays registered (and in
    /// place) until the returned node is dropped.
    pub(crate) unsafe fn add(
        parent: &device::Device,
        index: usize,
        misc: *mut bindings::miscdevice,
    ) -> Result<Option<Self>> {
        let index = c_uint::try_from(index).map_err(|_| EINVAL)?;
        // CAST: `device::Device` is a transparent wrapper of `struct device`.
        let parent = core::ptr::from_ref(parent)
            .cast::<bindings::device>()
            .cast_mut();
        // SAFETY: `parent` is a live device for the call; `misc` stays
        // registered until the node is deleted, by the caller's guarantee.
        let node = unsafe { helpers::ivshmem_kvmfr_node_add(parent, index, misc) };
        // A NULL node is no node; an ERR_PTR an error.
        let node = kernel::error::from_err_ptr(node)?;
        // INVARIANT: A node just added, deleted only by `drop`.
        Ok(NonNull::new(node).map(|node| Self { node }))
    }
}

impl Drop for KvmfrNode {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the node is live and deleted only
        // here, once, while its misc device is still registered.
        unsafe { helpers::ivshmem_kvmfr_node_del(self.node.as_ptr()) };
    }
}
