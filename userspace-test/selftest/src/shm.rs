//! Selftests of `/dev/ivshmemN`: the device node, INFO and sysfs, mmap of
//! the shared memory, cache modes, bad input, and removal under users.

use crate::data::{self, pattern};
use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{self as sys, Loaded, PciDev, errname, errno};
use ivshmem::uapi::*;
use ivshmem::{CacheMode, Device};
use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use vmrun_protocol::{Request, server_shm};

const PAGE: usize = 4096;

pub(crate) fn load() -> Result<Loaded, Failure> {
    Ok(Loaded::load()?)
}

fn devices(min: usize) -> Result<Vec<PciDev>, Failure> {
    let d = sys::ivshmem_devices()?;
    if d.len() < min {
        skip!(
            "this guest has {} ivshmem devices, the test needs {min}",
            d.len()
        );
    }
    Ok(d)
}

/// Runs `f` in a child process and returns how it ended: `Ok(code)` for an
/// exit, `Err(signal)` for a signal.
pub(crate) fn in_child(f: impl FnOnce() -> i32) -> Result<Result<i32, i32>, Failure> {
    // SAFETY: the child only runs `f` (volatile accesses to a mapping) and
    // `_exit`s; it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail!("fork: {}", errname(errno()));
    }
    if pid == 0 {
        let code = f();
        // SAFETY: ends the child without running the parent's cleanup.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        fail!("waitpid: {}", errname(errno()));
    }
    Ok(if libc::WIFSIGNALED(status) {
        Err(libc::WTERMSIG(status))
    } else {
        Ok(libc::WEXITSTATUS(status))
    })
}

/// Calls ioctl with a raw command and argument, returning the errno.
fn raw_ioctl(fd: &impl AsFd, cmd: u32, arg: *mut libc::c_void) -> i32 {
    // SAFETY: the driver validates the argument; bad pointers are the point
    // of some callers, and the kernel reports them as EFAULT.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), cmd as _, arg) };
    if r < 0 { errno() } else { 0 }
}

/// Calls mmap with raw arguments; returns the errno (0 = mapped, and then
/// unmapped again).
pub(crate) fn raw_mmap(fd: &impl AsFd, len: usize, prot: i32, flags: i32, off: i64) -> i32 {
    // SAFETY: a new mapping at a kernel-chosen address, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags,
            fd.as_fd().as_raw_fd(),
            off,
        )
    };
    if p == libc::MAP_FAILED {
        return errno();
    }
    // SAFETY: the mapping just made.
    unsafe { libc::munmap(p, len) };
    0
}

/// Read and write, as the tests' mappings are.
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (u32::from(IVSHMEM_IOCTL_MAGIC) << 8) | nr
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// /dev/ivshmemN, INFO and sysfs against what QEMU was given.
pub fn info_sysfs() -> TestResult {
    let sizes = sys::setting_u64s("sizes")?;
    let devs = devices(1)?;
    check!(
        devs.len() == sizes.len(),
        "{} devices, the runner configured {}",
        devs.len(),
        sizes.len()
    );
    let _m = load()?;
    for (i, (pci, size)) in devs.iter().zip(&sizes).enumerate() {
        let node = format!("/dev/ivshmem{i}");
        let md = fs::metadata(&node).map_err(|e| Failure::Fail(format!("{node}: {e}")))?;
        check!(
            md.file_type().is_char_device(),
            "{node} is not a character device"
        );
        check!(
            md.mode() & 0o777 == 0o600,
            "{node} has mode {:o}, want 600",
            md.mode() & 0o777
        );
        check!(
            md.uid() == 0 && md.gid() == 0,
            "{node} is owned by {}:{}",
            md.uid(),
            md.gid()
        );
        let class = format!("/sys/class/misc/ivshmem{i}");
        let parent = fs::canonicalize(format!("{class}/device"))?;
        check!(
            parent == fs::canonicalize(&pci.path)?,
            "{class}/device is {}, want {} (PCI order)",
            parent.display(),
            pci.path.display()
        );
        let info = Device::open(i as u32)?.info()?;
        println!("# {node}: {info:?}");
        check!(
            info.size == *size,
            "{node}: INFO size {} != {size}",
            info.size
        );
        check!(
            info.ivposition == Some(0),
            "{node}: IVPosition {:?} on a plain device",
            info.ivposition
        );
        check!(
            info.vectors == 0 && !info.doorbell,
            "{node}: plain device reports doorbells"
        );
        check!(
            info.raw.features == 0 && info.raw.flags == 0,
            "{node}: features/flags {:?}",
            info.raw
        );
        check!(info.index == i as u32, "{node}: index {}", info.index);
        check!(info.revision == 1, "{node}: revision {}", info.revision);
        let addr = format!(
            "{:04x}:{:02x}:{:02x}.{}",
            info.pci.0, info.pci.1, info.pci.2, info.pci.3
        );
        check!(
            addr == pci.address(),
            "{node}: INFO PCI address {addr} != {}",
            pci.address()
        );
        check!(
            info.raw.reserved == [0; 4] && info.raw.pad0 == 0,
            "{node}: reserved fields set"
        );
        let (start, end) = pci.bar(2)?;
        check!(
            end + 1 - start == *size,
            "{node}: BAR2 is {} bytes",
            end + 1 - start
        );
        for (attr, want) in [
            ("size", size.to_string()),
            ("ivposition", "0".into()),
            ("vectors", "0".into()),
            ("revision", "1".into()),
            ("features", "plain".into()),
        ] {
            let got = sys::read_trim(format!("{class}/{attr}"))?;
            check!(got == want, "{class}/{attr} is {got:?}, want {want:?}");
            let mode = fs::metadata(format!("{class}/{attr}"))?.mode() & 0o777;
            check!(mode == 0o444, "{class}/{attr} has mode {mode:o}");
        }
    }
    Ok(())
}

