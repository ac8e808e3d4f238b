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

use crate::doorbell::{self, Events};
use crate::raw::{
    eventfd::EventFd,
    helpers, //
};
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
    fs::{
        file::flags::{
            O_ACCMODE,
            O_RDONLY, //
        },
        File, //
    },
    ioctl::{
        _IOC_DIR,
        _IOC_NR,
        _IOC_SIZE,
        _IOC_TYPE, //
    },
    mm::virt::VmaNew,
    new_mutex, pci,
    prelude::*,
    sync::poll::PollTable,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        Arc, Mutex,
    },
    transmute::AsBytes,
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceReader,
        UserSliceWriter, //
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
    /// Whether peers can be rung (`ivshmem-doorbell`), whether or not any
    /// interrupt vector could be set up to receive.
    fn doorbell(&self) -> bool {
        self.vectors > 0 || self.intx
    }

    fn features(&self) -> u32 {
        if self.vectors > 0 {
            uapi::FEATURE_DOORBELL | uapi::FEATURE_MSIX
        } else if self.intx {
            uapi::FEATURE_DOORBELL | uapi::FEATURE_INTX
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
    /// The device is gone (set by [`Shm::revoke`]): every call on an open
    /// file fails with `ENODEV`, before anything else is checked.
    gone: Atomic<bool>,
    /// IVPosition, once it has read as valid (>= 0). It cannot change
    /// after that, and a device that is surprise-removed reads -1.
    ivposition: Atomic<i32>,
    window: IoWindow,
    bar0: pci::DevresBar<{ regs::BAR0_SIZE }>,
    #[pin]
    live: Mutex<Live>,
    /// Entries inserted by faults: PTEs, PMDs, PUDs.
    faults: [Atomic<u64>; 3],
    /// Doorbells received.
    #[pin]
    events: Events,
}

/// The interrupt handler of one vector of a device.
pub(crate) struct IrqHandler {
    shm: Arc<Shm>,
    vector: usize,
    intx: bool,
}

impl IrqHandler {
    /// A handler for `vector` (MSI-X), or for the INTx line.
    pub(crate) fn new(shm: Arc<Shm>, vector: usize, intx: bool) -> Self {
        Self { shm, vector, intx }
    }
}

impl kernel::irq::Handler for IrqHandler {
    fn handle(&self) -> kernel::irq::IrqReturn {
        if self.intx {
            // The line may be shared: IntrStatus says whether it is ours.
            match self.shm.bar0.try_access() {
                Some(bar) => doorbell::intx_service(&*bar, &self.shm.events),
                None => kernel::irq::IrqReturn::None,
            }
        } else {
            // MSI-X: the interrupt is ours; IntrStatus is not involved.
            self.shm.events.fire(self.vector);
            kernel::irq::IrqReturn::Handled
        }
    }
}

impl doorbell::IntxDevice for Arc<Shm> {
    fn with_regs(&self, f: &mut dyn FnMut(&dyn doorbell::IntxRegs)) {
        if let Some(bar) = self.bar0.try_access() {
            f(&*bar);
        }
    }
}

impl Shm {
    /// The state of a newly probed device. `window` must cover BAR2;
    /// `ivposition` is IVPosition as read at probe; up to `nvec` vectors
    /// can be made usable ([`Events::set_usable`]).
    pub(crate) fn new(
        facts: Facts,
        window: IoWindow,
        bar0: pci::DevresBar<{ regs::BAR0_SIZE }>,
        ivposition: i32,
        nvec: usize,
    ) -> Result<impl PinInit<Self, Error>> {
        let events = Events::new(nvec)?;
        Ok(try_pin_init!(Self {
            facts,
            gone: Atomic::new(false),
            ivposition: Atomic::new(ivposition),
            window,
            bar0,
            live <- new_mutex!(Live {
                gone: false,
                memtype: None,
                mappings: Mappings::new(),
            }),
            faults: [const { Atomic::new(0) }; 3],
            events <- events,
        }))
    }

    /// The device is going away: refuse everything from now on and zap
    /// every user mapping. Called on unbind, before BAR2 is released.
    pub(crate) fn revoke(&self) {
        let mut live = self.live.lock();
        live.gone = true;
        self.gone.store(true, Release);
        live.mappings.zap_all();
        // Nothing maps BAR2 any more and nothing can fault it back in.
        live.memtype = None;
        drop(live);
        // Blocked readers return ENODEV, pollers see EPOLLHUP | EPOLLERR.
        self.events.revoke();
    }

    /// Rings `vector` of `peer`. Earlier writes of the caller (to shared
    /// memory, through any mapping) reach memory before the doorbell.
    fn ring(&self, peer: u16, vector: u16) -> Result {
        let bar = self.bar0.try_access().ok_or(ENODEV)?;
        // `writel` orders earlier writes to ordinary memory, but not
        // write-combined ones on every CPU: a full write barrier does.
        helpers::wmb();
        regs::ring(&bar, peer, vector);
        Ok(())
    }

    /// `ENODEV` once the device is gone. Takes no lock.
    fn check_alive(&self) -> Result {
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
            0 => Err(EOPNOTSUPP),
            _ => Ok(&self.events),
        }
    }

    /// The vectors the device receives on (INFO and sysfs `vectors`).
    pub(crate) fn usable_vectors(&self) -> usize {
        self.events.vectors()
    }

    /// Records that the first `n` vectors have interrupt handlers.
    pub(crate) fn set_usable_vectors(&self, n: usize) {
        self.events.set_usable(n);
    }

    /// IVPosition: cached once valid; read from the device until then
    /// (revision 0 devices read -1 until their memory has arrived).
    fn ivposition(&self) -> Result<i32> {
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

    fn info(&self) -> Result<uapi::Info> {
        let f = &self.facts;
        let ivposition = self.ivposition()?;
        Ok(uapi::Info {
            size: f.size,
            ivposition,
            vectors: u32::try_from(self.usable_vectors())?,
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
///
/// Readers of one file (threads, `dup`s, forked children) need no lock of
/// their own: `seen`, `mask` and `next` are read and written under the
/// device's [`Events::state`], so each interrupt is reported once per file
/// and a reader never sleeps in a lock that an other reader's wait holds.
pub(crate) struct OpenFile {
    shm: Arc<Shm>,
    /// `uapi::CACHE_*` for later mmaps.
    cache: Atomic<u32>,
    /// Per vector, the interrupt count this file has reported.
    seen: KVec<Atomic<u64>>,
    /// The vectors this file waits on.
    mask: doorbell::Mask,
    /// The vector a read starts its scan at: one past the last reported.
    next: Atomic<usize>,
    /// This file has bound an eventfd (to release on close).
    bound: Atomic<bool>,
}

/// Reads a structure of at least `size_of::<T>()` bytes from user space,
/// requiring any longer tail (a newer caller's fields) to be zero.
fn read_struct<T: kernel::transmute::FromBytes>(arg: usize, size: usize) -> Result<T> {
    if size < core::mem::size_of::<T>() {
        return Err(EINVAL);
    }
    let mut r: UserSliceReader = UserSlice::new(UserPtr::from_addr(arg), size).reader();
    let v: T = r.read()?;
    let mut rest = [0u8; 64];
    while !r.is_empty() {
        let n = r.len().min(rest.len());
        r.read_slice(&mut rest[..n])?;
        if rest[..n].iter().any(|b| *b != 0) {
            return Err(E2BIG);
        }
    }
    Ok(v)
}

impl OpenFile {
    /// This file's identity, for its eventfd bindings.
    fn id(&self) -> usize {
        core::ptr::from_ref(self) as usize
    }

    fn events(&self) -> Result<&Events> {
        self.shm.events()
    }

    /// Waits for events and writes them to `out`.
    ///
    /// The mask is read afresh on every wake-up (`SET_MASK` wakes the
    /// waiters), and the events found are claimed (`seen` advanced) under
    /// the same lock, so two readers of this file never report the same
    /// interrupt. Nothing but the wait itself sleeps, and that wait is
    /// interruptible.
    fn read_events(&self, out: &mut UserSliceWriter, nonblock: bool) -> Result<usize> {
        self.shm.check_alive()?;
        let ev = self.events()?;
        let rec = core::mem::size_of::<uapi::Event>();
        let max = (out.len() / rec).min(ev.vectors());
        if max == 0 {
            return Err(EINVAL);
        }
        // Allocated before the interrupt-disabling lock; filled within
        // its capacity under it.
        let mut found = KVec::with_capacity(max, GFP_KERNEL)?;
        let mut st = ev.state.lock();
        loop {
            if st.gone {
                return Err(ENODEV);
            }
            let start = self.next.load(Relaxed);
            for p in doorbell::pending(&st, &self.seen, &self.mask, start).take(max) {
                found.push_within_capacity(p)?;
            }
            if !found.is_empty() {
                break;
            }
            if nonblock {
                return Err(EAGAIN);
            }
            if ev.wait.wait_interruptible(&mut st) {
                return Err(ERESTARTSYS);
            }
        }
        for (v, count, _, _) in found.iter() {
            if let Some(s) = self.seen.get(*v) {
                s.store(*count, Relaxed);
            }
        }
        if let Some((v, ..)) = found.last() {
            self.next.store(v + 1, Relaxed);
        }
        drop(st);
        for (i, (v, _, n, stamp)) in found.iter().enumerate() {
            let e = uapi::Event {
                vector: u16::try_from(*v)?,
                flags: 0,
                count: u32::try_from(*n).unwrap_or(u32::MAX),
                timestamp_ns: *stamp,
            };
            if let Err(err) = out.write(&e) {
                self.unclaim(ev, found.get(i..).unwrap_or(&[]));
                return if i == 0 { Err(err) } else { Ok(i * rec) };
            }
        }
        Ok(found.len() * rec)
    }

    /// Gives back claimed events that did not reach the caller (a faulting
    /// buffer), unless another reader of this file has meanwhile reported
    /// newer interrupts of the vector: then those are lost.
    fn unclaim(&self, ev: &Events, events: &[doorbell::Pending]) {
        let _st = ev.state.lock();
        for (v, count, n, _) in events {
            if let Some(s) = self.seen.get(*v) {
                if s.load(Relaxed) == *count {
                    s.store(count.wrapping_sub(*n), Relaxed);
                }
            }
        }
    }

    fn poll_events(&self, file: &File, table: &PollTable<'_>) -> u32 {
        let gone = uapi::EPOLLHUP | uapi::EPOLLERR;
        if self.shm.check_alive().is_err() {
            return gone;
        }
        let Ok(ev) = self.events() else {
            return uapi::EPOLLERR;
        };
        table.register_wait(file, &ev.wait);
        let st = ev.state.lock();
        if st.gone {
            gone
        } else if doorbell::pending(&st, &self.seen, &self.mask, 0)
            .next()
            .is_some()
        {
            uapi::EPOLLIN | uapi::EPOLLRDNORM
        } else {
            0
        }
    }

    /// `IVSHMEM_IOCTL_RING`.
    fn ioctl_ring(&self, arg: usize, size: usize) -> Result {
        let req: uapi::Ring = read_struct(arg, size)?;
        if req.flags != 0 || req.reserved != 0 || usize::from(req.vector) >= uapi::MAX_VECTORS {
            return Err(EINVAL);
        }
        // Ringing needs no interrupt of our own.
        if !self.shm.facts.doorbell() {
            return Err(EOPNOTSUPP);
        }
        self.shm.ring(req.peer, req.vector)
    }

    /// `IVSHMEM_IOCTL_SET_MASK`: stored under the events lock, so that no
    /// reader or poller sees half of it, then every waiter is woken to
    /// look again with the new mask.
    fn ioctl_set_mask(&self, arg: usize, size: usize) -> Result {
        let req: uapi::Mask = read_struct(arg, size)?;
        if req.flags != 0 || req.reserved0 != 0 || req.reserved != 0 {
            return Err(EINVAL);
        }
        let ev = self.events()?;
        let st = ev.state.lock();
        for (d, s) in self.mask.iter().zip(req.mask) {
            d.store(s, Relaxed);
        }
        drop(st);
        ev.wait.notify_all();
        Ok(())
    }

    /// `IVSHMEM_IOCTL_BIND_EVENTFD`.
    fn ioctl_bind_eventfd(&self, arg: usize, size: usize) -> Result {
        let req: uapi::EventFdBind = read_struct(arg, size)?;
        if req.flags != 0 || req.reserved != 0 {
            return Err(EINVAL);
        }
        let ev = self.events()?;
        if usize::from(req.vector) >= ev.vectors() {
            return Err(EINVAL);
        }
        let efd = match req.fd {
            -1 => None,
            fd => Some(EventFd::from_fd(fd)?),
        };
        // Close then has bindings to release (release cannot run while
        // this call holds the file).
        self.bound.store(true, Relaxed);
        ev.bind(self.id(), usize::from(req.vector), efd)
    }

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
        // A newer caller's extra fields must be zero: we cannot honour them.
        let req: uapi::Cache = read_struct(arg, size)?;
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
    type Ptr = Pin<KBox<OpenFile>>;

    fn open(shm: &Arc<Shm>, _file: &File) -> Result<Pin<KBox<OpenFile>>> {
        shm.check_alive()?;
        // Every interrupt from now on, on every vector, is this file's.
        let counts = shm.events.counts()?;
        let mut seen = KVec::with_capacity(counts.len(), GFP_KERNEL)?;
        for c in counts.iter() {
            seen.push(Atomic::new(*c), GFP_KERNEL)?;
        }
        Ok(KBox::pin(
            OpenFile {
                shm: shm.clone(),
                cache: Atomic::new(uapi::CACHE_WB),
                seen,
                mask: [const { Atomic::new(u64::MAX) }; uapi::MAX_VECTORS / 64],
                next: Atomic::new(0),
                bound: Atomic::new(false),
            },
            GFP_KERNEL,
        )?)
    }

    fn release(this: Pin<KBox<OpenFile>>, _file: &File) {
        if this.bound.load(Relaxed) {
            this.shm.events.unbind_file(this.id());
        }
    }

    fn read(
        this: Pin<&OpenFile>,
        _file: &File,
        out: &mut UserSliceWriter,
        nonblock: bool,
    ) -> Result<usize> {
        this.read_events(out, nonblock)
    }

    fn poll(this: Pin<&OpenFile>, file: &File, table: &PollTable<'_>) -> u32 {
        this.poll_events(file, table)
    }

    fn mmap(this: Pin<&OpenFile>, file: &File, vma: &VmaNew) -> Result {
        let shm = &this.shm;
        shm.check_alive()?;
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

    fn ioctl(this: Pin<&OpenFile>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // ENODEV comes first, whatever the command.
        this.shm.check_alive()?;
        if _IOC_TYPE(cmd) != uapi::MAGIC {
            return Err(ENOTTY);
        }
        let size = _IOC_SIZE(cmd);
        // The size may differ from ours (see `uapi`); number and direction
        // must match.
        let is = |known: u32| _IOC_NR(cmd) == _IOC_NR(known) && _IOC_DIR(cmd) == _IOC_DIR(known);
        // Interrupting peers, signalling eventfds and choosing how the
        // memory is mapped need a file opened for writing.
        let writable = || {
            if file.flags() & O_ACCMODE == O_RDONLY {
                Err(EBADF)
            } else {
                Ok(())
            }
        };
        if is(uapi::IOCTL_INFO) {
            this.ioctl_info(arg, size)?;
        } else if is(uapi::IOCTL_SET_CACHE) {
            writable()?;
            this.ioctl_set_cache(arg, size)?;
        } else if is(uapi::IOCTL_RING) {
            writable()?;
            this.ioctl_ring(arg, size)?;
        } else if is(uapi::IOCTL_SET_MASK) {
            this.ioctl_set_mask(arg, size)?;
        } else if is(uapi::IOCTL_BIND_EVENTFD) {
            writable()?;
            this.ioctl_bind_eventfd(arg, size)?;
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
            b"vectors" => write!(out, "{}", shm.usable_vectors()),
            b"revision" => write!(out, "{}", f.revision),
            b"features" => match f.features() {
                0 => write!(out, "plain"),
                x if x & uapi::FEATURE_INTX != 0 => write!(out, "doorbell intx"),
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
