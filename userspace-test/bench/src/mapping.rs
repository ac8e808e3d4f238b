//! Mapping the shared memory: mmap setup time, first touch of the whole
//! mapping, the page tables it took, and sequential bandwidth, through
//! `/dev/ivshmemN` in each cache mode, through sysfs `resource2` /
//! `resource2_wc` and through a vfio-pci region mapping (both with our
//! driver unbound), with a copy in guest RAM as the bandwidth ceiling.
//!
//! One repetition visits every device and, for each, every contender in
//! turn (the driver's three modes, unbind, the two sysfs files and
//! vfio-pci, bind), so the contenders' samples interleave: A B C D E F,
//! A B C D E F, ... Each repetition starts one contender further in each
//! group (B C A E F D, C A B F D E, ...), so that none is always the
//! first after a bind.
//!
//! Page-table entries by size cannot be read from the page tables of a
//! process on Debian's kernel: it has no `CONFIG_PTDUMP_DEBUGFS`, and both
//! readers it has skip these mappings (all three kinds are `VM_PFNMAP`):
//! `/proc/PID/pagemap` reports a `VM_PFNMAP` range as a hole (not
//! present) and `PAGEMAP_SCAN` does not walk it at all (`fs/proc/
//! task_mmu.c`). The run proves it once per contender (a `# pagemap:`
//! line). So the host counts the entries by size, from the page tables,
//! after a first touch of each contender and size (`ptwalk.rs`), in an
//! untimed pass after the repetitions: the guest stops while the host
//! walks, and the timings right after a walk were seen to suffer (mmap
//! of 4 MiB up to 6 times slower for every contender). Besides, the run
//! records what the
//! kernel does account: the process's page-table pages (`VmPTE`), and for
//! our driver the entries it inserted by size, from its own counter,
//! which the host's count is checked against (a `# ptwalk:` line).

use crate::sys::{self, timed};
use crate::{BenchResult, Failure, contender, contender_unless, progress, ptwalk, samples, vfio};
use guest_sys::Map;
use ivshmem::{CacheMode, Device};
use ktap::Outcome;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A way of mapping BAR2.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// `/dev/ivshmemN` with a cache mode.
    Driver(CacheMode),
    /// A sysfs resource file of the PCI function, our driver unbound.
    Sysfs(&'static str),
    /// The BAR2 region of the function bound to vfio-pci.
    Vfio,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Driver(CacheMode::WriteBack) => "ivshmem-wb",
            Way::Driver(CacheMode::WriteCombining) => "ivshmem-wc",
            Way::Driver(CacheMode::Uncached) => "ivshmem-uc",
            Way::Sysfs(f) => f,
            Way::Vfio => "vfio-pci",
        }
    }
}

const DRIVER_WAYS: [Way; 3] = [
    Way::Driver(CacheMode::WriteBack),
    Way::Driver(CacheMode::WriteCombining),
    Way::Driver(CacheMode::Uncached),
];
const SYSFS_WAYS: [Way; 2] = [Way::Sysfs("resource2"), Way::Sysfs("resource2_wc")];

/// Prints what the kernel's readers of page tables (`/proc/self/pagemap`,
/// `PAGEMAP_SCAN`) report of a touched mapping, as a diagnostic and a raw
/// record: they skip `VM_PFNMAP` mappings, which is why the entries by
/// size are not counted from the page tables.
fn pagemap_probe(who: &str, ptr: *const u8, len: usize) {
    let pages = len / 4096;
    // Whether huge entries were possible at all: 2 MiB ones need a
    // 2 MiB-aligned virtual address (and physical one).
    let aligned = (ptr as usize) % (2 << 20) == 0;
    match sys::pagemap_present(ptr, len) {
        Ok((present, scan, huge)) => {
            println!(
                "# pagemap: {who}: {pages} pages touched at {ptr:p} (2 MiB aligned: {aligned}); \
                 /proc/self/pagemap marks {present} present, \
                 PAGEMAP_SCAN reports {scan} present ({huge} huge)"
            );
            crate::emit(serde_json::json!({"pagemap_probe": {
                "contender": who, "pages": pages, "address": format!("{ptr:p}"),
                "address_2m_aligned": aligned, "pagemap_present": present,
                "pagemap_scan_present": scan, "pagemap_scan_huge": huge}}));
        }
        Err(e) => println!("# pagemap: {who}: {e}"),
    }
}