/// The host's pattern is visible in the guest, the guest's reaches the host
/// (checked by the runner after the guest ends).
pub fn host_data() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let dev = Device::open(0)?;
    let map = dev.map_all()?;
    let len = map.len();
    let mut text = [0u8; data::TEXT_LEN];
    map.read_slice(0, &mut text)?;
    check!(
        text.starts_with(data::HOST_TEXT.as_bytes()),
        "offset 0 holds {:?}, not the host's text",
        String::from_utf8_lossy(&text)
    );
    let mut buf = vec![0u8; 1 << 16];
    let mut off = data::TEXT_LEN;
    while off < len {
        let n = buf.len().min(len - off);
        map.read_slice(off, &mut buf[..n])?;
        if let Some(i) = (0..n).find(|i| buf[*i] != pattern(data::HOST_SEED, (off + i) as u64)) {
            fail!(
                "byte {:#x} is {:#04x}, the host wrote {:#04x}",
                off + i,
                buf[i],
                pattern(data::HOST_SEED, (off + i) as u64)
            );
        }
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(data::GUEST_SEED, (off + i) as u64);
        }
        map.write_slice(off, &buf[..n])?;
        off += n;
    }
    println!("# checked the host's {len} bytes, wrote the guest's");
    Ok(())
}

/// The C example, built against the UAPI header, reads INFO and maps.
pub fn c_example() -> TestResult {
    if !Path::new("/bin/ivshmem-info").exists() {
        skip!("/bin/ivshmem-info (the C example) is not in this initramfs");
    }
    let sizes = sys::setting_u64s("sizes")?;
    let _m = load()?;
    let out = std::process::Command::new("/bin/ivshmem-info")
        .args(["/dev/ivshmem0", data::GUEST_TEXT])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines() {
        println!("# ivshmem-info: {l}");
    }
    check!(
        out.status.success(),
        "ivshmem-info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check!(
        text.contains(&format!(" size={} ivposition=0 ", sizes[0])),
        "wrong INFO from C"
    );
    check!(
        text.contains(&format!("text={}\n", data::HOST_TEXT)),
        "C did not read the host's text"
    );
    Ok(())
}

/// mmap calls the driver or the kernel must refuse.
pub fn mmap_bad() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let dev = Device::open(0)?;
    let size = dev.info()?.size as usize;
    let shared = libc::MAP_SHARED;
    let cases: [(&str, usize, i32, i64, i32); 8] = [
        ("MAP_PRIVATE", PAGE, libc::MAP_PRIVATE, 0, libc::EINVAL),
        ("offset at the end", PAGE, shared, size as i64, libc::EINVAL),
        ("length past the end", size + PAGE, shared, 0, libc::EINVAL),
        (
            "offset + length past the end",
            2 * PAGE,
            shared,
            (size - PAGE) as i64,
            libc::EINVAL,
        ),
        (
            "offset far past the end",
            PAGE,
            shared,
            1 << 62,
            libc::EINVAL,
        ),
        // The kernel itself refuses offsets whose sum overflows.
        (
            "overflowing offset + length",
            2 * PAGE,
            shared,
            -(PAGE as i64),
            libc::EOVERFLOW,
        ),
        ("unaligned offset", PAGE, shared, 100, libc::EINVAL),
        ("zero length", 0, shared, 0, libc::EINVAL),
    ];
    for (what, len, flags, off, want) in cases {
        let got = raw_mmap(&dev, len, RW, flags, off);
        println!("# {what}: {}", errname(got));
        check!(
            got == want,
            "{what}: got {}, want {}",
            errname(got),
            errname(want)
        );
    }
    let got = raw_mmap(&dev, size, RW, shared, 0);
    check!(
        got == 0,
        "a valid mmap of everything failed afterwards: {}",
        errname(got)
    );
    let got = raw_mmap(&dev, PAGE, RW, shared, (size - PAGE) as i64);
    check!(
        got == 0,
        "a valid mmap of the last page failed: {}",
        errname(got)
    );
    Ok(())
}

