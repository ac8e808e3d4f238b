// SPDX-License-Identifier: GPL-2.0

//! The state of one ivshmem device: its facts, its mappings and the
//! memtype of BAR2, and how it goes away.
//!
//! [`Device`] is shared (through an `Arc`) by the PCI binding, the misc
//! device, every open file and every mapping. When the device goes away,
//! [`Device::revoke`] marks it gone and zaps every user mapping while it
//! holds [`Device::present`] for writing; page faults hold it for reading,
//! so they run side by side on every CPU, and none can insert an entry
//! after the zap. From then on, calls on open files fail with `ENODEV` and accesses
//! to old mappings raise SIGBUS. The `Arc` keeps the state itself alive
//! until the last file and mapping are gone. The file operations are in
//! [`crate::file`], the doorbells in [`crate::doorbell`], the interrupt
//! handlers in [`crate::interrupts`].
//!
//! Locks, outermost first; `open` (under the global `misc_mtx`) and the
//! ioctls, which check an atomic flag, take none of them (on a doorbell
//! device, `open`, `read`, `poll`, the `SET_MASK` and eventfd ioctls and
//! `release` take only `Events::state`, the interrupt-disabling spin lock
//! of [`crate::doorbell`]):
//! - `mmap_lock` or the VMA lock (held by the mm around faults, `mmap`,
//!   VMA open and close);
//! - [`Device::present`], a reader-writer semaphore: read by faults,
//!   written by [`Device::revoke`] only;
//! - [`Device::maps`], a mutex: the memtype and the address spaces to zap,
//!   taken by `mmap`, VMA open and close, and revoke.

use crate::doorbell::Events;
use crate::raw::helpers;
use crate::raw::{
    self,
    dmabuf::DmaBufs,
    mappings::{
        Mapping,
        Mappings, //
    },
    pat::{
        BarMemtype,
        CacheMode, //
    },
    pci::Address,
    rwsem::{
        new_rwsem,
        ReadGuard,
        RwSem, //
    },
    vma::{
        self,
        FaultKind,
        IoMap,
        IoWindow, //
    },
};
use crate::{
    compat,
    regs,
    uapi, //
};
use kernel::{
    device::Core,
    fs::{
        file::flags::{
            O_ACCMODE,
            O_RDONLY, //
        },
        File, //
    },
    mm::virt::VmaNew,
    new_mutex, pci,
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        Arc, Mutex,
    },
};

const PAGE_SIZE: usize = kernel::page::PAGE_SIZE;

/// The page offset of the doorbell page, `IVSHMEM_DOORBELL_MMAP_OFFSET` in
/// pages.
// CAST: 1 << 52 in pages fits a `usize` on 64-bit kernels (the only ones
// that can map BARs past 4 GiB, and the only ones this driver builds for).
const DOORBELL_MMAP_PGOFF: usize =
    (uapi::DOORBELL_MMAP_OFFSET >> kernel::page::PAGE_SHIFT) as usize;

/// Facts about a device, fixed at probe.
pub(crate) struct Facts {
    /// N of `/dev/ivshmemN`.
    pub(crate) index: usize,
    /// Bytes of shared memory (BAR2).
    pub(crate) size: u64,
    /// PCI revision.
    pub(crate) revision: u8,
    /// MSI-X table size; 0 on `ivshmem-plain`. Not all of them need be
    /// usable: see [`Events::vectors`].
    pub(crate) vectors: u16,
    /// Doorbells arrive on INTx (a revision 0 device without MSI-X).
    pub(crate) intx: bool,
    /// PCI address.
    pub(crate) address: Address,
    /// PCI subsystem vendor id.
    pub(crate) subsystem_vendor: u16,
    /// PCI subsystem id.
    pub(crate) subsystem_device: u16,
}

