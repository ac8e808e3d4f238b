//! The benchmarks' own guest helpers: timing, sizes, the CPU model, timed
//! mappings, and what the kernel says of a process's page tables. The
//! helpers the selftests share (settings, sysfs, the module, PCI functions,
//! eventfds, [`Map`]) are in the `guest-sys` crate.

use guest_sys::Map;
use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Instant;

/// The CPU model the guest sees.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}

/// Nanoseconds taken by `f`, with its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed().as_nanos() as f64, r)
}

/// Maps `len` bytes of `fd` at `offset`, shared, read-write; returns the
/// nanoseconds the mmap call took too.
pub fn map_timed(
    fd: BorrowedFd<'_>,
    len: usize,
    offset: libc::off_t,
) -> Result<(f64, Map), String> {
    let (ns, map) = timed(|| Map::shared(fd, len, offset));
    let map = map.map_err(|e| format!("mmap of {len} bytes at offset {offset:#x}: {e}"))?;
    Ok((ns, map))
}

/// A human size: "4 MiB", "8 GiB".
pub fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// This process's page-table memory, in KiB: `VmPTE` in
/// `/proc/self/status`, the kernel's count of the page-table pages of the
/// process (`mm_pgtables_bytes`: PTE, PMD and PUD tables).
pub fn vm_pte_kib() -> Option<u64> {
    fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmPTE:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `PAGEMAP_SCAN`: `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u32 = (3 << 30) | ((size_of::<PmScanArg>() as u32) << 16) | (0x66 << 8) | 16;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_HUGE: u64 = 1 << 6;

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// What the kernel's two readers of a process's page tables report of
/// `len` bytes at `ptr`, in 4 KiB pages: (pages `/proc/self/pagemap`
/// marks present, pages `PAGEMAP_SCAN` reports present, of those huge).
pub fn pagemap_present(ptr: *const u8, len: usize) -> Result<(u64, u64, u64), String> {
    const PAGE: usize = 4096;
    let pages = len / PAGE;
    let f = fs::File::open("/proc/self/pagemap").map_err(|e| format!("/proc/self/pagemap: {e}"))?;
    let mut buf = vec![0u8; pages * 8];
    let off = (ptr as usize / PAGE * 8) as u64;
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, off)
        .map_err(|e| format!("reading /proc/self/pagemap: {e}"))?;
    let present = buf
        .chunks_exact(8)
        .filter(|e| u64::from_ne_bytes((*e).try_into().unwrap_or_default()) >> 63 == 1)
        .count() as u64;
    let (mut scan, mut huge) = (0u64, 0u64);
    let mut regions = [PageRegion::default(); 64];
    let end = ptr as u64 + len as u64;
    let mut start = ptr as u64;
    while start < end {
        let mut arg = PmScanArg {
            size: size_of::<PmScanArg>() as u64,
            start,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_mask: PAGE_IS_PRESENT,
            return_mask: PAGE_IS_PRESENT | PAGE_IS_HUGE,
            ..PmScanArg::default()
        };
        // SAFETY: The `arg` is a valid pm_scan_arg whose `vec` points to
        // `regions`, `vec_len` entries that live across the call; the kernel
        // writes at most that many and `walk_end`.
        let n = unsafe { libc::ioctl(f.as_raw_fd(), PAGEMAP_SCAN as _, &raw mut arg) };
        if n < 0 {
            return Err(format!("PAGEMAP_SCAN: {}", std::io::Error::last_os_error()));
        }
        for r in &regions[..n as usize] {
            let p = (r.end - r.start) / PAGE as u64;
            scan += p;
            if r.categories & PAGE_IS_HUGE != 0 {
                huge += p;
            }
        }
        if arg.walk_end <= start {
            break;
        }
        start = arg.walk_end;
    }
    Ok((present, scan, huge))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_scan_matches_the_uapi_header() {
        // <linux/fs.h>: _IOWR('f', 16, struct pm_scan_arg), 96 bytes.
        assert_eq!(size_of::<PmScanArg>(), 96);
        assert_eq!(size_of::<PageRegion>(), 24);
        assert_eq!(PAGEMAP_SCAN, 0xc060_6610);
    }

    #[test]
    fn pagemap_readers_see_anonymous_memory() {
        // The control of the in-guest probe, on the host: both readers
        // report touched anonymous pages as present (PAGEMAP_SCAN needs
        // Linux 6.7 or later on the host).
        let v = vec![1u8; 64 << 10];
        let start = (v.as_ptr() as usize).next_multiple_of(4096);
        let len = (v.as_ptr() as usize + v.len() - start) / 4096 * 4096;
        let (present, scan, _) = pagemap_present(start as *const u8, len).unwrap();
        assert_eq!(present, (len / 4096) as u64);
        assert_eq!(scan, (len / 4096) as u64);
    }
}