/// Says what the host's walk of the page tables found for a touched
/// mapping, and whether the driver's own counter (`counter`, our driver's
/// contenders only) agrees with it, as a diagnostic and a raw record.
fn report_walk(
    who: &str,
    case: &str,
    map: &Map,
    walked: &vmrun_protocol::ptwalk::Answer,
    counter: Option<[u64; 3]>,
) {
    let e = walked.entries;
    let whole = walked.bytes_mapped() == map.len as u64;
    let sizes = |c: [u64; 3]| format!("{} 4K + {} 2M + {} 1G", c[0], c[1], c[2]);
    let against = match counter {
        Some(c) if c == e => format!("; the driver's counter: {}: agree", sizes(c)),
        Some(c) => format!("; the driver's counter: {}: DISAGREE", sizes(c)),
        None => String::new(),
    };
    println!(
        "# ptwalk: {who}, {case} at {:p}: page tables hold {} entries into BAR 2 \
         ({}, {} elsewhere; walk {}){against}",
        map.ptr,
        sizes(e),
        if whole {
            format!("all {case} mapped")
        } else {
            format!("{} of {} bytes mapped", walked.bytes_mapped(), map.len)
        },
        walked.elsewhere,
        walked.tries
    );
    crate::emit(serde_json::json!({"ptwalk": {
        "contender": who, "case": case, "address": format!("{:p}", map.ptr),
        "entries_4k": e[0], "entries_2m": e[1], "entries_1g": e[2],
        "whole_mapping_mapped": whole, "elsewhere": walked.elsewhere,
        "walks": walked.tries, "driver_counter": counter,
        "driver_counter_agrees": counter.map(|c| c == e)}}));
}

/// Samples by (case, metric, unit, contender).
type Samples = BTreeMap<(String, &'static str, &'static str, &'static str), Vec<f64>>;

/// Copies `len` bytes and returns GiB/s.
fn copy_rate(src: *const u8, dst: *mut u8, len: usize) -> f64 {
    // SAFETY: The callers pass `src` readable and `dst` writable for at least
    // `len` bytes, alive across the call, that do not overlap (a mapping and a
    // heap buffer, or two heap buffers).
    let (ns, ()) = timed(|| unsafe { std::ptr::copy_nonoverlapping(src, dst, len) });
    std::hint::black_box(dst);
    len as f64 / (1u64 << 30) as f64 / (ns / 1e9)
}

/// What one repetition needs to know of the run.
#[derive(Clone)]
struct Plan {
    touch_max: u64,
    bw: usize,
    /// The PCI function whose mappings are also copied through.
    bw_dev: Option<PathBuf>,
    /// Ask the host to walk the page tables after each first touch: only
    /// in the untimed pass after the repetitions, since the guest stops
    /// while the host walks, which disturbs what is timed next.
    walk: bool,
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

/// What is mapped: a file (device node or sysfs resource) at offset 0, or
/// vfio's device file at the region's offset.
enum Source<'a> {
    File(OwnedFd),
    Vfio(&'a vfio::Device, vfio::RegionInfo),
}

impl Source<'_> {
    fn map(&self, len: usize) -> Result<(f64, Map), Failure> {
        match self {
            Source::File(f) => sys::map_timed(f.as_fd(), len, 0),
            Source::Vfio(d, r) => d.map(r, len),
        }
        .map_err(Failure::Fail)
    }
}

/// Measures one way of mapping the visited device once (`vdev`: the
/// device's vfio-pci file, for [`Way::Vfio`]).
fn measure(
    visit: &Visit<'_>,
    way: Way,
    bufs: &mut (Vec<u8>, Vec<u8>),
    out: &mut Samples,
    vdev: Option<&vfio::Device>,
) -> BenchResult {
    let Visit {
        dev,
        size,
        plan,
        probe,
    } = *visit;
    let case = sys::size_name(size);
    let len = usize::try_from(size).map_err(|e| Failure::Fail(e.to_string()))?;
    let (index, src): (Option<u32>, Source<'_>) = match (way, vdev) {
        (Way::Driver(mode), _) => {
            let i = index_of(dev)?;
            let d = Device::open(i)?;
            d.set_cache_mode(mode)?;
            (Some(i), Source::File(d.as_fd().try_clone_to_owned()?))
        }
        (Way::Sysfs(name), _) => (
            None,
            Source::File(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_SYNC)
                    .open(dev.join(name))
                    .map_err(|e| Failure::Fail(format!("opening {name}: {e}")))?
                    .into(),
            ),
        ),
        (Way::Vfio, Some(d)) => (
            None,
            Source::Vfio(d, d.region(vfio::BAR2).map_err(Failure::Fail)?),
        ),
        (Way::Vfio, None) => return Err(Failure::Fail("vfio-pci without its device".into())),
    };
    let mut put = |metric: &'static str, unit: &'static str, v: f64| {
        out.entry((case.clone(), metric, unit, way.name()))
            .or_default()
            .push(v)
    };
    let pte0 = sys::vm_pte_kib();
    let (first_ns, map) = src.map(len)?;
    put("mmap, first", "ns", first_ns);
    if size <= plan.touch_max {
        let before = index.and_then(|i| guest_sys::driver_faults(i).ok());
        let (ns, ()) = timed(|| map.touch());
        put("first touch, whole mapping", "ns", ns);
        let mut counter = None;
        if let (Some(i), Some(b)) = (index, before) {
            if let Ok(a) = guest_sys::driver_faults(i) {
                let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
                put("entries inserted, 4K", "count", d[0] as f64);
                put("entries inserted, 2M", "count", d[1] as f64);
                put("entries inserted, 1G", "count", d[2] as f64);
                counter = Some(d);
            }
        }
        if probe {
            pagemap_probe(way.name(), map.ptr, map.len);
        }
        // The entries by size, from the page tables, walked by the host;
        // the answer lands in the BAR's last page, which nothing here
        // reads or writes otherwise.
        if plan.walk {
            let phys = ptwalk::bar2_phys(dev).map_err(Failure::Fail)?;
            let walked = ptwalk::ask(&map, phys, len - 4096)
                .map_err(|e| Failure::Fail(format!("{} {case}: {e}", way.name())))?;
            put("page-table entries, 4K", "count", walked.entries[0] as f64);
            put("page-table entries, 2M", "count", walked.entries[1] as f64);
            put("page-table entries, 1G", "count", walked.entries[2] as f64);
            report_walk(way.name(), &case, &map, &walked, counter);
        }
    }
    // The page tables the mapping took, after the touch if there was one.
    if let (Some(a), Some(b)) = (sys::vm_pte_kib(), pte0) {
        put(
            "page-table memory (VmPTE)",
            "KiB",
            a.saturating_sub(b) as f64,
        );
    }
    let (later_ns, later) = src.map(len)?;
    drop(later);
    put("mmap, while mapped", "ns", later_ns);
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
    // Nothing maps the device any more: map it again, as a process that
    // starts over would (our driver keeps the memtype; vfio-pci keeps its
    // BAR mapping while the device file is open).
    drop(map);
    let (again_ns, again) = src.map(len)?;
    drop(again);
    out.entry((case, "mmap, again after unmapping", "ns", way.name()))
        .or_default()
        .push(again_ns);
    Ok(())
}