impl Facts {
    /// The facts of `pdev`, a device whose BAR2 has `size` bytes, with an
    /// MSI-X table of `vectors` (or INTx, `intx`), numbered `index`.
    pub(crate) fn read(
        pdev: &pci::Device<Core<'_>>,
        index: usize,
        size: u64,
        vectors: u16,
        intx: bool,
    ) -> Self {
        Self {
            index,
            size,
            revision: pdev.revision_id(),
            vectors,
            intx,
            address: raw::pci::address(pdev),
            subsystem_vendor: pdev.subsystem_vendor_id(),
            subsystem_device: pdev.subsystem_device_id(),
        }
    }

    /// How many interrupt vectors to set up: INTx has one; QEMU honours 8
    /// bits of the vector, so more than [`uapi::MAX_VECTORS`] could never
    /// be rung.
    pub(crate) fn nvec(&self) -> usize {
        if self.intx {
            1
        } else {
            usize::from(self.vectors).min(uapi::MAX_VECTORS)
        }
    }

    /// Whether peers can be rung (`ivshmem-doorbell`), whether or not any
    /// interrupt vector could be set up to receive.
    pub(crate) fn doorbell(&self) -> bool {
        self.vectors > 0 || self.intx
    }

    pub(crate) fn features(&self) -> u32 {
        if self.vectors > 0 {
            uapi::FEATURE_DOORBELL | uapi::FEATURE_MSIX
        } else if self.intx {
            uapi::FEATURE_DOORBELL | uapi::FEATURE_INTX
        } else {
            0
        }
    }
}

/// The user mappings of BAR2, under [`Device::maps`].
pub(crate) struct Maps {
    /// VMAs of BAR2 (not of the doorbell page): while there are any, the
    /// memtype cannot change.
    bar2: usize,
    /// The memtype reserved for BAR2: write-back from probe
    /// ([`Device::reserve_default`]), then the mode of the latest first
    /// mapping; mappings use the mode it really holds, and a request it
    /// serves (see [`BarMemtype::serves`]) is no conflict. It is kept when
    /// the last mapping goes, and replaced only by a first mapping with
    /// another mode, so that mapping the device again in the same mode
    /// reserves nothing (an `ioremap` of the whole BAR).
    /// Released by [`Device::revoke`].
    memtype: BarMemtype,
    /// The VMAs, by address space, to zap them.
    mappings: Mappings,
}

/// One ivshmem device.
#[pin_data]
pub(crate) struct Device {
    facts: Facts,
    /// The device is gone (set by [`Device::revoke`]): every call on an
    /// open file fails with `ENODEV`, before anything else is checked.
    gone: Atomic<bool>,
    /// IVPosition, once it has read as valid (>= 0). It cannot change
    /// after that, and a device that is surprise-removed reads -1.
    ivposition: Atomic<i32>,
    window: IoWindow,
    /// The page of BAR0 (the registers) that user space may map to ring
    /// peers without a system call, at [`DOORBELL_MMAP_PGOFF`]: only
    /// on MSI-X devices (on INTx ones the interrupt registers in it are
    /// the driver's), and only when the rest of its page is reserved.
    doorbell_page: Option<IoWindow>,
    bar0: compat::DevresBar<{ regs::BAR0_SIZE }>,
    /// Whether BAR2 may still be mapped: held for reading by page faults,
    /// for writing by [`Device::revoke`] to zap the mappings.
    #[pin]
    present: RwSem<bool>,
    /// The mappings' bookkeeping.
    #[pin]
    maps: Mutex<Maps>,
    /// Entries inserted by faults: PTEs, PMDs, PUDs.
    faults: [Atomic<u64>; 3],
    /// Doorbells received.
    #[pin]
    events: Events,
    /// The dma-bufs of BAR2 (`KVMFR_DMABUF_CREATE`), revoked with the
    /// device.
    dmabufs: DmaBufs,
}

