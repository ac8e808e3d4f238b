// SPDX-License-Identifier: GPL-2.0

//! Device numbers from the kernel's ID allocator (IDA): each device becomes
//! `/dev/ivshmemN` with the lowest free N, and a number is free again as
//! soon as its device is gone. The IDA itself is a static in
//! `rust/ivshmem_helpers.c` (`DEFINE_IDA` is a static initialiser Rust
//! cannot use).

use super::helpers;
use kernel::prelude::*;

/// A number from the driver's IDA, free again when dropped.
///
/// # Invariants
///
/// `self.0` was allocated from the driver's IDA and is freed only on drop.
pub(crate) struct Index(c_uint);

impl Index {
    /// Takes the lowest free number below `limit`; `ENOSPC` when all are
    /// taken, `EINVAL` for a `limit` of 0 or beyond `c_uint`. May sleep.
    pub(crate) fn alloc(limit: usize) -> Result<Self> {
        let max = limit
            .checked_sub(1)
            .and_then(|m| c_uint::try_from(m).ok())
            .ok_or(EINVAL)?;
        // SAFETY: Allocates from the driver's own IDA, which is always
        // initialised (a static); any `max` is valid.
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