/// MAP_PRIVATE is refused, whatever the protection and the file's access
/// mode: a private (copy-on-write) mapping of device memory cannot be
/// honoured. The shared mapping of the same range works, so the refusals
/// are the driver's check of VM_MAYSHARE, not a blanket failure. (7.2's
/// Rust binding of VM_MAYSHARE tests VM_MAYEXEC, which every mapping of a
/// file on an exec mount has: a check built on it lets these through.)
pub fn map_private_refused() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let rw = Device::open(0)?;
    let ro = std::fs::File::open("/dev/ivshmem0")?;
    let private = libc::MAP_PRIVATE;
    let cases: [(&str, &dyn AsFd, i32); 4] = [
        ("read-write file, PROT_READ|PROT_WRITE", &rw, RW),
        ("read-write file, PROT_READ", &rw, libc::PROT_READ),
        ("read-only file, PROT_READ", &ro, libc::PROT_READ),
        ("read-write file, PROT_NONE", &rw, libc::PROT_NONE),
    ];
    for (what, fd, prot) in cases {
        let got = raw_mmap(&fd, PAGE, prot, private, 0);
        println!("# MAP_PRIVATE, {what}: {}", errname(got));
        check!(
            got == libc::EINVAL,
            "MAP_PRIVATE, {what}: got {}, want EINVAL",
            errname(got)
        );
    }
    for (what, fd, prot) in [
        ("read-write", &rw as &dyn AsFd, RW),
        ("read-only", &ro, libc::PROT_READ),
    ] {
        let got = raw_mmap(&fd, PAGE, prot, libc::MAP_SHARED, 0);
        println!("# MAP_SHARED, {what} file: {}", errname(got));
        check!(
            got == 0,
            "MAP_SHARED of a {what} file failed: {}",
            errname(got)
        );
    }
    Ok(())
}

/// ioctls the driver must refuse, and its extensible-structure rules.
pub fn ioctl_bad() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let dev = Device::open(0)?;
    let info_size = size_of::<ivshmem_info>();
    let mut big = [0xffu8; 128];
    let mut small = [0u8; 8];
    let cp = |c: &mut ivshmem_cache| (c as *mut ivshmem_cache).cast::<libc::c_void>();
    let cases: Vec<(&str, u32, *mut libc::c_void, i32)> = vec![
        (
            "unknown command of ours",
            ioc(0, 0x7f, 0),
            std::ptr::null_mut(),
            libc::ENOTTY,
        ),
        (
            "another driver's magic",
            0x8008_4201,
            big.as_mut_ptr().cast(),
            libc::ENOTTY,
        ),
        (
            "INFO as a write",
            ioc(IOC_WRITE, 0, info_size),
            big.as_mut_ptr().cast(),
            libc::ENOTTY,
        ),
        (
            "INFO to a NULL pointer",
            IVSHMEM_IOCTL_INFO,
            std::ptr::null_mut(),
            libc::EFAULT,
        ),
        (
            "INFO to a kernel address",
            IVSHMEM_IOCTL_INFO,
            0xffff_8000_0000_0000usize as *mut _,
            libc::EFAULT,
        ),
        (
            "INFO shorter than version 1",
            ioc(IOC_READ, 0, 8),
            small.as_mut_ptr().cast(),
            libc::EINVAL,
        ),
        (
            "SET_CACHE from a bad pointer",
            IVSHMEM_IOCTL_SET_CACHE,
            16usize as *mut _,
            libc::EFAULT,
        ),
    ];
    for (what, cmd, arg, want) in cases {
        let got = raw_ioctl(&dev, cmd, arg);
        println!("# {what}: {}", errname(got));
        check!(
            got == want,
            "{what}: got {}, want {}",
            errname(got),
            errname(want)
        );
    }
    // A newer, longer INFO: our part filled, the rest zeroed.
    let got = raw_ioctl(&dev, ioc(IOC_READ, 0, big.len()), big.as_mut_ptr().cast());
    check!(got == 0, "INFO of 128 bytes: {}", errname(got));
    check!(
        big[info_size..].iter().all(|b| *b == 0),
        "INFO did not zero the unknown tail"
    );
    check!(
        big[..8] == dev.info()?.size.to_le_bytes(),
        "INFO of 128 bytes has the wrong size field"
    );
    for (what, mut c, want) in [
        (
            "reserved field set",
            ivshmem_cache {
                reserved: 1,
                ..Default::default()
            },
            libc::EINVAL,
        ),
        (
            "unknown flag",
            ivshmem_cache {
                flags: 1,
                ..Default::default()
            },
            libc::EINVAL,
        ),
        (
            "unknown mode",
            ivshmem_cache {
                mode: 3,
                ..Default::default()
            },
            libc::EINVAL,
        ),
        (
            "write-combining",
            ivshmem_cache {
                mode: IVSHMEM_CACHE_WC,
                ..Default::default()
            },
            0,
        ),
    ] {
        let got = raw_ioctl(&dev, IVSHMEM_IOCTL_SET_CACHE, cp(&mut c));
        println!("# SET_CACHE {what}: {}", errname(got));
        check!(
            got == want,
            "SET_CACHE {what}: got {}, want {}",
            errname(got),
            errname(want)
        );
    }
    // Longer SET_CACHE: fine with a zero tail, E2BIG with anything else.
    let mut longer = [0u8; 32];
    let got = raw_ioctl(&dev, ioc(IOC_WRITE, 1, 32), longer.as_mut_ptr().cast());
    check!(
        got == 0,
        "SET_CACHE of 32 zero-tailed bytes: {}",
        errname(got)
    );
    longer[20] = 1;
    let got = raw_ioctl(&dev, ioc(IOC_WRITE, 1, 32), longer.as_mut_ptr().cast());
    check!(
        got == libc::E2BIG,
        "SET_CACHE with a nonzero unknown tail: {}, want E2BIG",
        errname(got)
    );
    let got = raw_ioctl(&dev, ioc(IOC_WRITE, 1, 8), longer.as_mut_ptr().cast());
    check!(
        got == libc::EINVAL,
        "SET_CACHE shorter than version 1: {}, want EINVAL",
        errname(got)
    );
    Ok(())
}