impl Device {
    /// The state of a device being probed, `/dev/{name}`, as shared with
    /// its files and mappings: logs what the device is, and reserves BAR2's
    /// default memtype ([`Device::reserve_default`]). `window` covers BAR2,
    /// `doorbell_page` BAR0's page, if user space may map it; `ivposition`
    /// is IVPosition as read at probe; up to [`Facts::nvec`] vectors can be
    /// made usable ([`Events::set_usable`]).
    pub(crate) fn probe(
        pdev: &pci::Device<Core<'_>>,
        name: &CStr,
        facts: Facts,
        window: IoWindow,
        doorbell_page: Option<IoWindow>,
        bar0: compat::DevresBar<{ regs::BAR0_SIZE }>,
        ivposition: i32,
    ) -> Result<Arc<Self>> {
        dev_info!(
            pdev,
            "{}: revision {}, {} bytes of shared memory, IVPosition {}, MSI-X table of {}\n",
            name.to_str()?,
            facts.revision,
            facts.size,
            ivposition,
            facts.vectors
        );
        let nvec = facts.nvec();
        let events = Events::new(nvec)?;
        let memtype = BarMemtype::new(window);
        let dmabufs = DmaBufs::new(pdev, regs::SHM_BAR)?;
        let dev = Arc::pin_init(
            try_pin_init!(Self {
                facts,
                gone: Atomic::new(false),
                ivposition: Atomic::new(ivposition),
                window,
                doorbell_page: doorbell_page.map(|w| w.at_pgoff(DOORBELL_MMAP_PGOFF)),
                bar0,
                present <- new_rwsem!(true, "ivshmem_present"),
                maps <- new_mutex!(Maps {
                    bar2: 0,
                    memtype,
                    mappings: Mappings::new(),
                }),
                faults: [const { Atomic::new(0) }; 3],
                events <- events,
                dmabufs,
            }),
            GFP_KERNEL,
        )?;
        dev.reserve_default();
        Ok(dev)
    }

    /// The device is going away: refuse everything from now on and zap
    /// every user mapping. Called on unbind, before BAR2 is released.
    pub(crate) fn revoke(&self) {
        let mut present = self.present.write();
        *present = false;
        // New mmaps check this under `maps`, taken below.
        self.gone.store(true, Release);
        let mut maps = self.maps.lock();
        maps.mappings.zap_all();
        // Nothing maps BAR2 any more and nothing can fault it back in.
        maps.memtype.release();
        drop(maps);
        drop(present);
        // Blocked readers return ENODEV, pollers see EPOLLHUP | EPOLLERR.
        self.events.revoke();
        // Device importers of its dma-bufs are told and unmap (their CPU
        // mappings were zapped above, with the node's).
        self.dmabufs.revoke();
    }

    /// The dma-bufs of BAR2.
    pub(crate) fn dmabufs(&self) -> &DmaBufs {
        &self.dmabufs
    }

    /// Rings `vector` of `peer`. Earlier writes of the caller (to shared
    /// memory, through any mapping) reach memory before the doorbell.
    pub(crate) fn ring(&self, peer: u16, vector: u16) -> Result {
        let bar = self.bar0.try_access().ok_or(ENODEV)?;
        // `writel` orders earlier writes to ordinary memory, but not
        // write-combined ones on every CPU: a full write barrier does.
        helpers::wmb();
        regs::ring(&bar, peer, vector);
        Ok(())
    }

    /// `ENODEV` once the device is gone. Takes no lock.
    pub(crate) fn check_alive(&self) -> Result {
        if self.gone.load(Acquire) {
            Err(ENODEV)
        } else {
            Ok(())
        }
    }

    /// The events of a device that receives doorbells; `EOPNOTSUPP` on
    /// ivshmem-plain, and on a doorbell device none of whose interrupt
    /// vectors could be set up.
    pub(crate) fn events(&self) -> Result<&Events> {
        match self.events.vectors() {
            0 => Err(compat::eopnotsupp()),
            _ => Ok(&self.events),
        }
    }

    /// The doorbell state, whether or not the device receives on any
    /// vector (a new file starts from it).
    pub(crate) fn event_state(&self) -> &Events {
        &self.events
    }

