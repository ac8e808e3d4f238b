// SPDX-License-Identifier: GPL-2.0

//! Device numbers: each device becomes `/dev/ivshmemN` with the lowest free
//! N, from the kernel's ID allocator (IDA), and a number is free again as
//! soon as its device is gone.

use crate::raw::helpers;
use kernel::prelude::*;

/// How many devices the driver can bind at once.
pub(crate) const MAX_DEVICES: usize = 1 << 16;

/// A device number, free again when dropped.
///
/// # Invariants
///
/// `self.0` was allocated from the driver's IDA and is freed only on drop.
pub(crate) struct Index(c_uint);

impl Index {
    /// Takes the lowest free number below [`MAX_DEVICES`]; `ENOSPC` when
    /// all are taken. May sleep.
    pub(crate) fn alloc() -> Result<Self> {
        // CAST: MAX_DEVICES - 1 fits in a `c_uint`.
        let max = (MAX_DEVICES - 1) as c_uint;
        // SAFETY: Allocates from the driver's own IDA; no other requirement.
        let id = unsafe { helpers::ivshmem_ida_alloc(max) };
        // INVARIANT: A non-negative result is a number now allocated.
        let id = c_uint::try_from(id).map_err(|_| Error::from_errno(id))?;
        Ok(Self(id))
    }

    /// The number.
    pub(crate) fn get(&self) -> usize {
        // CAST: A `c_uint` fits in a `usize` on every Linux target.
        self.0 as usize
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, the number is allocated and freed
        // only here, once.
        unsafe { helpers::ivshmem_ida_free(self.0) };
    }
}