/// Measures the ways of the unbound group (sysfs, vfio-pci) of the
/// visited device, our driver unbound; vfio-pci is bound for its turn
/// only.
fn measure_unbound(
    visit: &Visit<'_>,
    ways: &[Way],
    bufs: &mut (Vec<u8>, Vec<u8>),
    out: &mut Samples,
) -> BenchResult {
    let dev = visit.dev;
    for way in ways {
        match way {
            Way::Vfio => {
                let mut inner = Ok(());
                vfio::with_device(dev, |d| {
                    inner = measure(visit, *way, bufs, out, Some(d));
                    Ok(())
                })
                .map_err(|e| Failure::Fail(format!("vfio-pci: {e}")))?;
                inner?;
            }
            _ => measure(visit, *way, bufs, out, None)?,
        }
    }
    Ok(())
}

/// The contenders' names, for progress lines.
fn way_names(driver: &[Way], unbound: &[Way]) -> String {
    driver
        .iter()
        .chain(unbound)
        .map(|w| w.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One visit of a device: every contender once.
struct Visit<'a> {
    dev: &'a Path,
    size: u64,
    plan: &'a Plan,
    /// Also print what pagemap says of each touched mapping.
    probe: bool,
}

impl Visit<'_> {
    /// Measures the driver's `driver` ways, each right after the driver
    /// bound the device (as the other contenders' first mmaps follow
    /// their binding), then, the driver unbound, the `unbound` ways, and
    /// binds the driver again.
    fn run(
        &self,
        driver: &[Way],
        unbound: &[Way],
        bufs: &mut (Vec<u8>, Vec<u8>),
        out: &mut Samples,
    ) -> BenchResult {
        let dev = self.dev;
        for (i, way) in driver.iter().enumerate() {
            if i > 0 {
                guest_sys::unbind(dev)?;
                guest_sys::bind(dev)?;
            }
            measure(self, *way, bufs, out, None)?;
        }
        guest_sys::unbind(dev)?;
        let r = measure_unbound(self, unbound, bufs, out);
        guest_sys::bind(dev)?;
        r
    }
}