    /// The registers (BAR0), while the device is bound.
    pub(crate) fn regs(&self) -> &compat::DevresBar<{ regs::BAR0_SIZE }> {
        &self.bar0
    }

    /// The facts fixed at probe.
    pub(crate) fn facts(&self) -> &Facts {
        &self.facts
    }

    /// Entries inserted by faults so far: PTEs, PMDs, PUDs.
    pub(crate) fn fault_counts(&self) -> [u64; 3] {
        [
            self.faults[0].load(Relaxed),
            self.faults[1].load(Relaxed),
            self.faults[2].load(Relaxed),
        ]
    }

    /// The vectors the device receives on (INFO and sysfs `vectors`).
    pub(crate) fn usable_vectors(&self) -> usize {
        self.events.vectors()
    }

    /// Records that the first `n` vectors have interrupt handlers.
    pub(crate) fn set_usable_vectors(&self, n: usize) {
        self.events.set_usable(n);
    }

    /// The doorbell page, when user space may map it: only once MSI-X
    /// vectors were really allocated and have handlers. With INTx (or
    /// `pci=nomsi`, or no vectors at all) a store to IntrMask or IntrStatus
    /// in that page could raise an interrupt nobody handles, and the
    /// kernel disables the line ("nobody cared").
    fn doorbell_page(&self) -> Option<IoWindow> {
        self.doorbell_page
            .filter(|_| !self.facts.intx && self.usable_vectors() > 0)
    }

    /// IVPosition: cached once valid; read from the device until then
    /// (revision 0 devices read -1 until their memory has arrived).
    pub(crate) fn ivposition(&self) -> Result<i32> {
        let cached = self.ivposition.load(Relaxed);
        if cached >= 0 {
            return Ok(cached);
        }
        let now = self
            .bar0
            .try_access()
            .map(|bar| regs::ivposition(&bar))
            .ok_or(ENODEV)?;
        if now >= 0 {
            self.ivposition.store(now, Relaxed);
        }
        Ok(now)
    }

    pub(crate) fn info(&self) -> Result<uapi::Info> {
        let f = &self.facts;
        let ivposition = self.ivposition()?;
        Ok(uapi::Info {
            size: f.size,
            ivposition,
            vectors: u32::try_from(self.usable_vectors())?,
            features: f.features()
                | if self.doorbell_page().is_some() {
                    uapi::FEATURE_DOORBELL_MMAP
                } else {
                    0
                },
            flags: if ivposition < 0 {
                uapi::INFO_NOT_READY
            } else {
                0
            },
            index: u32::try_from(f.index)?,
            revision: f.revision,
            pci_bus: f.address.bus,
            pci_devfn: f.address.devfn,
            pci_domain: f.address.domain,
            subsystem_vendor: f.subsystem_vendor,
            subsystem_device: f.subsystem_device,
            ..Default::default()
        })
    }
}

impl IoMap for Device {
    type Guard<'a> = ReadGuard<'a, bool>;

    fn lock(&self, pgoff: usize) -> Option<(Self::Guard<'_>, IoWindow)> {
        let present = self.present.read();
        if !*present {
            return None;
        }
        let window = if is_doorbell_page(pgoff) {
            self.doorbell_page()?
        } else {
            self.window
        };
        Some((present, window))
    }

    fn faulted(&self, kind: FaultKind) {
        let i = match kind {
            FaultKind::Pte => 0,
            FaultKind::Pmd => 1,
            FaultKind::Pud => 2,
        };
        self.faults[i].fetch_add(1, Relaxed);
    }

    fn vma_opened(&self, m: Mapping, pgoff: usize) {
        let mut maps = self.maps.lock();
        if !is_doorbell_page(pgoff) {
            maps.bar2 += 1;
        }
        // A failed allocation leaves the copy uncounted: it is then not
        // zapped on removal. Never seen; warn if it happens.
        if maps.mappings.add(m).is_err() {
            pr_warn!("ivshmem: out of memory counting a mapping\n");
        }
    }

