//! Fault-heavy access: many threads touching one large mapping of
//! `/dev/ivshmemN` for the first time, every page a separate 4 KiB fault.
//!
//! The mapping starts one page into BAR2 at a 2 MiB-aligned address, so
//! that no virtual 2 MiB block lines up with a physical one and the driver
//! can only insert 4 KiB entries: the run measures the fault path itself
//! (and how its locking scales with threads), not how few faults huge
//! entries need. Threads touch interleaved pages (thread i: pages i, i+T,
//! i+2T, ...), so that they fault at the same time, side by side.
//!
//! Each repetition maps afresh, so every page faults again; the thread
//! counts interleave across repetitions, after one uncounted pass that
//! makes the host back the memory. The driver's own count of PTEs
//! inserted must grow by exactly the number of pages, or the run fails.

use crate::sys::{self, timed};
use crate::{BenchResult, Failure, progress, samples};
use ivshmem::{CacheMode, Device, Mapping};
use std::sync::Barrier;

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;
const HUGE: usize = 2 * MIB;

/// Touches every page once from `threads` threads; returns nanoseconds from
/// the start barrier to the last thread done.
fn storm(map: &Mapping, threads: usize) -> Result<f64, Failure> {
    let pages = map.len() / PAGE;
    let ptr = map.as_ptr() as usize;
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    for p in (t..pages).step_by(threads) {
                        // SAFETY: Here `p < pages = map.len() / PAGE`, so the
                        // byte at `ptr + p * PAGE` lies inside the mapping
                        // `map`, which is borrowed for the whole thread scope
                        // and so stays mapped until every thread has been
                        // joined.
                        std::hint::black_box(unsafe {
                            ((ptr + p * PAGE) as *const u8).read_volatile()
                        });
                    }
                })
            })
            .collect();
        let (ns, joined) = timed(|| {
            start.wait();
            workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
        });
        if joined.iter().any(Result::is_err) {
            return Err(Failure::Fail("a touching thread panicked".into()));
        }
        Ok(ns)
    })
}

/// The largest ivshmem device and its `/dev/ivshmemN` index.
fn largest_device() -> Result<(u32, usize), Failure> {
    let mut best = None;
    for dev in guest_sys::ivshmem_devices()?.into_iter().map(|d| d.path) {
        let Ok(index) = crate::mapping::index_of(&dev) else {
            continue;
        };
        let size = guest_sys::read_trim(format!("/sys/class/misc/ivshmem{index}/size"))?
            .parse::<usize>()
            .map_err(|e| Failure::Fail(format!("size of ivshmem{index}: {e}")))?;
        if best.is_none_or(|(_, s)| size > s) {
            best = Some((index, size));
        }
    }
    best.ok_or_else(|| Failure::Skip("no ivshmem device".into()))
}

pub fn run() -> BenchResult {
    guest_sys::load_module()?;
    let (index, size) = largest_device()?;
    let want = guest_sys::setting_or("fault_mib", 1024) as usize * MIB;
    // One page in, whole 2 MiB blocks: at most the BAR less 2 MiB.
    let len = want.min(size.saturating_sub(HUGE) / HUGE * HUGE);
    if len == 0 {
        return Err(Failure::Skip(format!(
            "ivshmem{index} is too small ({size} bytes)"
        )));
    }
    let reps = guest_sys::setting_or("reps", 5) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = vec![1, cpus, 4 * cpus];
    counts.dedup();
    let dev = Device::open(index)?;
    // One page in, at a 2 MiB-aligned address: no 2 MiB block lines up.
    let map_one = || dev.map_aligned(PAGE as u64, len, CacheMode::WriteBack, HUGE);
    let pages = (len / PAGE) as u64;
    let case = sys::size_name(len as u64);
    // The host backs the memory on first touch: a first pass, not
    // counted, so that every repetition measures the guest's faults only.
    progress(&format!("faults: {case}, warming up"));
    storm(&map_one()?, cpus)?;
    let mut ns = vec![Vec::new(); counts.len()];
    for rep in 0..reps {
        for k in 0..counts.len() {
            // Rotate the order, so that no thread count always runs first.
            let k = (k + rep) % counts.len();
            let threads = counts[k];
            progress(&format!(
                "faults: {case}, {threads} thread(s), repetition {}/{reps}",
                rep + 1
            ));
            let before = guest_sys::driver_faults(index).ok();
            let map = map_one()?;
            ns[k].push(storm(&map, threads)?);
            drop(map);
            if let (Some(b), Some(a)) = (before, guest_sys::driver_faults(index).ok()) {
                if a[0] - b[0] != pages || a[1] != b[1] || a[2] != b[2] {
                    return Err(Failure::Fail(format!(
                        "{pages} pages touched, but the driver inserted {} PTEs, {} PMDs, {} PUDs",
                        a[0] - b[0],
                        a[1] - b[1],
                        a[2] - b[2]
                    )));
                }
            }
        }
    }
    for (k, threads) in counts.iter().enumerate() {
        let contender = match threads {
            1 => "1 thread".to_string(),
            n => format!("{n} threads"),
        };
        samples("faults", &case, "time", "ns", &contender, &ns[k]);
        let rate: Vec<f64> = ns[k].iter().map(|t| pages as f64 / (t / 1e9)).collect();
        samples("faults", &case, "rate", "faults/s", &contender, &rate);
    }
    Ok(())
}