fn memtypes_of(start: u64, end: u64) -> Result<Vec<String>, Failure> {
    let list = sys::read_trim("/sys/kernel/debug/x86/pat_memtype_list")?;
    let want = format!("[mem {start:#018x}-{:#018x}]", end + 1);
    Ok(list
        .lines()
        .filter(|l| l.contains(&want))
        .map(|l| l.rsplit(']').next().unwrap_or("").trim().to_string())
        .collect())
}

/// The first device and the size of its BAR2; skips the test when the
/// firmware left BAR2 unassigned.
pub(crate) fn bar_size() -> Result<(PciDev, usize), Failure> {
    let devs = devices(1)?;
    let (start, end) = devs[0].bar(2)?;
    if start == 0 {
        skip!("the firmware left BAR2 unassigned");
    }
    let dev = devs
        .into_iter()
        .next()
        .ok_or_else(|| Failure::Fail("no device".into()))?;
    Ok((dev, (end + 1 - start) as usize))
}

/// The memtype a write-back request for `dev`'s BAR2 gets: "write-back",
/// or "uncached-minus" where a variable MTRR marks it uncachable.
pub(crate) fn mtrr_wb_name(dev: &PciDev) -> Result<&'static str, Failure> {
    let (start, end) = dev.bar(2)?;
    Ok(if mtrr_uncachable(start, end)? {
        "uncached-minus"
    } else {
        "write-back"
    })
}

/// Whether a variable MTRR marks part of `[start, end]` uncachable
/// (`/proc/mtrr`). The kernel then turns a write-back memtype request into
/// uncached-minus (`pat_x_mtrr_type()`): that is the effective type anyway.
fn mtrr_uncachable(start: u64, end: u64) -> Result<bool, Failure> {
    let Ok(text) = fs::read_to_string("/proc/mtrr") else {
        return Ok(false);
    };
    for l in text.lines().filter(|l| l.ends_with("uncachable")) {
        // regNN: base=0x0c0000000 ( 3072MB), size= 1024MB, count=1: uncachable
        let field = |key: &str| l.split(key).nth(1).map(|r| r.trim_start());
        let base = field("base=0x")
            .and_then(|r| u64::from_str_radix(r.split_whitespace().next()?, 16).ok());
        let size = field("size=").and_then(|r| {
            let t = r.split(',').next()?.trim();
            let (n, unit) = t.split_at(t.len() - 2);
            let n: u64 = n.trim().parse().ok()?;
            Some(n << if unit == "MB" { 20 } else { 10 })
        });
        match (base, size) {
            (Some(b), Some(sz)) if b <= end && start < b + sz => return Ok(true),
            (Some(_), Some(_)) => {}
            _ => fail!("cannot parse /proc/mtrr line {l:?}"),
        }
    }
    Ok(false)
}

