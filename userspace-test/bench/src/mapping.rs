//! Mapping the shared memory: mmap setup time, first touch of the whole
//! mapping, and sequential bandwidth, through `/dev/ivshmemN` in each cache
//! mode and through sysfs `resource2` / `resource2_wc` (with our driver
//! unbound), with a copy in guest RAM as the bandwidth ceiling.
//!
//! One repetition visits every device and, for each, every contender in
//! turn (the driver's three modes, unbind, the two sysfs files, bind), so
//! the contenders' samples interleave: A B C D E, A B C D E, ... Each
//! repetition starts one contender further (B C A E D, C A B D E, ...), so
//! that none is always the first after a bind.

use crate::sys::{self, timed};
use crate::{BenchResult, Failure, progress, samples};
use ivshmem::{CacheMode, Device};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A way of mapping BAR2.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// `/dev/ivshmemN` with a cache mode.
    Driver(CacheMode),
    /// A sysfs resource file of the PCI function, our driver unbound.
    Sysfs(&'static str),
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Driver(CacheMode::WriteBack) => "ivshmem-wb",
            Way::Driver(CacheMode::WriteCombining) => "ivshmem-wc",
            Way::Driver(CacheMode::Uncached) => "ivshmem-uc",
            Way::Sysfs(f) => f,
        }
    }
}

const DRIVER_WAYS: [Way; 3] = [
    Way::Driver(CacheMode::WriteBack),
    Way::Driver(CacheMode::WriteCombining),
    Way::Driver(CacheMode::Uncached),
];
const SYSFS_WAYS: [Way; 2] = [Way::Sysfs("resource2"), Way::Sysfs("resource2_wc")];

