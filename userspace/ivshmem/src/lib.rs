//! Userspace library for `/dev/ivshmemN`, the Linux guest driver of QEMU's
//! inter-VM shared memory device.
//!
//! ```no_run
//! use ivshmem::{CacheMode, Device};
//!
//! let dev = Device::open(0)?;
//! let info = dev.info()?;
//! println!("{} bytes, peer id {:?}", info.size, info.ivposition);
//! let shm = dev.map(0, info.size as usize, CacheMode::WriteBack)?;
//! shm.write_slice(0, b"hello")?;
//! let n: u32 = shm.read_volatile(64)?;
//! # let _ = n;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Doorbells (`ivshmem-doorbell` devices):
//!
//! ```no_run
//! # use std::time::Duration;
//! let dev = ivshmem::Device::open(0)?;
//! dev.ring(1, 0)?; // interrupt peer 1 on vector 0
//! for ev in dev.wait(Some(Duration::from_secs(1)))? {
//!     println!("vector {} rang {} times", ev.vector, ev.count);
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Errors are [`std::io::Error`]s that say what was being done to which
//! device; [`errno`] gives the OS error number behind one. Once the device is gone (unbind, hot-unplug), calls fail with
//! `ENODEV` and touching an old [`Mapping`] raises SIGBUS.

pub mod uapi;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{Getter, Setter, ioctl};
use rustix::mm::{MapFlags, ProtFlags};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};

/// How a mapping is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Write-back: the default and the fastest.
    #[default]
    WriteBack,
    /// Write-combining.
    WriteCombining,
    /// Uncached (UC-).
    Uncached,
}

impl CacheMode {
    fn raw(self) -> u32 {
        match self {
            Self::WriteBack => uapi::IVSHMEM_CACHE_WB,
            Self::WriteCombining => uapi::IVSHMEM_CACHE_WC,
            Self::Uncached => uapi::IVSHMEM_CACHE_UC,
        }
    }
}

/// What a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Bytes of shared memory.
    pub size: u64,
    /// This peer's id (IVPosition): given by the ivshmem server on
    /// doorbell devices, 0 on ivshmem-plain, `None` while a revision 0
    /// device waits for its memory.
    pub ivposition: Option<u16>,
    /// Doorbell vectors this peer receives on (0 on ivshmem-plain).
    pub vectors: u32,
    /// Whether peers can be rung (ivshmem-doorbell).
    pub doorbell: bool,
    /// Whether peers can be rung with a store ([`Device::map_doorbell`]).
    pub doorbell_mmap: bool,
    /// N of `/dev/ivshmemN`.
    pub index: u32,
    /// PCI revision.
    pub revision: u8,
    /// PCI address: domain, bus, device, function.
    pub pci: (u32, u8, u8, u8),
    /// PCI subsystem vendor and device ids.
    pub subsystem: (u16, u16),
    /// The raw structure, for fields this version does not name.
    pub raw: uapi::ivshmem_info,
}

impl Info {
    /// The features as the driver's sysfs `features` attribute names them:
    /// `doorbell msix`, `doorbell intx`, or `plain`.
    pub fn feature_names(&self) -> String {
        let names: Vec<&str> = [
            (uapi::IVSHMEM_FEATURE_DOORBELL, "doorbell"),
            (uapi::IVSHMEM_FEATURE_MSIX, "msix"),
            (uapi::IVSHMEM_FEATURE_INTX, "intx"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.raw.features & bit != 0)
        .map(|(_, name)| name)
        .collect();
        if names.is_empty() {
            "plain".into()
        } else {
            names.join(" ")
        }
    }
}

impl From<uapi::ivshmem_info> for Info {
    fn from(r: uapi::ivshmem_info) -> Self {
        Self {
            size: r.size,
            ivposition: u16::try_from(r.ivposition).ok(),
            vectors: r.vectors,
            doorbell: r.features & uapi::IVSHMEM_FEATURE_DOORBELL != 0,
            doorbell_mmap: r.features & uapi::IVSHMEM_FEATURE_DOORBELL_MMAP != 0,
            index: r.index,
            revision: r.revision,
            pci: (r.pci_domain, r.pci_bus, r.pci_devfn >> 3, r.pci_devfn & 7),
            subsystem: (r.subsystem_vendor, r.subsystem_device),
            raw: r,
        }
    }
}

/// An open ivshmem device.
#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
    path: PathBuf,
}

