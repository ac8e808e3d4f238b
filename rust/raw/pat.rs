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

use super::{
    helpers,
    vma::IoWindow, //
};
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

/// A memtype reservation of an [`IoWindow`]'s range in one cache mode.
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
    /// Reserves `window`'s range as `mode`. Fails with `EBUSY` when the
    /// range is reserved with a conflicting mode (or, indistinguishably,
    /// when the kernel mapping cannot be made). The effective mode can be
    /// weaker than `mode` without an error: firmware MTRRs turn write-back
    /// into UC-, an existing UC- reservation is shared by a WC request.
    fn reserve(window: &IoWindow, mode: CacheMode) -> Result<Self> {
        let phys = window.phys();
        let size = window.len();
        // SAFETY: By the `IoWindow` invariant the range is I/O memory (a
        // BAR) the driver reserved; it is mapped into the kernel to hold
        // the memtype, never accessed. The ioremap family accepts any
        // physical range and fails cleanly on conflicts.
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

/// The memtype of a BAR that user space maps: at most one reservation, in
/// one cache mode at a time. The one owner of a BAR's memtype: the driver
/// asks it for a mode and it reserves, replaces or releases.
pub(crate) struct BarMemtype {
    window: IoWindow,
    reserved: Option<Memtype>,
}

impl BarMemtype {
    /// Nothing reserved yet for the BAR under `window`.
    pub(crate) fn new(window: IoWindow) -> Self {
        Self {
            window,
            reserved: None,
        }
    }

    /// The reserved mode, if any.
    pub(crate) fn mode(&self) -> Option<CacheMode> {
        self.reserved.as_ref().map(Memtype::mode)
    }

    /// Makes the reservation `mode`. A reservation of another mode is
    /// released first (the two would conflict); if the new one cannot be
    /// made, nothing is reserved. See [`Memtype`] for the errors.
    pub(crate) fn reserve(&mut self, mode: CacheMode) -> Result {
        if self.mode() == Some(mode) {
            return Ok(());
        }
        self.reserved = None;
        self.reserved = Some(Memtype::reserve(&self.window, mode)?);
        Ok(())
    }

    /// Releases the reservation, if any.
    pub(crate) fn release(&mut self) {
        self.reserved = None;
    }
}