/// Each cache mode shows up as the matching memtype of BAR2 in the PAT
/// memtype list while mapped, and modes do not alias. The driver reserves
/// write-back at bind, keeps the last mode after unmapping, and releases
/// the memtype when the device is unbound.
pub fn pat_memtype() -> TestResult {
    let devs = devices(1)?;
    if !Path::new("/sys/kernel/debug/x86/pat_memtype_list").exists() {
        skip!("no /sys/kernel/debug/x86/pat_memtype_list (PAT off or no debugfs)");
    }
    let (start, end) = devs[0].bar(2)?;
    let size = (end + 1 - start) as usize;
    // Not bound yet (`load` refuses a loaded module): no memtype.
    check!(
        memtypes_of(start, end)?.is_empty(),
        "BAR2 has a memtype before the driver is loaded"
    );
    let m = load()?;
    let wb = if mtrr_uncachable(start, end)? {
        println!(
            "# BAR2 at {start:#x} is in an uncachable MTRR range: write-back becomes uncached-minus"
        );
        "uncached-minus"
    } else {
        "write-back"
    };
    let types = memtypes_of(start, end)?;
    check!(
        types == [wb],
        "BAR2 memtype {types:?} after bind, before any mapping: want [{wb:?}]"
    );
    for (mode, name, other) in [
        (CacheMode::WriteBack, wb, CacheMode::Uncached),
        (
            CacheMode::WriteCombining,
            "write-combining",
            CacheMode::WriteBack,
        ),
        (
            CacheMode::Uncached,
            "uncached-minus",
            CacheMode::WriteCombining,
        ),
    ] {
        let dev = Device::open(0)?;
        let map = dev.map(0, size, mode)?;
        map.write_volatile(PAGE, 0x1234_5678u32)?;
        check!(
            map.read_volatile::<u32>(PAGE)? == 0x1234_5678,
            "{name}: read back failed"
        );
        let types = memtypes_of(start, end)?;
        println!("# {mode:?}: BAR2 memtype {types:?}");
        check!(
            types == [name],
            "{mode:?}: BAR2 memtype {types:?}, want [{name:?}]"
        );
        // Another mode would alias: refused while this mapping lives.
        let dev2 = Device::open(0)?;
        match dev2.map(0, PAGE, other) {
            Err(e) if ivshmem::errno(&e) == Some(libc::EBUSY) => {}
            Err(e) => fail!("{other:?} while {mode:?} is mapped: {e}, want EBUSY"),
            Ok(_) => fail!("{other:?} mapped while {mode:?} is mapped (PAT alias)"),
        }
        // The same mode is fine.
        drop(dev2.map(0, PAGE, mode)?);
        drop(map);
        // Kept for the next first mapping in the same mode.
        let types = memtypes_of(start, end)?;
        check!(
            types == [name],
            "{mode:?}: memtype {types:?} after unmapping, want [{name:?}] kept"
        );
    }
    // Unbinding releases it.
    m.unload()?;
    let types = memtypes_of(start, end)?;
    check!(
        types.is_empty(),
        "memtype {types:?} left after the driver was unloaded"
    );
    Ok(())
}

pub(crate) fn faults() -> Result<(u64, u64, u64), Failure> {
    let s = sys::read_trim("/sys/class/misc/ivshmem0/faults")?;
    let n: Vec<u64> = s
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match n.as_slice() {
        [pte, pmd, pud] => Ok((*pte, *pmd, *pud)),
        _ => fail!("faults reads {s:?}"),
    }
}

/// A large, aligned mapping is populated with PMD entries, not PTEs.
pub fn huge_faults() -> TestResult {
    let devs = devices(1)?;
    let _m = load()?;
    let (start, end) = devs[0].bar(2)?;
    let size = (end + 1 - start) as usize;
    const PMD: usize = 2 << 20;
    if size < PMD || start as usize % PMD != 0 {
        skip!("BAR2 ({size} bytes at {start:#x}) cannot hold a 2 MiB page");
    }
    let dev = Device::open(0)?;
    let map = dev.map(0, size, CacheMode::WriteBack)?;
    check!(
        map.as_ptr() as usize % PMD == 0,
        "the mapping at {:p} is not 2 MiB-aligned",
        map.as_ptr()
    );
    let before = faults()?;
    let mut off = 0;
    while off < size {
        map.write_volatile(off, off as u64)?;
        off += PAGE;
    }
    let after = faults()?;
    let (pte, pmd) = (after.0 - before.0, after.1 - before.1);
    println!(
        "# touched {} pages: {pte} PTE and {pmd} PMD faults",
        size / PAGE
    );
    check!(
        pmd as usize == size / PMD && pte == 0,
        "want {} PMD faults and no PTE fault",
        size / PMD
    );
    // A mapping that starts off a 2 MiB boundary falls back to PTEs.
    let small = dev.map(PAGE as u64, PMD, CacheMode::WriteBack)?;
    let before = faults()?;
    small.write_volatile(0, 1u64)?;
    let after = faults()?;
    check!(
        after.0 == before.0 + 1 && after.1 == before.1,
        "unaligned mapping: {before:?} -> {after:?}"
    );
    Ok(())
}

