// SPDX-License-Identifier: GPL-2.0

//! The shared memory device: what `/dev/ivshmemN` offers.
//!
//! [`Shm`] is the state of one device, shared (through an `Arc`) by the
//! PCI binding, the misc device, every open file and every mapping. When
//! the device goes away, [`Shm::revoke`] marks it gone and zaps every user
//! mapping under the same lock the fault handler takes: from then on,
//! calls on open files fail with `ENODEV` and accesses to old mappings
//! raise SIGBUS. The `Arc` keeps the state itself alive until the last
//! file and mapping are gone.

use crate::raw::{
    mappings::{
        Mapping,
        Mappings, //
    },
    miscdev::FileOps,
    pat::{
        CacheMode,
        Memtype, //
    },
    pci::Address,
    vma::{
        self,
        FaultKind,
        IoMap,
        IoWindow, //
    },
};
use crate::{
    regs,
    uapi, //
};
use core::fmt;
use kernel::{
    fs::File,
    ioctl::{
        _IOC_DIR,
        _IOC_NR,
        _IOC_SIZE,
        _IOC_TYPE, //
    },
    mm::virt::VmaNew,
    new_mutex, pci,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc, Mutex,
    },
    transmute::AsBytes,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

const PAGE_SIZE: usize = kernel::page::PAGE_SIZE;

/// Facts about a device, fixed at probe.
pub(crate) struct Facts {
    /// N of `/dev/ivshmemN`.
    pub(crate) index: usize,
    /// Bytes of shared memory (BAR2).
    pub(crate) size: u64,
    /// Physical address of BAR2.
    pub(crate) phys: u64,
    /// PCI revision.
    pub(crate) revision: u8,
    /// MSI-X table size; 0 on `ivshmem-plain`.
    pub(crate) vectors: u16,
    /// PCI address.
    pub(crate) address: Address,
    /// PCI subsystem vendor id.
    pub(crate) subsystem_vendor: u16,
    /// PCI subsystem id.
    pub(crate) subsystem_device: u16,
}

impl Facts {
    fn features(&self) -> u32 {
        if self.vectors > 0 {
            uapi::FEATURE_DOORBELL | uapi::FEATURE_MSIX
        } else {
            0
        }
    }
}

/// What changes when the device goes away, under [`Shm::live`].
pub(crate) struct Live {
    /// The device is gone: no new mapping, fault or call succeeds.
    gone: bool,
    /// The memtype reserved for BAR2 while any VMA maps it.
    memtype: Option<Memtype>,
    /// The VMAs, by address space, to zap them.
    mappings: Mappings,
}

/// One ivshmem device.
#[pin_data]
pub(crate) struct Shm {
    facts: Facts,
    window: IoWindow,
    bar0: pci::DevresBar<{ regs::BAR0_SIZE }>,
    #[pin]
    live: Mutex<Live>,
    /// Entries inserted by faults: PTEs, PMDs, PUDs.
    faults: [Atomic<u64>; 3],
}

