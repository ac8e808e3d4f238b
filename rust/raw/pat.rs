// SPDX-License-Identifier: GPL-2.0

//! Cache modes of user mappings, and the PAT memtype reservation that makes
//! them real.
//!
//! On x86, a PFN inserted into a user page table at fault time
//! (`vmf_insert_pfn*`) gets the cache mode of the memtype reserved for that
//! physical range, or UC- when nothing is reserved, whatever the VMA's
//! protection bits say. `pfnmap_track()` is not exported, so the only way a
//! module reserves a write-back or uncached memtype for a BAR is the
//! `ioremap` family: the kernel mapping it creates is never touched here,
//! it only holds the reservation, which is what
//! `/sys/kernel/debug/x86/pat_memtype_list` shows.

use super::helpers;
use kernel::{
    bindings,
    prelude::*, //
};

/// How user mappings of the shared memory are cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CacheMode {
    /// Write-back, the default.
    WriteBack,
    /// Write-combining.
    WriteCombining,
    /// Uncached (UC-).
    Uncached,
}

impl CacheMode {
    /// The protection bits for this mode, starting from `prot`, marked
    /// decrypted: the memory is shared with the host, so a confidential
    /// guest must not map it private.
    pub(crate) fn pgprot(self, prot: bindings::pgprot_t) -> bindings::pgprot_t {
        let prot = match self {
            Self::WriteBack => prot,
            // SAFETY: A pure function of its argument.
            Self::WriteCombining => unsafe { helpers::ivshmem_pgprot_writecombine(prot) },
            // SAFETY: A pure function of its argument.
            Self::Uncached => unsafe { helpers::ivshmem_pgprot_noncached(prot) },
        };
        // SAFETY: A pure function of its argument.
        unsafe { helpers::ivshmem_pgprot_decrypted(prot) }
    }
}

/// A memtype reservation of a physical range in one cache mode.
///
/// # Invariants
///
/// `cookie` is the non-null result of an `ioremap*()` of the range, which is
/// unmapped (and the reservation released) exactly once, on drop.
pub(crate) struct Memtype {
    cookie: *mut c_void,
    mode: CacheMode,
}

// SAFETY: The cookie is only used to release the reservation, which may
// happen on any thread.
unsafe impl Send for Memtype {}
// SAFETY: No method reads or writes through the cookie.
unsafe impl Sync for Memtype {}

impl Memtype {
    /// Reserves `[phys, phys + len)` as `mode`. Fails with `EBUSY` when the
    /// range is reserved with a conflicting mode (or, indistinguishably,
    /// when the kernel mapping cannot be made). The effective mode can be
    /// weaker than `mode` without an error: firmware MTRRs turn write-back
    /// into UC-, an existing UC- reservation is shared by a WC request.
    ///
    /// # Safety
    ///
    /// The range must be I/O memory the caller owns (a BAR it reserved),
    /// as it gets mapped into the kernel, although never accessed.
    pub(crate) unsafe fn reserve(phys: u64, len: u64, mode: CacheMode) -> Result<Self> {
        let size = usize::try_from(len)?;
        // SAFETY: The caller's range is a BAR of its device; the ioremap
        // family accepts any physical range and fails cleanly on conflicts.
        let cookie = unsafe {
            match mode {
                CacheMode::WriteBack => bindings::ioremap_cache(phys, size),
                CacheMode::WriteCombining => bindings::ioremap_wc(phys, size),
                CacheMode::Uncached => bindings::ioremap(phys, size),
            }
        };
        if cookie.is_null() {
            return Err(EBUSY);
        }
        // INVARIANT: `cookie` is the non-null result of an ioremap.
        Ok(Self { cookie, mode })
    }

    /// The reserved mode.
    pub(crate) fn mode(&self) -> CacheMode {
        self.mode
    }
}

impl Drop for Memtype {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `cookie` came from ioremap and is
        // unmapped only here.
        unsafe { bindings::iounmap(self.cookie) };
    }
}