/// A BAR of 4 GiB or more: markers at both ends and across the 4 GiB line.
pub fn big_bar() -> TestResult {
    let want = sys::setting_u64s("big")?[0];
    let devs = devices(1)?;
    let (start, _) = devs[0].bar(2)?;
    if start == 0 {
        skip!("the firmware left the {want}-byte BAR2 unassigned (64-bit PCI window too small)");
    }
    let _m = load()?;
    let dev = Device::open(0)?;
    let info = dev.info()?;
    check!(info.size == want, "INFO size {} != {want}", info.size);
    let map = dev.map_all()?;
    for off in data::big_offsets(info.size) {
        let o = off as usize;
        let v: u64 = map.read_volatile(o)?;
        check!(v == off, "marker at {off:#x} reads {v:#x}");
        map.write_volatile(o + 8, !off)?;
    }
    println!("# {} bytes mapped, markers checked and answered", info.size);
    Ok(())
}

/// A debugger can read and write the mapping: `/proc/self/mem`, the path
/// of gdb and of ptrace's PEEK/POKE, reaches the shared memory through the
/// mapping's `access` operation, across a page boundary too.
pub fn mem_access() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let dev = Device::open(0)?;
    let map = dev.map(0, 2 * PAGE, CacheMode::WriteBack)?;
    // Touched, so that both pages are mapped.
    map.write_volatile(8, 0x5eed_cafe_u32)?;
    map.write_volatile(PAGE, 0x0001_0203_u32)?;
    let mem = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/mem")?;
    let addr = map.as_ptr() as u64;
    let mut word = [0u8; 4];
    let r = mem.read_at(&mut word, addr + 8);
    println!("# /proc/self/mem read of the mapping: {r:?}, {word:x?}");
    check!(
        matches!(r, Ok(4)) && u32::from_ne_bytes(word) == 0x5eed_cafe,
        "reading the mapping through /proc/self/mem: {r:?}, {word:x?}"
    );
    let w = mem.write_at(&0x0bad_f00d_u32.to_ne_bytes(), addr + 12);
    let v: u32 = map.read_volatile(12)?;
    check!(
        matches!(w, Ok(4)) && v == 0x0bad_f00d,
        "writing the mapping through /proc/self/mem: {w:?}, the mapping reads {v:#x}"
    );
    let mut across = [0u8; 16];
    let r = mem.read_at(&mut across, addr + PAGE as u64 - 8);
    let tail = u32::from_ne_bytes([across[8], across[9], across[10], across[11]]);
    check!(
        matches!(r, Ok(16)) && tail == 0x0001_0203,
        "reading across a page boundary: {r:?}, {across:x?}"
    );
    Ok(())
}

/// Removes the device (by `remove`), checks that users see SIGBUS and
/// ENODEV, then brings it back (by `restore`) and checks it works again.
fn removal(
    remove: &dyn Fn(&PciDev) -> TestResult,
    restore: &dyn Fn(&PciDev) -> TestResult,
) -> TestResult {
    let devs = devices(1)?;
    let pci = &devs[0];
    let _m = load()?;
    let dev = Device::open(0)?;
    let map = dev.map_all()?;
    map.write_volatile(0, 0xfeed_f00du32)?;
    // An ioctl loop running while the device goes. It says when it has
    // made its first call, and runs until a call fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = std::sync::mpsc::channel();
    let looper = {
        let fd = Device::open(0)?;
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut calls = 0u64;
            loop {
                // Read before the call: a call made after `stop` was set
                // (the device is gone by then) must fail.
                let last = stop.load(Ordering::Acquire);
                match fd.info() {
                    Ok(_) => calls += 1,
                    Err(e) => return (calls, ivshmem::errno(&e)),
                }
                if calls == 1 {
                    started_tx.send(()).ok();
                }
                if last {
                    return (calls, None);
                }
            }
        })
    };
    started
        .recv()
        .map_err(|_| Failure::Fail("the ioctl loop never made a call".into()))?;
    remove(pci)?;
    check!(
        sys::wait_for(60, || !sys::node_exists(0)),
        "/dev/ivshmem0 still exists after removal"
    );
    stop.store(true, Ordering::Release);
    let (calls, err) = looper
        .join()
        .map_err(|_| Failure::Fail("ioctl loop panicked".into()))?;
    println!("# ioctl loop: {calls} calls, then {:?}", err.map(errname));
    check!(
        err == Some(libc::ENODEV),
        "the ioctl loop ended with {:?}, want ENODEV",
        err.map(errname)
    );
    gone_first(&dev)?;
    let ptr = map.as_ptr();
    let ended = in_child(|| {
        // SAFETY: a volatile read of the (zapped) mapping, in a child.
        let v = unsafe { ptr.cast::<u32>().read_volatile() };
        // Reaching here means no SIGBUS: exit with a code that says so.
        if v == 0xfeed_f00d { 10 } else { 11 }
    })?;
    check!(
        ended == Err(libc::SIGBUS),
        "touching the old mapping: {ended:?}, want SIGBUS"
    );
    for (what, r) in [
        ("INFO", dev.info().err()),
        ("mmap", dev.map(0, PAGE, CacheMode::WriteBack).err()),
    ] {
        let e = r.and_then(|e| ivshmem::errno(&e));
        check!(
            e == Some(libc::ENODEV),
            "{what} on the old file: {:?}, want ENODEV",
            e.map(errname)
        );
    }
    drop(map);
    restore(pci)?;
    check!(
        sys::wait_for(60, || sys::node_exists(0)),
        "/dev/ivshmem0 did not come back"
    );
    let dev2 = Device::open(0)?;
    let map2 = dev2.map_all()?;
    let v: u32 = map2.read_volatile(0)?;
    check!(
        v == 0xfeed_f00d,
        "the new device reads {v:#x} where the old one wrote 0xfeedf00d"
    );
    let e = dev.info().err().and_then(|e| ivshmem::errno(&e));
    check!(
        e == Some(libc::ENODEV),
        "the old file works again after rebinding: {:?}",
        e.map(errname)
    );
    Ok(())
}

