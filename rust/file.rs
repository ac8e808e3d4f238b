// SPDX-License-Identifier: GPL-2.0

//! The file operations of `/dev/ivshmemN`, implemented on the state of
//! one open file, [`OpenFile`]: ioctl decoding and the sysfs attributes.
//! The device state they act on is [`Device`]; reading, polling, masks and
//! eventfds are in [`crate::doorbell`].

use crate::device::Device;
use crate::doorbell::{
    Binder,
    Events,
    Listener, //
};
use crate::raw::{
    eventfd::EventFd,
    miscdev::FileOps,
    pat::CacheMode,
    waitq::PollTable, //
};
use crate::{
    compat,
    kvmfr,
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
    ioctl::_IOC_SIZE,
    mm::virt::VmaNew,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
    },
    transmute::AsBytes,
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceReader,
        UserSliceWriter, //
    },
};

/// An open `/dev/ivshmemN`.
pub(crate) struct OpenFile {
    dev: Arc<Device>,
    /// `uapi::CACHE_*` for later mmaps.
    cache: Atomic<u32>,
    /// What this file has taken of the device's doorbells.
    doorbells: Listener,
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

    /// The doorbell events, on a device that receives doorbells.
    fn events(&self) -> Result<&Events> {
        self.dev.events()
    }

    /// `read()`: waits for doorbell events and writes them to `out`.
    fn read_events(&self, out: &mut UserSliceWriter, nonblock: bool) -> Result<usize> {
        self.dev.check_alive()?;
        self.doorbells.read(self.events()?, out, nonblock)
    }

    fn poll_events(&self, file: &File, table: &PollTable) -> u32 {
        if self.dev.check_alive().is_err() {
            return uapi::EPOLLHUP | uapi::EPOLLERR;
        }
        match self.events() {
            Ok(ev) => self.doorbells.poll(ev, file, table),
            Err(_) => uapi::EPOLLERR,
        }
    }

    /// `IVSHMEM_IOCTL_RING`.
    fn ioctl_ring(&self, arg: usize, size: usize) -> Result {
        let req: uapi::Ring = read_struct(arg, size)?;
        if req.flags != 0 || req.reserved != 0 || usize::from(req.vector) >= uapi::MAX_VECTORS {
            return Err(EINVAL);
        }
        // Ringing needs no interrupt of our own.
        if !self.dev.facts().doorbell() {
            return Err(compat::eopnotsupp());
        }
        self.dev.ring(req.peer, req.vector)
    }

    /// `IVSHMEM_IOCTL_SET_MASK`.
    fn ioctl_set_mask(&self, arg: usize, size: usize) -> Result {
        let req: uapi::Mask = read_struct(arg, size)?;
        if req.flags != 0 || req.reserved0 != 0 || req.reserved != 0 {
            return Err(EINVAL);
        }
        self.doorbells.set_mask(self.events()?, &req.mask);
        Ok(())
    }