/// Samples by (case, metric, unit, contender).
type Samples = BTreeMap<(String, &'static str, &'static str, &'static str), Vec<f64>>;

/// A shared mapping made with mmap(2), unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    /// Maps `len` bytes of `fd` at offset 0; returns the nanoseconds the
    /// mmap call took too.
    fn new(fd: BorrowedFd<'_>, len: usize) -> Result<(f64, Self), Failure> {
        let (ns, ptr) = timed(|| {
            // SAFETY: a new shared mapping at an address the kernel picks,
            // owned by the returned `Map`.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            }
        });
        if ptr == libc::MAP_FAILED {
            return Err(Failure::Fail(format!(
                "mmap of {len} bytes: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok((
            ns,
            Map {
                ptr: ptr.cast(),
                len,
            },
        ))
    }

    /// Reads one byte of every 4 KiB page.
    fn touch(&self) {
        for off in (0..self.len).step_by(4096) {
            // SAFETY: within the mapping.
            std::hint::black_box(unsafe { self.ptr.add(off).read_volatile() });
        }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped; nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Copies `len` bytes and returns GiB/s.
fn copy_rate(src: *const u8, dst: *mut u8, len: usize) -> f64 {
    // SAFETY: the callers pass buffers of at least `len` bytes that do not
    // overlap (a mapping and a heap buffer, or two heap buffers).
    let (ns, ()) = timed(|| unsafe { std::ptr::copy_nonoverlapping(src, dst, len) });
    std::hint::black_box(dst);
    len as f64 / (1u64 << 30) as f64 / (ns / 1e9)
}

/// What one repetition needs to know of the run.
struct Plan {
    touch_max: u64,
    bw: usize,
    /// The PCI function whose mappings are also copied through.
    bw_dev: Option<PathBuf>,
}

/// The `/dev/ivshmemN` index of the PCI function at `dev`.
pub(crate) fn index_of(dev: &Path) -> Result<u32, Failure> {
    let dir = std::fs::read_dir(dev.join("misc"))
        .map_err(|e| Failure::Fail(format!("{}/misc: {e}", dev.display())))?;
    for e in dir.flatten() {
        if let Some(n) = e.file_name().to_string_lossy().strip_prefix("ivshmem") {
            return n
                .parse()
                .map_err(|_| Failure::Fail(format!("odd node ivshmem{n}")));
        }
    }
    Err(Failure::Fail(format!("{} has no node", dev.display())))
}

/// Measures one way of mapping device `dev` (size `size`) once.
fn measure(
    way: Way,
    dev: &Path,
    size: u64,
    plan: &Plan,
    bufs: &mut (Vec<u8>, Vec<u8>),
    out: &mut Samples,
) -> BenchResult {
    let case = sys::size_name(size);
    let len = usize::try_from(size).map_err(|e| Failure::Fail(e.to_string()))?;
    let (index, file): (Option<u32>, std::fs::File) = match way {
        Way::Driver(mode) => {
            let i = index_of(dev)?;
            let d = Device::open(i)?;
            d.set_cache_mode(mode)?;
            (Some(i), d.as_fd().try_clone_to_owned()?.into())
        }
        Way::Sysfs(name) => (
            None,
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_SYNC)
                .open(dev.join(name))
                .map_err(|e| Failure::Fail(format!("opening {name}: {e}")))?,
        ),
    };
    let mut put = |metric: &'static str, unit: &'static str, v: f64| {
        out.entry((case.clone(), metric, unit, way.name()))
            .or_default()
            .push(v)
    };
    let (first_ns, map) = Map::new(file.as_fd(), len)?;
    let (later_ns, later) = Map::new(file.as_fd(), len)?;
    drop(later);
    put("mmap, first", "ns", first_ns);
    put("mmap, while mapped", "ns", later_ns);
    if size <= plan.touch_max {
        let before = index.and_then(sys::driver_faults);
        let (ns, ()) = timed(|| map.touch());
        put("first touch, whole mapping", "ns", ns);
        if let (Some(i), Some(b)) = (index, before) {
            if let Some(a) = sys::driver_faults(i) {
                put("entries inserted, 4K", "count", (a[0] - b[0]) as f64);
                put("entries inserted, 2M", "count", (a[1] - b[1]) as f64);
                put("entries inserted, 1G", "count", (a[2] - b[2]) as f64);
            }
        }
    }
    if plan.bw_dev.as_deref() == Some(dev) {
        let bw_case = format!(
            "{} through a {case} mapping",
            sys::size_name(plan.bw as u64)
        );
        let r = copy_rate(map.ptr, bufs.0.as_mut_ptr(), plan.bw);
        let w = copy_rate(bufs.0.as_ptr(), map.ptr, plan.bw);
        out.entry((bw_case.clone(), "sequential read", "GiB/s", way.name()))
            .or_default()
            .push(r);
        out.entry((bw_case, "sequential write", "GiB/s", way.name()))
            .or_default()
            .push(w);
    }
    Ok(())
}

/// The mapping benchmark (all plain devices of the guest).
pub fn run() -> BenchResult {
    sys::load_module().map_err(Failure::Fail)?;
    let reps = sys::setting("reps", 7);
    let plan_touch = sys::setting("touch_max_mib", 256) << 20;
    let bw = (sys::setting("bw_mib", 64) << 20) as usize;
    let devs = sys::ivshmem_functions().map_err(Failure::Fail)?;
    if devs.is_empty() {
        return Err(Failure::Skip("no ivshmem device".into()));
    }
    let mut sized = Vec::new();
    for d in &devs {
        let size = Device::open(index_of(d)?)?.info()?.size;
        sized.push((d.clone(), size));
    }
    // Bandwidth through the largest device that is touched whole.
    let bw_dev = sized
        .iter()
        .filter(|(_, s)| *s <= plan_touch && *s >= bw as u64)
        .max_by_key(|(_, s)| *s)
        .map(|(d, _)| d.clone());
    let plan = Plan {
        touch_max: plan_touch,
        bw,
        bw_dev,
    };
    println!(
        "# {} device(s): {}; {reps} repetitions; touch up to {}; bandwidth {} through {:?}",
        sized.len(),
        sized
            .iter()
            .map(|(_, s)| sys::size_name(*s))
            .collect::<Vec<_>>()
            .join(", "),
        sys::size_name(plan.touch_max),
        sys::size_name(bw as u64),
        plan.bw_dev
    );
    let mut bufs = (vec![1u8; bw], vec![2u8; bw]);
    let mut out = Samples::new();
    for rep in 1..=reps {
        for (dev, size) in &sized {
            let mut driver = DRIVER_WAYS;
            driver.rotate_left(rep as usize % DRIVER_WAYS.len());
            let mut sysfs = SYSFS_WAYS;
            sysfs.rotate_left(rep as usize % SYSFS_WAYS.len());
            progress(&format!(
                "mapping: repetition {rep}/{reps}, {} device: {}",
                sys::size_name(*size),
                driver
                    .iter()
                    .chain(&sysfs)
                    .map(|w| w.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for way in driver {
                measure(way, dev, *size, &plan, &mut bufs, &mut out)?;
            }
            sys::unbind(dev).map_err(Failure::Fail)?;
            let sysfs = sysfs
                .iter()
                .try_for_each(|w| measure(*w, dev, *size, &plan, &mut bufs, &mut out));
            sys::bind(dev).map_err(Failure::Fail)?;
            sysfs?;
        }
        // The ceiling: a copy between two buffers in guest RAM.
        if plan.bw_dev.is_some() {
            let case = plan
                .bw_dev
                .as_ref()
                .and_then(|d| sized.iter().find(|(p, _)| p == d))
                .map(|(_, s)| sys::size_name(*s))
                .unwrap_or_default();
            let bw_case = format!("{} through a {case} mapping", sys::size_name(bw as u64));
            let (a, b) = &mut bufs;
            let r = copy_rate(b.as_ptr(), a.as_mut_ptr(), bw);
            let w = copy_rate(a.as_ptr(), b.as_mut_ptr(), bw);
            for (metric, v) in [("sequential read", r), ("sequential write", w)] {
                out.entry((bw_case.clone(), metric, "GiB/s", "guest RAM memcpy"))
                    .or_default()
                    .push(v);
            }
        }
    }
    for ((case, metric, unit, contender), v) in &out {
        samples("mapping", case, metric, unit, contender, v);
    }
    Ok(())
}
