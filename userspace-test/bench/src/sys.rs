//! Guest helpers: settings, the module, PCI functions in sysfs, timing,
//! mappings, and what the kernel says of a process's page tables.

use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A setting from the kernel command line (`ivt_KEY=VALUE`), or `default`.
pub fn setting(key: &str, default: u64) -> u64 {
    std::env::var(format!("ivt_{key}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads a file, trimmed.
pub fn read_trim(path: impl AsRef<Path>) -> Result<String, String> {
    let p = path.as_ref();
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {}: {e}", p.display()))
}

/// The CPU model the guest sees.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}

/// Loads the driver module (the runner's initramfs puts it at
/// `/lib/modules/ivshmem.ko`), unless it is loaded already.
pub fn load_module() -> Result<(), String> {
    if fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().next() == Some("ivshmem"))
    {
        return Ok(());
    }
    let out = Command::new("insmod")
        .arg("/lib/modules/ivshmem.ko")
        .output()
        .map_err(|e| format!("cannot run insmod: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "insmod failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Every ivshmem PCI function (`1af4:1110`), in address order.
pub fn ivshmem_functions() -> Result<Vec<PathBuf>, String> {
    let mut v = Vec::new();
    let dir = fs::read_dir("/sys/bus/pci/devices").map_err(|e| e.to_string())?;
    for e in dir.flatten() {
        let p = e.path();
        if read_trim(p.join("vendor")).as_deref() == Ok("0x1af4")
            && read_trim(p.join("device")).as_deref() == Ok("0x1110")
        {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// Writes a sysfs attribute.
pub fn write_sysfs(path: impl AsRef<Path>, value: &str) -> Result<(), String> {
    let p = path.as_ref();
    fs::write(p, value).map_err(|e| format!("writing {value:?} to {}: {e}", p.display()))
}

/// Unbinds our driver from the PCI function at `dev` (so that sysfs
/// `resource2` may map it: `CONFIG_IO_STRICT_DEVMEM` refuses a claimed BAR).
pub fn unbind(dev: &Path) -> Result<(), String> {
    let addr = dev.file_name().unwrap_or_default().to_string_lossy();
    write_sysfs("/sys/bus/pci/drivers/ivshmem/unbind", &addr)
}

/// Binds our driver to the PCI function at `dev` again.
pub fn bind(dev: &Path) -> Result<(), String> {
    let addr = dev.file_name().unwrap_or_default().to_string_lossy();
    write_sysfs("/sys/bus/pci/drivers/ivshmem/bind", &addr)
}

/// The driver's count of page-table entries it inserted for device `index`:
/// (4K, 2M, 1G), from `/sys/class/misc/ivshmemN/faults` (`pte N pmd N pud N`).
pub fn driver_faults(index: u32) -> Option<[u64; 3]> {
    let s = read_trim(format!("/sys/class/misc/ivshmem{index}/faults")).ok()?;
    let w: Vec<&str> = s.split_whitespace().collect();
    let get = |k: &str| {
        w.windows(2)
            .find(|p| p[0] == k)
            .and_then(|p| p[1].parse().ok())
    };
    Some([get("pte")?, get("pmd")?, get("pud")?])
}

/// Nanoseconds taken by `f`, with its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed().as_nanos() as f64, r)
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

/// A shared mapping made with mmap(2), unmapped on drop.
#[derive(Debug)]
pub struct Map {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Map {
    /// Maps `len` bytes of `fd` at offset 0; returns the nanoseconds the
    /// mmap call took too.
    pub fn new(fd: BorrowedFd<'_>, len: usize) -> Result<(f64, Self), String> {
        Self::new_at(fd, len, 0)
    }

    /// Maps `len` bytes of `fd` at `offset`; returns the nanoseconds the
    /// mmap call took too.
    pub fn new_at(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: libc::off_t,
    ) -> Result<(f64, Self), String> {
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
                    offset,
                )
            }
        });
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {len} bytes at offset {offset:#x}: {}",
                std::io::Error::last_os_error()
            ));
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
    pub fn touch(&self) {
        for off in (0..self.len).step_by(4096) {
            // SAFETY: within the mapping.
            std::hint::black_box(unsafe { self.ptr.add(off).read_volatile() });
        }
    }

    /// Reads the `u64` at `off` (8-byte aligned, within the mapping).
    pub fn read_u64(&self, off: usize) -> u64 {
        assert!(
            off % 8 == 0 && off + 8 <= self.len,
            "{off:#x} out of the mapping"
        );
        // SAFETY: in bounds and aligned (checked above); the mapping lives
        // as long as `self`.
        unsafe { self.ptr.add(off).cast::<u64>().read_volatile() }
    }

    /// Writes the `u64` at `off` (8-byte aligned, within the mapping).
    pub fn write_u64(&self, off: usize, v: u64) {
        assert!(
            off % 8 == 0 && off + 8 <= self.len,
            "{off:#x} out of the mapping"
        );
        // SAFETY: as in `read_u64`.
        unsafe { self.ptr.add(off).cast::<u64>().write_volatile(v) }
    }

    /// Writes the `u32` at `off` (4-byte aligned, within the mapping): a
    /// device register.
    pub fn write_u32(&self, off: usize, v: u32) {
        assert!(
            off % 4 == 0 && off + 4 <= self.len,
            "{off:#x} out of the mapping"
        );
        // SAFETY: as in `read_u64`.
        unsafe { self.ptr.add(off).cast::<u32>().write_volatile(v) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new_at` mapped; nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A new eventfd (close-on-exec, plus `flags`).
pub fn eventfd(flags: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: creates a new fd, owned below.
    let fd = unsafe { libc::eventfd(0, flags | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
        // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points to
        // `regions`, `vec_len` entries that live across the call; the
        // kernel writes at most that many and `walk_end`.
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