impl Shm {
    /// The state of a newly probed device. `window` must cover BAR2.
    pub(crate) fn new(
        facts: Facts,
        window: IoWindow,
        bar0: pci::DevresBar<{ regs::BAR0_SIZE }>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            facts,
            window,
            bar0,
            live <- new_mutex!(Live {
                gone: false,
                memtype: None,
                mappings: Mappings::new(),
            }),
            faults: [const { Atomic::new(0) }; 3],
        })
    }

    /// The device is going away: refuse everything from now on and zap
    /// every user mapping. Called on unbind, before BAR2 is released.
    pub(crate) fn revoke(&self) {
        let mut live = self.live.lock();
        live.gone = true;
        live.mappings.zap_all();
        // Nothing maps BAR2 any more and nothing can fault it back in.
        live.memtype = None;
    }

    fn check_alive(&self) -> Result {
        if self.live.lock().gone {
            Err(ENODEV)
        } else {
            Ok(())
        }
    }

    /// IVPosition, read from the device.
    fn ivposition(&self) -> Result<i32> {
        self.bar0
            .try_access()
            .map(|bar| regs::ivposition(&bar))
            .ok_or(ENODEV)
    }

    fn info(&self) -> Result<uapi::Info> {
        let f = &self.facts;
        let ivposition = self.ivposition()?;
        Ok(uapi::Info {
            size: f.size,
            ivposition,
            vectors: f.vectors.into(),
            features: f.features(),
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

impl IoMap for Shm {
    type Guard<'a> = kernel::sync::MutexGuard<'a, Live>;

    fn lock(&self) -> Option<(Self::Guard<'_>, IoWindow)> {
        let live = self.live.lock();
        if live.gone {
            None
        } else {
            Some((live, self.window))
        }
    }

    fn faulted(&self, kind: FaultKind) {
        let i = match kind {
            FaultKind::Pte => 0,
            FaultKind::Pmd => 1,
            FaultKind::Pud => 2,
        };
        self.faults[i].fetch_add(1, Relaxed);
    }

    fn vma_opened(&self, m: Mapping) {
        // A failed allocation leaves the copy uncounted: it is then not
        // zapped on removal. Never seen; warn if it happens.
        if self.live.lock().mappings.add(m).is_err() {
            pr_warn!("ivshmem: out of memory counting a mapping\n");
        }
    }

    fn vma_closed(&self, m: Mapping) {
        let mut live = self.live.lock();
        live.mappings.remove(m);
        if live.mappings.is_empty() {
            // The last mapping is gone: another cache mode may be used.
            live.memtype = None;
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

/// An open `/dev/ivshmemN`.
pub(crate) struct OpenFile {
    shm: Arc<Shm>,
    /// `uapi::CACHE_*` for later mmaps.
    cache: Atomic<u32>,
}

impl OpenFile {
    fn cache_mode(&self) -> CacheMode {
        match self.cache.load(Relaxed) {
            uapi::CACHE_WC => CacheMode::WriteCombining,
            uapi::CACHE_UC => CacheMode::Uncached,
            _ => CacheMode::WriteBack,
        }
    }

    /// `IVSHMEM_IOCTL_INFO`: copies as much of the info as the caller's
    /// structure holds, zero-filling any part newer than this driver.
    fn ioctl_info(&self, arg: usize, size: usize) -> Result {
        let info = self.shm.info()?;
        let bytes = info.as_bytes();
        if size < bytes.len() {
            return Err(EINVAL);
        }
        let mut w = UserSlice::new(UserPtr::from_addr(arg), size).writer();
        w.write_slice(bytes)?;
        let zeros = [0u8; 64];
        let mut left = size - bytes.len();
        while left > 0 {
            let n = left.min(zeros.len());
            w.write_slice(&zeros[..n])?;
            left -= n;
        }
        Ok(())
    }

    /// `IVSHMEM_IOCTL_SET_CACHE`.
    fn ioctl_set_cache(&self, arg: usize, size: usize) -> Result {
        let known = core::mem::size_of::<uapi::Cache>();
        if size < known {
            return Err(EINVAL);
        }
        let mut r = UserSlice::new(UserPtr::from_addr(arg), size).reader();
        let req: uapi::Cache = r.read()?;
        // A newer caller's extra fields must be zero: we cannot honour them.
        let mut rest = [0u8; 64];
        while !r.is_empty() {
            let n = r.len().min(rest.len());
            r.read_slice(&mut rest[..n])?;
            if rest[..n].iter().any(|b| *b != 0) {
                return Err(E2BIG);
            }
        }
        if req.flags != 0 || req.reserved != 0 {
            return Err(EINVAL);
        }
        match req.mode {
            uapi::CACHE_WB | uapi::CACHE_WC | uapi::CACHE_UC => {
                self.cache.store(req.mode, Relaxed);
                Ok(())
            }
            _ => Err(EINVAL),
        }
    }
}

/// Undoes the counting of a VMA that was not installed after all.
fn self_uncount(shm: &Shm, m: Mapping) {
    shm.vma_closed(m);
}

/// The file operations of `/dev/ivshmemN`.
pub(crate) struct ShmFile;

impl FileOps for ShmFile {
    type Device = Arc<Shm>;
    type Ptr = KBox<OpenFile>;

    fn open(shm: &Arc<Shm>, _file: &File) -> Result<KBox<OpenFile>> {
        shm.check_alive()?;
        KBox::new(
            OpenFile {
                shm: shm.clone(),
                cache: Atomic::new(uapi::CACHE_WB),
            },
            GFP_KERNEL,
        )
        .map_err(Into::into)
    }

    fn mmap(this: &OpenFile, file: &File, vma: &VmaNew) -> Result {
        let shm = &this.shm;
        // Private copies of device memory make no sense.
        vma::check_shared(vma)?;
        check_range(vma::pgoff(vma), vma.end() - vma.start(), shm.facts.size)?;
        // A revision 0 device has no memory before IVPosition is set.
        if shm.ivposition()? < 0 {
            return Err(EAGAIN);
        }
        let mode = this.cache_mode();
        let m = Mapping::of_file(file)?;
        let mut live = shm.live.lock();
        if live.gone {
            return Err(ENODEV);
        }
        match &live.memtype {
            Some(t) if t.mode() != mode => return Err(EBUSY),
            Some(_) => {}
            None => {
                // SAFETY: BAR2 is reserved by this driver while `Shm` is
                // not revoked, which `live.gone` says it is not.
                let t = unsafe { Memtype::reserve(shm.facts.phys, shm.facts.size, mode)? };
                live.memtype = Some(t);
            }
        }
        if let Err(e) = live.mappings.add(m) {
            if live.mappings.is_empty() {
                live.memtype = None;
            }
            return Err(e);
        }
        drop(live);
        // Cannot fail: the VMA was checked to be shared above.
        vma::install(vma, shm.clone(), mode).inspect_err(|_| self_uncount(shm, m))
    }

    fn ioctl(this: &OpenFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        if _IOC_TYPE(cmd) != uapi::MAGIC {
            return Err(ENOTTY);
        }
        this.shm.check_alive()?;
        let size = _IOC_SIZE(cmd);
        // The size may differ from ours (see `uapi`); number and direction
        // must match.
        let is = |known: u32| _IOC_NR(cmd) == _IOC_NR(known) && _IOC_DIR(cmd) == _IOC_DIR(known);
        if is(uapi::IOCTL_INFO) {
            this.ioctl_info(arg, size)?;
        } else if is(uapi::IOCTL_SET_CACHE) {
            this.ioctl_set_cache(arg, size)?;
        } else {
            return Err(ENOTTY);
        }
        Ok(0)
    }

    fn show(shm: &Arc<Shm>, name: &CStr, out: &mut dyn fmt::Write) -> Result {
        let f = &shm.facts;
        let r = match name.to_bytes() {
            b"size" => write!(out, "{}", f.size),
            b"ivposition" => write!(out, "{}", shm.ivposition()?),
            b"vectors" => write!(out, "{}", f.vectors),
            b"revision" => write!(out, "{}", f.revision),
            b"features" => match f.features() {
                0 => write!(out, "plain"),
                _ => write!(out, "doorbell msix"),
            },
            b"faults" => write!(
                out,
                "pte {} pmd {} pud {}",
                shm.faults[0].load(Relaxed),
                shm.faults[1].load(Relaxed),
                shm.faults[2].load(Relaxed)
            ),
            _ => return Err(EINVAL),
        };
        r.map_err(|_| EINVAL)
    }
}

crate::raw::miscdev::misc_attribute_groups!(
    ATTRIBUTES: ShmFile = [c"size", c"ivposition", c"vectors", c"revision", c"features", c"faults"]
);

/// The sysfs attributes of `/dev/ivshmemN`.
pub(crate) fn attributes() -> &'static crate::raw::miscdev::Groups {
    &ATTRIBUTES
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