/// An OS error with what was being done when it happened.
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn context(e: impl Into<io::Error>, what: fmt::Arguments<'_>) -> io::Error {
    let source = e.into();
    io::Error::new(
        source.kind(),
        Context {
            what: what.to_string(),
            source,
        },
    )
}

/// Parses a byte count or offset as the ivshmem tools take them: decimal,
/// or `0x` hexadecimal, optionally with a `K`, `M` or `G` suffix (powers
/// of 1024). Overflow is an error, not a wrap.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    }
    .map_err(|_| format!("{s:?} is not a number"))?;
    v.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The OS error number (`errno`) behind an error of this library, e.g.
/// `libc::ENODEV` once the device is gone.
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Context>())
            .and_then(|c| c.source.raw_os_error())
    })
}

impl Device {
    /// Opens `/dev/ivshmem<index>`.
    pub fn open(index: u32) -> io::Result<Self> {
        Self::open_path(format!("/dev/ivshmem{index}"))
    }

    /// Opens a device node by path, read-write.
    pub fn open_path(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let fd = rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| context(e, format_args!("opening {}", path.display())))?;
        Ok(Self { fd, path })
    }

    /// Opens `/dev/ivshmem<index>` read-only: INFO, the vector mask,
    /// waiting for doorbells and read-only mappings work; ringing, eventfd
    /// binding and choosing the cache mode fail with `EBADF`.
    pub fn open_read_only(index: u32) -> io::Result<Self> {
        Self::open_path_read_only(format!("/dev/ivshmem{index}"))
    }

    /// Opens a device node by path, read-only (see [`Device::open_read_only`]).
    pub fn open_path_read_only(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| context(e, format_args!("opening {} read-only", path.display())))?;
        Ok(Self { fd, path })
    }

    /// The device node's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the device's facts.
    pub fn info(&self) -> io::Result<Info> {
        // SAFETY: IVSHMEM_IOCTL_INFO writes a `struct ivshmem_info`.
        let raw = unsafe {
            ioctl(
                &self.fd,
                Getter::<{ uapi::IVSHMEM_IOCTL_INFO }, uapi::ivshmem_info>::new(),
            )
        }
        .map_err(|e| {
            context(
                e,
                format_args!("IVSHMEM_IOCTL_INFO on {}", self.path.display()),
            )
        })?;
        Ok(raw.into())
    }

    /// Chooses the cache mode of this open file's later mappings.
    pub fn set_cache_mode(&self, mode: CacheMode) -> io::Result<()> {
        let arg = uapi::ivshmem_cache {
            mode: mode.raw(),
            ..Default::default()
        };
        // SAFETY: IVSHMEM_IOCTL_SET_CACHE reads a `struct ivshmem_cache`.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ uapi::IVSHMEM_IOCTL_SET_CACHE }, uapi::ivshmem_cache>::new(arg),
            )
        }
        .map_err(|e| {
            context(
                e,
                format_args!(
                    "IVSHMEM_IOCTL_SET_CACHE {mode:?} on {}",
                    self.path.display()
                ),
            )
        })
    }

    /// Maps `len` bytes of shared memory at `offset` (page-aligned) with
    /// `mode`.
    pub fn map(&self, offset: u64, len: usize, mode: CacheMode) -> io::Result<Mapping> {
        self.set_cache_mode(mode)?;
        self.map_shared(offset, len, format_args!("{len} bytes at {offset:#x}"))
    }

    /// A new read-write shared mapping of `len` bytes at `offset` of the
    /// device file, at an address the kernel picks; `what` names it in
    /// errors.
    fn map_shared(&self, offset: u64, len: usize, what: fmt::Arguments<'_>) -> io::Result<Mapping> {
        // SAFETY: A new shared mapping of `self.fd` at an address the kernel
        // picks (a null hint, no MAP_FIXED), so no existing memory is replaced;
        // the returned `Mapping` owns it and unmaps it once.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &self.fd,
                offset,
            )
        }
        .map_err(|e| context(e, format_args!("mapping {what} of {}", self.path.display())))?;
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Maps `len` bytes at `offset` with `mode`, at a virtual address that
    /// is a multiple of `align` (a power of two, at least a page): the
    /// driver maps with 2 MiB or 1 GiB entries where the virtual and the
    /// physical address line up, so a mapping at `offset` 0 aligned to 2 MiB
    /// (1 GiB) gets PMD (PUD) entries, and one a page off gets 4 KiB ones.
    pub fn map_aligned(
        &self,
        offset: u64,
        len: usize,
        mode: CacheMode,
        align: usize,
    ) -> io::Result<Mapping> {
        if !align.is_power_of_two() || len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("alignment {align:#x} (a power of two) and length {len} (not 0)"),
            ));
        }
        let span = len
            .checked_add(align)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        self.set_cache_mode(mode)?;
        // SAFETY: A new inaccessible reservation of `span` bytes at an address
        // the kernel picks (no MAP_FIXED), so no existing memory is replaced;
        // only to find a free aligned range, replaced or unmapped below.
        let area = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                span,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }?;
        let base = area as usize;
        let at = base.next_multiple_of(align);
        // SAFETY: MAP_FIXED replaces only `at..at + len`, which lies inside our
        // own reservation `base..base + span` (`at - base < align` and `span =
        // len + align`); nothing else refers to that range.
        let mapped = unsafe {
            rustix::mm::mmap(
                at as *mut std::ffi::c_void,
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::FIXED,
                &self.fd,
                offset,
            )
        };
        let end = if mapped.is_ok() { at + len } else { at };
        // SAFETY: Unmaps only the parts of our reservation `base..base + span`
        // that the device mapping did not replace (all of it if that failed);
        // nothing refers to them.
        unsafe {
            if at > base {
                let _ = rustix::mm::munmap(area, at - base);
            }
            if base + span > end {
                let _ = rustix::mm::munmap(end as *mut std::ffi::c_void, base + span - end);
            }
        }
        let ptr = mapped.map_err(|e| {
            context(
                e,
                format_args!(
                    "mapping {len} bytes at {offset:#x} of {}, {align:#x}-aligned",
                    self.path.display()
                ),
            )
        })?;
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Maps all of the shared memory, write-back.
    pub fn map_all(&self) -> io::Result<Mapping> {
        let size = self.info()?.size;
        let len = usize::try_from(size).map_err(io::Error::other)?;
        self.map(0, len, CacheMode::WriteBack)
    }
}