/// Once the device is gone, every call on an old file says ENODEV first,
/// whatever else is wrong with it (here: a plain device, which has no
/// doorbells, a buffer too small for an event, a foreign ioctl).
fn gone_first(dev: &Device) -> TestResult {
    let fd = dev.as_fd().as_raw_fd();
    let mut small = [0u8; 8];
    // SAFETY: reads at most 8 bytes into `small`.
    let short = unsafe { libc::read(fd, small.as_mut_ptr().cast(), small.len()) };
    let short = if short < 0 { errno() } else { 0 };
    let mut foreign = 0u64;
    // TCGETS, a terminal ioctl.
    let tty = raw_ioctl(dev, 0x5401, (&raw mut foreign).cast());
    let mut ring = ivshmem_ring::default();
    let ring_cmd = ioc(IOC_WRITE, 2, std::mem::size_of::<ivshmem_ring>());
    let ring = raw_ioctl(dev, ring_cmd, (&raw mut ring).cast());
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, no wait.
    let polled = unsafe { libc::poll(&mut p, 1, 0) };
    let errno_of = |r: std::io::Result<Vec<ivshmem::Event>>| {
        r.err().and_then(|e| ivshmem::errno(&e)).unwrap_or(0)
    };
    for (what, got) in [
        ("read of a plain device", errno_of(dev.read_events())),
        ("read of 8 bytes", short),
        ("a foreign ioctl (TCGETS)", tty),
        ("RING on a plain device", ring),
    ] {
        println!("# after removal, {what}: {}", errname(got));
        check!(
            got == libc::ENODEV,
            "after removal, {what}: {}, want ENODEV",
            errname(got)
        );
    }
    let hup = libc::POLLHUP | libc::POLLERR;
    check!(
        polled == 1 && p.revents & hup == hup,
        "after removal, poll: {polled}, revents {:#x}, want POLLHUP | POLLERR",
        p.revents
    );
    Ok(())
}

/// sysfs unbind under a mapping and an ioctl loop; rebind.
pub fn unbind_rebind() -> TestResult {
    removal(&|pci| Ok(sys::unbind(&pci.path)?), &|pci| {
        Ok(sys::bind(&pci.path)?)
    })
}

/// QMP device_del / device_add under a mapping and an ioctl loop.
pub fn hotplug() -> TestResult {
    removal(
        &|pci| {
            println!("{}", Request::DeviceDel("shm0".into()).line());
            if sys::wait_for(60, || !pci.path.exists()) {
                Ok(())
            } else {
                fail!("{} still present 60 s after device_del", pci.address())
            }
        },
        &|_| {
            println!("{}", Request::DeviceAdd("shm0".into()).line());
            Ok(())
        },
    )
}

/// The module's KUnit suites pass (they run when it loads).
pub fn kunit() -> TestResult {
    let _m = load()?;
    if !Path::new("/sys/kernel/debug/kunit").exists() {
        skip!("no KUnit in this kernel (CONFIG_KUNIT)");
    }
    for (suite, cases) in [
        ("ivshmem_shm", &["mmap_ranges"][..]),
        (
            "ivshmem_intx",
            &[
                "intx_enable_sets_the_mask",
                "intx_unbind_clears_the_mask_and_the_status",
                "intx_status_zero_is_not_ours",
                "intx_status_set_is_acknowledged_and_counted",
            ][..],
        ),
        (
            "ivshmem_doorbell",
            &["pending_is_round_robin_and_masked"][..],
        ),
    ] {
        let results = sys::read_trim(format!("/sys/kernel/debug/kunit/{suite}/results"))?;
        for l in results.lines() {
            println!("#   {l}");
        }
        for c in cases {
            check!(
                results
                    .lines()
                    .any(|l| l.trim().starts_with("ok ") && l.trim().ends_with(c)),
                "{suite}: {c} did not pass"
            );
        }
        check!(!results.contains("not ok"), "{suite}: a KUnit case failed");
    }
    Ok(())
}