    /// `IVSHMEM_IOCTL_BIND_EVENTFD`.
    fn ioctl_bind_eventfd(&self, file: &File, arg: usize, size: usize) -> Result {
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
        let who = Binder {
            file: self.id(),
            user: file.cred().euid(),
        };
        self.doorbells.bind(ev, who, usize::from(req.vector), efd)
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
        let info = self.dev.info()?;
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

/// An ioctl number without its size field, which may differ from ours (a
/// newer or older caller: see [`uapi`]): type, number and direction name
/// the command.
const fn command(cmd: u32) -> u32 {
    cmd & !(kernel::uapi::_IOC_SIZEMASK << kernel::uapi::_IOC_SIZESHIFT)
}

const INFO: u32 = command(uapi::IOCTL_INFO);
const SET_CACHE: u32 = command(uapi::IOCTL_SET_CACHE);
const RING: u32 = command(uapi::IOCTL_RING);
const SET_MASK: u32 = command(uapi::IOCTL_SET_MASK);
const BIND_EVENTFD: u32 = command(uapi::IOCTL_BIND_EVENTFD);

impl FileOps for OpenFile {
    type Data = Arc<Device>;
    type Ptr = Pin<KBox<Self>>;

    fn open(dev: &Arc<Device>, _file: &File) -> Result<Pin<KBox<Self>>> {
        dev.check_alive()?;
        Ok(KBox::pin(
            Self {
                dev: dev.clone(),
                cache: Atomic::new(uapi::CACHE_WB),
                doorbells: Listener::new(dev.event_state())?,
            },
            GFP_KERNEL,
        )?)
    }

    fn release(this: Pin<KBox<Self>>, _file: &File) {
        this.doorbells.release(this.dev.event_state(), this.id());
    }

    fn read(
        this: Pin<&Self>,
        _file: &File,
        out: &mut UserSliceWriter,
        nonblock: bool,
    ) -> Result<usize> {
        this.read_events(out, nonblock)
    }

    fn poll(this: Pin<&Self>, file: &File, table: &PollTable) -> u32 {
        this.poll_events(file, table)
    }

    fn mmap(this: Pin<&Self>, file: &File, vma: &VmaNew) -> Result {
        Device::map(&this.dev, file, vma, this.cache_mode())
    }

    fn ioctl(this: Pin<&Self>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // ENODEV comes first, whatever the command.
        this.dev.check_alive()?;
        let size = _IOC_SIZE(cmd);
        // Interrupting peers, signalling eventfds and choosing how the
        // memory is mapped need a file opened for writing.
        let writable = || {
            if file.flags() & O_ACCMODE == O_RDONLY {
                Err(EBADF)
            } else {
                Ok(())
            }
        };
        // Looking Glass's kvmfr numbers, matched whole (see `kvmfr`).
        if let Some(k) = kvmfr::command(cmd) {
            return kvmfr::ioctl(&this.dev, file, k, arg);
        }
        match command(cmd) {
            INFO => this.ioctl_info(arg, size)?,
            SET_CACHE => {
                writable()?;
                this.ioctl_set_cache(arg, size)?;
            }
            RING => {
                writable()?;
                this.ioctl_ring(arg, size)?;
            }
            SET_MASK => this.ioctl_set_mask(arg, size)?,
            BIND_EVENTFD => {
                writable()?;
                this.ioctl_bind_eventfd(file, arg, size)?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    fn show(dev: &Arc<Device>, name: &CStr, out: &mut dyn fmt::Write) -> Result {
        let f = dev.facts();
        let r = match name.to_bytes() {
            b"size" => write!(out, "{}", f.size),
            b"ivposition" => write!(out, "{}", dev.ivposition()?),
            b"vectors" => write!(out, "{}", dev.usable_vectors()),
            b"revision" => write!(out, "{}", f.revision),
            b"features" => match f.features() {
                0 => write!(out, "plain"),
                x if x & uapi::FEATURE_INTX != 0 => write!(out, "doorbell intx"),
                _ => write!(out, "doorbell msix"),
            },
            b"faults" => {
                let [pte, pmd, pud] = dev.fault_counts();
                write!(out, "pte {pte} pmd {pmd} pud {pud}")
            }
            _ => return Err(EINVAL),
        };
        r.map_err(|_| EINVAL)
    }

    /// `shm`: BAR2 as a file that programs can `stat` and `mmap`, as they
    /// would sysfs `resource2` (see `docs/driver.md`).
    fn bin_mmap(dev: &Arc<Device>, vma: &VmaNew) -> Result {
        Device::map_shm(dev, vma)
    }

    fn bin_size(dev: &Arc<Device>) -> usize {
        // A BAR larger than the address space cannot be mapped anyway.
        usize::try_from(dev.facts().size).unwrap_or(usize::MAX)
    }
}

crate::raw::miscdev::misc_attribute_groups!(
    ATTRIBUTES: OpenFile = [c"size", c"ivposition", c"vectors", c"revision", c"features", c"faults"],
    bin: c"shm"
);

/// The sysfs attributes of `/dev/ivshmemN`.
pub(crate) fn attributes() -> &'static crate::raw::miscdev::Groups {
    &ATTRIBUTES
}