/// Doorbells that rang on one vector, as `read` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The vector.
    pub vector: u16,
    /// Rings since this file last reported the vector.
    pub count: u32,
    /// CLOCK_MONOTONIC time of the latest ring, in nanoseconds, taken in
    /// the interrupt handler.
    pub timestamp_ns: u64,
}

impl Device {
    fn ioctl_set<const OP: rustix::ioctl::Opcode, T: Copy>(
        &self,
        arg: T,
        what: fmt::Arguments<'_>,
    ) -> io::Result<()> {
        // SAFETY: Every IVSHMEM `_IOW` ioctl reads exactly a `T` (the callers
        // pair each opcode with its uapi struct), from `Setter`'s own copy of
        // `arg`, which lives for the call; `self.fd` is open.
        unsafe { ioctl(&self.fd, Setter::<OP, T>::new(arg)) }
            .map_err(|e| context(e, format_args!("{what} on {}", self.path.display())))
    }

    /// Interrupts `peer` on `vector`. Earlier writes to the shared memory
    /// are visible to the peer when its interrupt arrives. Whether the peer
    /// exists cannot be known: QEMU drops rings to absent peers.
    pub fn ring(&self, peer: u16, vector: u16) -> io::Result<()> {
        let arg = uapi::ivshmem_ring {
            peer,
            vector,
            ..Default::default()
        };
        self.ioctl_set::<{ uapi::IVSHMEM_IOCTL_RING }, _>(
            arg,
            format_args!("ringing peer {peer} vector {vector}"),
        )
    }

    /// Maps the doorbell page, to ring peers with a store instead of a
    /// system call ([`DoorbellPage::ring`]). Fails with `EOPNOTSUPP` where
    /// [`Info::doorbell_mmap`] is false, `EACCES` on a read-only file.
    pub fn map_doorbell(&self) -> io::Result<DoorbellPage> {
        let page = self.map_shared(
            uapi::IVSHMEM_DOORBELL_MMAP_OFFSET,
            rustix::param::page_size(),
            format_args!("the doorbell page"),
        )?;
        Ok(DoorbellPage { page })
    }

