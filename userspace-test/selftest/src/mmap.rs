//! Selftests of mmap of the shared memory: bad requests, MAP_PRIVATE,
//! cache modes and PAT memtypes, huge entries, big BARs, access.

use crate::data;
use crate::fixture::*;
use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{self as sys, errname};
use ivshmem::{CacheMode, Device};
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

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
        expect_errno(what, raw_mmap(&dev, len, RW, flags, off), want)?;
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
        expect_errno(&format!("MAP_PRIVATE, {what}"), got, libc::EINVAL)?;
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

/// Device memory is never executable: mmap with PROT_EXEC is refused
/// (EPERM) and VM_MAYEXEC is cleared, so mprotect cannot add PROT_EXEC to
/// a mapping later (EACCES), whichever cache mode it has.
pub fn mmap_noexec() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let dev = Device::open(0)?;
    for (what, prot) in [
        ("PROT_READ|PROT_WRITE|PROT_EXEC", RW | libc::PROT_EXEC),
        ("PROT_READ|PROT_EXEC", libc::PROT_READ | libc::PROT_EXEC),
        ("PROT_EXEC", libc::PROT_EXEC),
    ] {
        let got = raw_mmap(&dev, PAGE, prot, libc::MAP_SHARED, 0);
        expect_errno(&format!("mmap {what}"), got, libc::EPERM)?;
    }
    for mode in [
        CacheMode::WriteBack,
        CacheMode::WriteCombining,
        CacheMode::Uncached,
    ] {
        dev.set_cache_mode(mode)?;
        let map = sys::Map::shared(dev.as_fd(), PAGE, 0)?;
        let got = map
            .protect(libc::PROT_READ | libc::PROT_EXEC)
            .err()
            .map_or(0, |e| e.raw_os_error().unwrap_or(0));
        expect_errno(
            &format!("mprotect(PROT_READ|PROT_EXEC), {mode:?}"),
            got,
            libc::EACCES,
        )?;
        map.protect(libc::PROT_READ)?;
        map.touch();
    }
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
        let dev2 = Device::open(0)?;
        // The MTRRs made the write-back reservation UC-: an uncached
        // request gets what is held, so it is no alias (F12/N6).
        let other = if mode == CacheMode::WriteBack && wb == "uncached-minus" {
            let also = dev2.map(0, PAGE, CacheMode::Uncached);
            check!(
                also.is_ok(),
                "Uncached while write-back (held as uncached-minus) is mapped: {:?}, want success",
                also.err()
            );
            drop(also);
            let types = memtypes_of(start, end)?;
            check!(
                types == [wb],
                "memtype {types:?} after an Uncached mapping of the UC- reservation, want [{wb:?}]"
            );
            CacheMode::WriteCombining
        } else {
            other
        };
        // Another mode would alias: refused while this mapping lives.
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