/// rmmod is refused while a file is open or a mapping exists.
pub fn rmmod_busy() -> TestResult {
    devices(1)?;
    let m = load()?;
    let dev = Device::open(0)?;
    let map = dev.map(0, PAGE, CacheMode::WriteBack)?;
    let try_rmmod = || {
        std::process::Command::new("rmmod")
            .arg("ivshmem")
            .output()
            .map(|o| o.status.success())
    };
    check!(!try_rmmod()?, "rmmod succeeded with an open file");
    drop(dev);
    check!(!try_rmmod()?, "rmmod succeeded with a mapping");
    check!(sys::module_loaded()?, "the module is gone");
    map.write_volatile(0, 7u32)?;
    drop(map);
    Ok(m.unload()?)
}

/// 50 insmod/rmmod cycles, each binding every device.
pub fn module_cycles() -> TestResult {
    let devs = devices(1)?;
    for i in 0..50 {
        let m = load()?;
        for d in &devs {
            check!(
                d.driver().as_deref() == Some(sys::MODULE),
                "cycle {i}: {} not bound",
                d.address()
            );
        }
        check!(
            sys::node_exists(devs.len() - 1),
            "cycle {i}: /dev/ivshmem{} missing",
            devs.len() - 1
        );
        m.unload()?;
    }
    check!(!sys::node_exists(0), "/dev/ivshmem0 outlives the module");
    Ok(())
}

/// An ivshmem-doorbell device on the runner's ivshmem server: INFO and
/// sysfs say doorbell, the configured vectors, and the IVPosition the
/// server gave, which the host then finds in its client's peer list.
pub fn doorbell_info() -> TestResult {
    let vectors = sys::setting_u64s("vectors")?[0];
    devices(1)?;
    let _m = load()?;
    let dev = Device::open(0)?;
    let info = dev.info()?;
    println!("# {info:?}");
    check!(
        info.doorbell && info.raw.features & IVSHMEM_FEATURE_MSIX != 0,
        "not a doorbell device"
    );
    check!(
        u64::from(info.vectors) == vectors,
        "{} vectors, QEMU has {vectors}",
        info.vectors
    );
    let Some(id) = info.ivposition else {
        fail!(
            "IVPosition {} on a revision 1 doorbell device",
            info.raw.ivposition
        );
    };
    let class = "/sys/class/misc/ivshmem0";
    for (attr, want) in [
        ("ivposition", id.to_string()),
        ("vectors", vectors.to_string()),
        ("features", "doorbell msix".into()),
    ] {
        let got = sys::read_trim(format!("{class}/{attr}"))?;
        check!(got == want, "{class}/{attr} is {got:?}, want {want:?}");
    }
    println!("# ivposition={id}");
    let map = dev.map_all()?;
    let ack_at = server_shm::peer_ack_slot(id);
    println!("{}", Request::Peers(id).line());
    let want = server_shm::ack(id);
    let acked = sys::wait_for(60, || map.read_volatile::<u64>(ack_at).ok() == Some(want));
    check!(
        acked,
        "the host did not confirm peer {id} in its client's peer list"
    );
    Ok(())
}

/// A device node made with mknod on another file system works, and the
/// driver does not pin that file system: it is busy while mapped, and
/// unmounts cleanly (no "Busy inodes") once the mapping is gone.
pub fn other_node() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let dev = sys::read_trim("/sys/class/misc/ivshmem0/dev")?;
    let (major, minor) = dev
        .split_once(':')
        .ok_or("bad dev attribute")
        .map_err(|e| Failure::Fail(e.into()))?;
    let (major, minor): (u32, u32) = (major.parse()?, minor.parse()?);
    let dir = c"/tmp/other-node";
    let node = c"/tmp/other-node/ivshmem";
    fs::create_dir_all("/tmp/other-node")?;
    // SAFETY: plain system calls on NUL-terminated paths.
    unsafe {
        if libc::mount(
            c"none".as_ptr(),
            dir.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            fail!("mounting a tmpfs: {}", errname(errno()));
        }
        if libc::mknod(
            node.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(major, minor),
        ) != 0
        {
            fail!("mknod: {}", errname(errno()));
        }
    }
    let d = Device::open_path("/tmp/other-node/ivshmem")?;
    let map = d.map(0, PAGE, CacheMode::WriteBack)?;
    map.write_volatile(0, 0x0dd_0de_u32)?;
    drop(d);
    // SAFETY: a plain system call.
    let busy = unsafe { libc::umount(dir.as_ptr()) };
    let busy_errno = errno();
    check!(
        busy != 0 && busy_errno == libc::EBUSY,
        "unmount while mapped: {}",
        errname(if busy == 0 { 0 } else { busy_errno })
    );
    drop(map);
    // SAFETY: a plain system call.
    let r = unsafe { libc::umount(dir.as_ptr()) };
    check!(
        r == 0,
        "unmount after the mapping is gone: {}",
        errname(errno())
    );
    Ok(())
}