    /// Chooses the vectors this open file waits on (all, when opened).
    pub fn set_vector_mask(&self, vectors: impl IntoIterator<Item = u16>) -> io::Result<()> {
        let mut arg = uapi::ivshmem_mask::default();
        for v in vectors {
            let v = usize::from(v);
            if v >= uapi::IVSHMEM_MAX_VECTORS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("vector {v}"),
                ));
            }
            arg.mask[v / 64] |= 1 << (v % 64);
        }
        self.ioctl_set::<{ uapi::IVSHMEM_IOCTL_SET_MASK }, _>(
            arg,
            format_args!("setting the vector mask"),
        )
    }

    /// Makes each ring on `vector` add 1 to the eventfd `efd`, until this
    /// file closes or [`Device::unbind_eventfd`].
    pub fn bind_eventfd(&self, vector: u16, efd: BorrowedFd<'_>) -> io::Result<()> {
        let arg = uapi::ivshmem_eventfd {
            fd: efd.as_raw_fd(),
            vector,
            ..Default::default()
        };
        self.ioctl_set::<{ uapi::IVSHMEM_IOCTL_BIND_EVENTFD }, _>(
            arg,
            format_args!("binding an eventfd to vector {vector}"),
        )
    }

    /// Removes this file's eventfd of `vector`.
    pub fn unbind_eventfd(&self, vector: u16) -> io::Result<()> {
        let arg = uapi::ivshmem_eventfd {
            fd: -1,
            vector,
            ..Default::default()
        };
        self.ioctl_set::<{ uapi::IVSHMEM_IOCTL_BIND_EVENTFD }, _>(
            arg,
            format_args!("unbinding the eventfd of vector {vector}"),
        )
    }

    /// Reads the pending events, blocking until there is one.
    pub fn read_events(&self) -> io::Result<Vec<Event>> {
        let mut buf = [uapi::ivshmem_event::default(); 32];
        // SAFETY: The local array `buf` is valid and exclusively borrowed for
        // `size_of_val(&buf)` bytes while `bytes` lives; `ivshmem_event` is
        // plain integers, so any bytes the kernel writes are a valid value.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), size_of_val(&buf))
        };
        let n = rustix::io::read(&self.fd, bytes)
            .map_err(|e| context(e, format_args!("reading events of {}", self.path.display())))?;
        Ok(buf[..n / size_of::<uapi::ivshmem_event>()]
            .iter()
            .map(|e| Event {
                vector: e.vector,
                count: e.count,
                timestamp_ns: e.timestamp_ns,
            })
            .collect())
    }

    /// Waits up to `timeout` (forever for `None`) for events; an empty
    /// list means the time ran out.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> io::Result<Vec<Event>> {
        let ts = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as _,
            tv_nsec: t.subsec_nanos() as _,
        });
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let ready = rustix::event::poll(&mut fds, ts.as_ref())
            .map_err(|e| context(e, format_args!("polling {}", self.path.display())))?;
        if ready == 0 {
            return Ok(Vec::new());
        }
        let revents = fds[0].revents();
        if revents.intersects(PollFlags::HUP | PollFlags::ERR) && !revents.contains(PollFlags::IN) {
            return Err(context(
                rustix::io::Errno::NODEV,
                format_args!("waiting on {}", self.path.display()),
            ));
        }
        self.read_events()
    }

    /// Events as they come, blocking: an endless iterator that stops at the
    /// first error (e.g. `ENODEV` when the device goes away).
    pub fn events(&self) -> impl Iterator<Item = io::Result<Event>> + '_ {
        let mut pending = std::collections::VecDeque::new();
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            while pending.is_empty() {
                match self.read_events() {
                    Ok(evs) => pending.extend(evs),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
            pending.pop_front().map(Ok)
        })
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The device's doorbell page, mapped ([`Device::map_doorbell`]); unmapped
/// on drop.
#[derive(Debug)]
pub struct DoorbellPage {
    page: Mapping,
}

impl DoorbellPage {
    /// Interrupts `peer` on `vector` with one store to the Doorbell
    /// register, as [`Device::ring`] does with a system call. Earlier
    /// writes to the shared memory (through any mapping, write-combining
    /// ones too: a full fence comes first) are visible to the peer when
    /// its interrupt arrives. Once the device is gone, the store raises
    /// SIGBUS, like an access to a mapping of its memory.
    pub fn ring(&self, peer: u16, vector: u16) {
        fence(Ordering::SeqCst);
        let value = u32::from(peer) << 16 | u32::from(vector);
        // SAFETY: The mapping `self.page` holds the whole register page and
        // lives as long as `self`; the Doorbell register at
        // `IVSHMEM_REG_DOORBELL` lies within it and is 4-aligned, as a `u32`
        // store needs.
        unsafe {
            self.page
                .as_ptr()
                .add(uapi::IVSHMEM_REG_DOORBELL)
                .cast::<u32>()
                .write_volatile(value)
        };
    }
}