/// The mapping benchmark (all plain devices of the guest).
pub fn run() -> BenchResult {
    guest_sys::load_module()?;
    let reps = guest_sys::setting_or("reps", 7);
    let plan_touch = guest_sys::setting_or("touch_max_mib", 256) << 20;
    let bw = (guest_sys::setting_or("bw_mib", 64) << 20) as usize;
    let devs: Vec<_> = guest_sys::ivshmem_devices()?
        .into_iter()
        .map(|d| d.path)
        .collect();
    if devs.is_empty() {
        return Err(Failure::Skip("no ivshmem device".into()));
    }
    let mut sized = Vec::new();
    for d in &devs {
        let size = Device::open(index_of(d)?)?.info()?.size;
        sized.push((d.clone(), size));
    }
    // vfio-pci, if it can take the devices here; otherwise it is skipped,
    // and says why.
    let vfio_ok = sized
        .iter()
        .try_for_each(|(d, _)| vfio::prepare(d))
        .and_then(|()| vfio::preflight(&sized[0].0, false));
    if let Err(why) = &vfio_ok {
        println!("# vfio-pci: skipped: {why}");
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
        walk: false,
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
    let mut unbound_ways = SYSFS_WAYS.to_vec();
    if vfio_ok.is_ok() {
        unbound_ways.push(Way::Vfio);
    }
    let mut bufs = (vec![1u8; bw], vec![2u8; bw]);
    let mut out = Samples::new();
    let probe_dev = sized
        .iter()
        .find(|(_, s)| *s <= plan.touch_max)
        .map(|(d, _)| d.clone());
    for rep in 1..=reps {
        for (dev, size) in &sized {
            let mut driver = DRIVER_WAYS;
            driver.rotate_left(rep as usize % DRIVER_WAYS.len());
            let mut unbound = unbound_ways.clone();
            let n = unbound.len();
            unbound.rotate_left(rep as usize % n);
            progress(&format!(
                "mapping: repetition {rep}/{reps}, {} device: {}",
                sys::size_name(*size),
                way_names(&driver, &unbound)
            ));
            // What pagemap says, once per contender, on the first device
            // that is touched.
            let probe = rep == 1 && probe_dev.as_ref() == Some(dev);
            let visit = Visit {
                dev,
                size: *size,
                plan: &plan,
                probe,
            };
            visit.run(&driver, &unbound, &mut bufs, &mut out)?;
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
    // The page tables of each contender's touched mapping, walked by the
    // host: an untimed pass (the guest stops during a walk), whose other
    // figures are dropped.
    let walk_plan = Plan {
        bw_dev: None,
        walk: true,
        ..plan.clone()
    };
    let mut scratch = Samples::new();
    for (dev, size) in sized.iter().filter(|(_, s)| *s <= plan.touch_max) {
        progress(&format!(
            "mapping: page-table walks by the host, {} device: {}",
            sys::size_name(*size),
            way_names(&DRIVER_WAYS, &unbound_ways)
        ));
        let visit = Visit {
            dev,
            size: *size,
            plan: &walk_plan,
            probe: false,
        };
        visit.run(&DRIVER_WAYS, &unbound_ways, &mut bufs, &mut scratch)?;
    }
    for (k, v) in scratch {
        if k.1.starts_with("page-table entries") {
            out.insert(k, v);
        }
    }
    // The control of the pagemap probe: anonymous memory, which both
    // readers do report.
    let anon = vec![1u8; 2 << 20];
    let start = (anon.as_ptr() as usize).next_multiple_of(4096);
    pagemap_probe(
        "anonymous memory (control)",
        start as *const u8,
        (anon.as_ptr() as usize + anon.len() - start) / 4096 * 4096,
    );
    for ((case, metric, unit, contender), v) in &out {
        samples("mapping", case, metric, unit, contender, v);
    }
    for w in DRIVER_WAYS.iter().chain(&SYSFS_WAYS) {
        contender(w.name(), Outcome::Pass);
    }
    contender_unless(Way::Vfio.name(), vfio_ok);
    Ok(())
}