    fn vma_closed(&self, m: Mapping, pgoff: usize) {
        let mut maps = self.maps.lock();
        maps.mappings.remove(m);
        if !is_doorbell_page(pgoff) {
            // The memtype stays: the next first mapping replaces it if it
            // wants another mode.
            maps.bar2 = maps.bar2.saturating_sub(1);
        }
    }
}

/// Checks an mmap request of `len` bytes at page offset `pgoff` against a
/// BAR of `size` bytes, overflow-safely. Returns the byte offset.
fn check_range(pgoff: usize, len: usize, size: u64) -> Result<u64> {
    let offset = pgoff.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
    let end = offset.checked_add(len).ok_or(EINVAL)?;
    if len == 0 || u64::try_from(end)? > size {
        return Err(EINVAL);
    }
    Ok(u64::try_from(offset)?)
}

/// Whether file page `pgoff` is the doorbell page rather than BAR2.
fn is_doorbell_page(pgoff: usize) -> bool {
    pgoff >= DOORBELL_MMAP_PGOFF
}

/// Undoes the counting of a VMA that was not installed after all.
fn self_uncount(dev: &Device, m: Mapping, pgoff: usize) {
    dev.vma_closed(m, pgoff);
}

impl Device {
    /// Reserves BAR2's memtype for the default mode (write-back) at probe,
    /// so that the first mmap does not pay for an `ioremap` of the whole
    /// BAR. Best effort: if it cannot be made (a conflicting reservation,
    /// no room for the kernel mapping), the first mmap tries again and
    /// reports the error.
    pub(crate) fn reserve_default(&self) {
        let mut maps = self.maps.lock();
        if maps.memtype.mode().is_some() || self.check_alive().is_err() {
            return;
        }
        // `revoke` has not taken `maps` yet (`gone` is not set): BAR2 is
        // still reserved, and `revoke` releases the memtype when it does.
        if let Err(e) = maps.memtype.reserve(CacheMode::WriteBack) {
            pr_info!(
                "ivshmem{}: BAR2 memtype not reserved at probe ({:?}); the first mmap will try\n",
                self.facts.index,
                e
            );
        }
    }

    /// Sets up `vma`, a mapping of `file`, with cache `mode`: checks the
    /// request, makes BAR2's memtype `mode` (`EBUSY` while mappings with
    /// another mode exist; with none, the memtype of another mode is
    /// replaced), counts the mapping to zap it on removal, and installs the
    /// fault handler.
    pub(crate) fn map(dev: &Arc<Self>, file: &File, vma: &VmaNew, mode: CacheMode) -> Result {
        dev.check_alive()?;
        // Private copies of device memory make no sense.
        vma::check_shared(vma)?;
        // Device memory is not code.
        vma::check_noexec(vma)?;
        if vma::pgoff(vma) == DOORBELL_MMAP_PGOFF {
            return Self::map_doorbell_page(dev, file, vma);
        }
        Self::map_bar2(dev, file, vma, mode)
    }

    /// Sets up `vma`, a mapping of the sysfs file `shm` (see
    /// [`crate::file::attributes`]): BAR2 only, write-back, zapped through
    /// a file of the VMA's own (kernfs would wrap the VMA's operations
    /// otherwise).
    pub(crate) fn map_shm(dev: &Arc<Self>, vma: &VmaNew) -> Result {
        dev.check_alive()?;
        vma::check_shared(vma)?;
        vma::check_noexec(vma)?;
        // Before a file is made for it: a request refused anyway costs
        // nothing.
        check_range(vma::pgoff(vma), vma.end() - vma.start(), dev.facts.size)?;
        let file = vma::own_file(vma)?;
        Self::map_bar2(dev, file, vma, CacheMode::WriteBack)
    }

    /// Sets up `vma`, a CPU mapping of a dma-buf exported by
    /// `KVMFR_DMABUF_CREATE` (its page offset already BAR2's), through the
    /// buffer's `file`: as the shm file's, write-back.
    pub(crate) fn map_dmabuf(dev: &Arc<Self>, file: &File, vma: &VmaNew) -> Result {
        dev.check_alive()?;
        vma::check_shared(vma)?;
        vma::check_noexec(vma)?;
        Self::map_bar2(dev, file, vma, CacheMode::WriteBack)
    }