impl DoorbellPage {
    /// The start of the page.
    pub fn as_ptr(&self) -> *mut u8 {
        self.page.as_ptr()
    }
}

/// A mapping of shared memory, unmapped on drop.
///
/// Other VMs may write the memory at any time, so plain Rust references
/// into it would be unsound: access goes through volatile reads and
/// writes, or bulk copies, each bounds-checked.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: The mapping is plain shared memory owned by the `Mapping`, not by a
// thread; every access is a volatile access or a raw copy, which is as
// thread-safe as the memory itself.
unsafe impl Send for Mapping {}
// SAFETY: A shared `&Mapping` offers only bounds-checked volatile accesses and
// raw copies, which other threads (and other VMs) may make at the same time.
unsafe impl Sync for Mapping {}

fn out_of_range(offset: usize, n: usize, len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{n} bytes at offset {offset:#x} are outside the {len}-byte mapping"),
    )
}

impl Mapping {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: mmap refuses empty mappings).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn check(&self, offset: usize, n: usize, align: usize) -> io::Result<*mut u8> {
        let end = offset
            .checked_add(n)
            .ok_or_else(|| out_of_range(offset, n, self.len))?;
        if end > self.len {
            return Err(out_of_range(offset, n, self.len));
        }
        if offset % align != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset:#x} is not {align}-aligned"),
            ));
        }
        // SAFETY: The check above ensured `offset + n <= self.len`, so the
        // result stays within the mapping (or one past its end when `n` is 0).
        Ok(unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// Reads a `T` at `offset` (aligned for `T`) with one volatile access.
    pub fn read_volatile<T: Copy>(&self, offset: usize) -> io::Result<T> {
        let p = self.check(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: The pointer `p` has `size_of::<T>()` bytes (`check` made
        // sure) inside the mapping, which lives as long as `self`, and `p` is
        // aligned for `T`; `T: Copy` is read by value, no reference is made.
        Ok(unsafe { p.cast::<T>().read_volatile() })
    }

    /// Writes a `T` at `offset` (aligned for `T`) with one volatile access.
    pub fn write_volatile<T: Copy>(&self, offset: usize, value: T) -> io::Result<()> {
        let p = self.check(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: The pointer `p` has `size_of::<T>()` bytes (`check` made
        // sure) inside the writable mapping, which lives as long as `self`, and
        // `p` is aligned for `T`; no Rust reference into the mapping exists.
        unsafe { p.cast::<T>().write_volatile(value) };
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    pub fn read_slice(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let p = self.check(offset, buf.len(), 1)?;
        // SAFETY: The pointer `p` has `buf.len()` bytes (`check` made sure)
        // inside the mapping, which lives as long as `self`; `buf` is a
        // distinct Rust buffer of that length, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `buf` to `offset`.
    pub fn write_slice(&self, offset: usize, buf: &[u8]) -> io::Result<()> {
        let p = self.check(offset, buf.len(), 1)?;
        // SAFETY: The pointer `p` has `buf.len()` bytes (`check` made sure)
        // inside the writable mapping, which lives as long as `self`; `buf` is
        // a distinct Rust buffer of that length, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len()) };
        Ok(())
    }

    /// The memory as a byte slice.
    ///
    /// # Safety
    ///
    /// Nothing may write the memory while the slice lives: no other
    /// process, VM or host, and no other handle in this one.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: The pointer and length are the whole mapping, valid while the
        // returned slice borrows `self`; the caller guarantees the memory does
        // not change while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The memory as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// Nothing else may read or write the memory while the slice lives.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: The pointer and length are the whole mapping, valid while the
        // returned slice borrows `self` mutably; the caller guarantees that
        // nothing else reads or writes the memory meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: The pointer and length are exactly the mapping made by
        // `Device::map`, `map_doorbell` or `Device::map_aligned`, owned by
        // `self` alone and unmapped only here, once; no reference into it
        // outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_errno_and_say_what_failed() {
        let e = Device::open_path("/nonexistent/ivshmem9").unwrap_err();
        assert_eq!(errno(&e), Some(2));
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string().contains("opening /nonexistent/ivshmem9"),
            "{e}"
        );
    }
}
