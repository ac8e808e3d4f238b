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

/// What `ivshmem_ioremap_cache_mode()` returns: its header's
/// `IVSHMEM_PCM_*` (bindgen is told to generate no constants).
const PCM_WB: u32 = 0;
const PCM_WC: u32 = 1;
const PCM_UC: u32 = 2;
const PCM_NO_PAT: u32 = 4;

/// A memtype reservation of an [`IoWindow`]'s range, in the cache mode it
/// really holds, which can differ from the one asked for.
///
/// # Invariants
///
/// `cookie` is the non-null result of an `ioremap*()` of the range, which is
/// unmapped (and the reservation released) exactly once, on drop. `held` is
/// the cache mode of that mapping, hence of the reservation.
pub(crate) struct Memtype {
    cookie: *mut c_void,
    requested: CacheMode,
    held: CacheMode,
}

// SAFETY: The cookie is only used to release the reservation, which may
// happen on any thread.
unsafe impl Send for Memtype {}
// SAFETY: No method reads or writes through the cookie.
unsafe impl Sync for Memtype {}

impl Memtype {
    /// Reserves `window`'s range, asking for `mode`. Fails with `EBUSY` when
    /// the range is reserved with a conflicting mode (or, indistinguishably,
    /// when the kernel mapping cannot be made), and when what was reserved
    /// is none of the driver's modes (write-through, write-protect). What is
    /// held can be weaker than `mode` without an error: firmware MTRRs turn
    /// write-back into UC-, an existing UC- reservation is shared by a WC
    /// request; [`Memtype::mode`] says what it is.
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
        // SAFETY: `cookie` is a live kernel mapping just made by ioremap; the
        // helper only looks up its page-table entry.
        let pcm = unsafe { helpers::ivshmem_ioremap_cache_mode(cookie) };
        let held = match u32::try_from(pcm) {
            Ok(PCM_WB) => Some(CacheMode::WriteBack),
            Ok(PCM_WC) => Some(CacheMode::WriteCombining),
            Ok(PCM_UC) => Some(CacheMode::Uncached),
            Ok(PCM_NO_PAT) => Some(mode),
            _ => None,
        };
        let Some(held) = held else {
            // SAFETY: `cookie` came from ioremap just above and is not kept.
            unsafe { bindings::iounmap(cookie) };
            return Err(EBUSY);
        };
        // INVARIANT: `cookie` is the non-null result of an ioremap, whose
        // kernel mapping has cache mode `held`.
        Ok(Self {
            cookie,
            requested: mode,
            held,
        })
    }

    /// The mode really held (not necessarily the one asked for).
    pub(crate) fn mode(&self) -> CacheMode {
        self.held
    }

    /// Whether a mapping asking for `mode` gets what this reservation
    /// holds: it was asked for with `mode` (the same request gives the
    /// same result), or it holds `mode`.
    fn serves(&self, mode: CacheMode) -> bool {
        self.requested == mode || self.held == mode
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

    /// The mode really held, if anything is reserved: user mappings of the
    /// BAR must use it, whatever mode they asked for.
    pub(crate) fn mode(&self) -> Option<CacheMode> {
        self.reserved.as_ref().map(Memtype::mode)
    }

    /// Whether a mapping asking for `mode` can use the reservation held
    /// now without replacing it (see [`Memtype::serves`]).
    pub(crate) fn serves(&self, mode: CacheMode) -> bool {
        self.reserved.as_ref().is_some_and(|m| m.serves(mode))
    }

    /// Makes the reservation one that serves `mode`. A reservation that
    /// does not is released first (the two would conflict); if the new one
    /// cannot be made, nothing is reserved. See [`Memtype`] for the errors.
    pub(crate) fn reserve(&mut self, mode: CacheMode) -> Result {
        if self.serves(mode) {
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