    /// Sets up `vma`, a mapping of BAR2 through `file`, with cache `mode`;
    /// the caller checked that it is shared and not executable.
    fn map_bar2(dev: &Arc<Self>, file: &File, vma: &VmaNew, mode: CacheMode) -> Result {
        let pgoff = vma::pgoff(vma);
        check_range(pgoff, vma.end() - vma.start(), dev.facts.size)?;
        // A revision 0 device has no memory before IVPosition is set.
        if dev.ivposition()? < 0 {
            return Err(EAGAIN);
        }
        let m = Mapping::of_file(file)?;
        let mut maps = dev.maps.lock();
        // Set before `revoke` takes `maps`: if it is not set yet, this
        // mapping is counted before `revoke` zaps, and its faults fail.
        dev.check_alive()?;
        if !maps.memtype.serves(mode) {
            if maps.bar2 != 0 {
                // Mapped with another mode: a second one would alias.
                return Err(EBUSY);
            }
            // Nothing maps BAR2: the reservation of another mode, if any,
            // is replaced. `revoke` has not taken `maps` yet (`gone` is not
            // set) and releases the memtype when it does.
            maps.memtype.reserve(mode)?;
        }
        // The mapping's protection follows the memtype really held (UC-
        // when the MTRRs made a write-back request uncached), not `mode`.
        let held = maps.memtype.mode().ok_or(EBUSY)?;
        maps.mappings.add(m)?;
        maps.bar2 += 1;
        drop(maps);
        // Cannot fail: every caller checked that the VMA is shared and not
        // executable.
        vma::install(vma, dev.clone(), held).inspect_err(|_| self_uncount(dev, m, pgoff))
    }

    /// Sets up `vma` as a mapping of the doorbell page: one page, uncached,
    /// of a file opened for writing (`EACCES` otherwise: ringing is all it
    /// is for), on a device that has one (`EOPNOTSUPP` otherwise).
    fn map_doorbell_page(dev: &Arc<Self>, file: &File, vma: &VmaNew) -> Result {
        if dev.doorbell_page().is_none() {
            return Err(compat::eopnotsupp());
        }
        if vma.end() - vma.start() != PAGE_SIZE {
            return Err(EINVAL);
        }
        if file.flags() & O_ACCMODE == O_RDONLY {
            return Err(EACCES);
        }
        let m = Mapping::of_file(file)?;
        let mut maps = dev.maps.lock();
        // As for BAR2: counted before `revoke` zaps, or refused.
        dev.check_alive()?;
        maps.mappings.add(m)?;
        drop(maps);
        let pgoff = DOORBELL_MMAP_PGOFF;
        // Cannot fail: the VMA was checked to be shared and not executable
        // above.
        vma::install(vma, dev.clone(), CacheMode::Uncached)
            .inspect_err(|_| self_uncount(dev, m, pgoff))
    }
}

#[kunit_tests(ivshmem_shm)]
mod tests {
    use super::*;

    #[test]
    fn mmap_ranges() {
        let mib = 1u64 << 20;
        assert_eq!(check_range(0, 4096, mib), Ok(0));
        assert_eq!(check_range(255, 4096, mib), Ok(255 * 4096));
        assert_eq!(check_range(0, 1 << 20, mib), Ok(0));
        assert_eq!(check_range(256, 4096, mib), Err(EINVAL));
        assert_eq!(check_range(1, 1 << 20, mib), Err(EINVAL));
        assert_eq!(check_range(0, 0, mib), Err(EINVAL));
        assert_eq!(check_range(usize::MAX / 4096 + 1, 4096, mib), Err(EINVAL));
        assert_eq!(check_range(usize::MAX / 4096, 4096, u64::MAX), Err(EINVAL));
    }
}
