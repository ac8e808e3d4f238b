//! Selftests of the sysfs file `shm`: BAR2 as a regular file, for the
//! programs that take a path, `stat` it and map it (Scream's receiver,
//! Sanzu, Looking Glass's `-f`), as they would sysfs `resource2`.

use crate::data;
use crate::fixture::*;
use crate::{Failure, TestResult, check, skip};
use guest_sys::{self as sys, Map, errno};
use ivshmem::Device;
use ivshmem::uapi::IVSHMEM_DOORBELL_MMAP_OFFSET;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::path::Path;

/// The file of device 0.
const SHM: &str = "/sys/class/misc/ivshmem0/shm";
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const PMD: usize = 2 << 20;

/// A copy of the `len` bytes mapped at `map`.
fn copy_out(map: &Map) -> Vec<u8> {
    let mut buf = vec![0u8; map.len];
    // SAFETY: `map` maps `map.len` readable bytes and lives across the copy;
    // `buf` holds as many; nothing else in this process writes meanwhile.
    unsafe { std::ptr::copy_nonoverlapping(map.ptr, buf.as_mut_ptr(), map.len) };
    buf
}

/// `stat` of [`SHM`], as a program that takes a path sizes it: it must be a
/// regular file of BAR2's size. Returns the size, also as a `usize`.
fn stat_shm() -> Result<(u64, usize), Failure> {
    let size: u64 = sys::read_trim("/sys/class/misc/ivshmem0/size")?.parse()?;
    let st = fs::metadata(SHM).map_err(|e| Failure::Fail(format!("stat {SHM}: {e}")))?;
    println!("# stat {SHM}: {:?}, {} bytes", st.file_type(), st.len());
    check!(
        st.file_type().is_file() && st.len() == size,
        "stat {SHM}: {:?} of {} bytes, want a regular file of {size}",
        st.file_type(),
        st.len()
    );
    Ok((size, usize::try_from(size)?))
}

/// `shm` used as Scream's receiver uses a path (`stat`, `open(O_RDONLY)`,
/// `mmap(PROT_READ)`) reads the host's data with the driver bound; opened
/// read-write it writes the guest's, which the host checks. Read-only
/// opens stay read-only, bad requests are refused, aligned mappings get
/// PMD entries, `rmmod` waits for the mappings, and unbinding zaps them
/// (SIGBUS) and removes the file.
pub fn shm_path() -> TestResult {
    let devs = devices(1)?;
    let pci = &devs[0];
    let m = load()?;
    let (size, len) = stat_shm()?;

    // Scream's receiver.
    let ro = File::open(SHM)?;
    let map = Map::new(ro.as_fd(), len, libc::PROT_READ, libc::MAP_SHARED, 0)?;
    data::check_host_wrote(&copy_out(&map), SHM)?;
    println!("# read the host's {len} bytes through a read-only mapping of {SHM}");
    expect_err(
        "PROT_WRITE on an O_RDONLY open",
        Map::new(ro.as_fd(), len, RW, libc::MAP_SHARED, 0),
        libc::EACCES,
    )?;
    // SAFETY: `map` is a mapping this test made and reaches only through raw
    // pointers; mprotect is refused here (and if it were not, would only make
    // it writable).
    let r = unsafe { libc::mprotect(map.ptr.cast(), len, RW) };
    expect_errno(
        "mprotect(PROT_WRITE) of a read-only open's mapping",
        if r == 0 { 0 } else { errno() },
        libc::EACCES,
    )?;

    let rw = OpenOptions::new().read(true).write(true).open(SHM)?;
    for (what, r) in [
        (
            "MAP_PRIVATE",
            Map::new(rw.as_fd(), len, RW, libc::MAP_PRIVATE, 0),
        ),
        (
            "an offset at the end",
            Map::new(rw.as_fd(), PAGE, RW, libc::MAP_SHARED, size as i64),
        ),
        (
            "one page too many",
            Map::new(rw.as_fd(), len + PAGE, RW, libc::MAP_SHARED, 0),
        ),
        (
            "the doorbell page's offset",
            Map::new(
                rw.as_fd(),
                PAGE,
                RW,
                libc::MAP_SHARED,
                IVSHMEM_DOORBELL_MMAP_OFFSET as i64,
            ),
        ),
    ] {
        expect_err(what, r, libc::EINVAL)?;
    }

    // The guest's data, written through a read-write mapping at a 2 MiB
    // boundary (the file's mmap does not align by itself).
    let big = Map::aligned(rw.as_fd(), len, RW, libc::MAP_SHARED, 0, PMD)?;
    drop(rw);
    let before = faults()?;
    let mut buf = vec![0u8; len];
    data::guest_data(&mut buf);
    // SAFETY: `big` maps `len` writable bytes and lives across the copy; `buf`
    // holds as many.
    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), big.ptr, len) };
    let after = faults()?;
    let (pte, pmd) = (after.0 - before.0, after.1 - before.1);
    println!("# wrote the guest's data through {SHM}: {pte} PTE and {pmd} PMD faults");
    let bar_start = pci.bar(2)?.0 as usize;
    let huge = len >= PMD && bar_start % PMD == 0;
    if huge {
        check!(
            big.ptr as usize % PMD == 0,
            "the mapping meant to be 2 MiB-aligned is at {:p}",
            big.ptr
        );
        check!(
            pmd as usize == len / PMD && pte == 0,
            "want {} PMD faults and no PTE fault",
            len / PMD
        );
    }
    let dev = Device::open(0)?;
    let mut text = [0u8; data::TEXT_LEN];
    dev.map_all()?.read_slice(0, &mut text)?;
    check!(
        text[..] == buf[..data::TEXT_LEN],
        "/dev/ivshmem0 reads {:?} where {SHM} wrote the guest's text",
        String::from_utf8_lossy(&text)
    );
    drop(dev);

    // The mappings alone keep the module.
    drop(ro);
    expect_rmmod_refused(&format!("{SHM} was mapped"))?;

    // Unbinding zaps the mappings and removes the file.
    sys::unbind(&pci.path)?;
    check!(!Path::new(SHM).exists(), "{SHM} outlived the unbind");
    expect_sigbus(map.ptr, &format!("{SHM}'s mapping"))?;
    drop((map, big));
    sys::bind(&pci.path)?;
    check!(
        sys::wait_for(10, || Path::new(SHM).exists()),
        "{SHM} did not come back after rebinding"
    );
    m.unload()?;

    if !huge {
        skip!(
            "all but huge entries checked: BAR2 ({len} bytes at {bar_start:#x}) cannot hold a \
             2 MiB page"
        );
    }
    Ok(())
}

/// The kernel's lockdown state file (securityfs).
const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

/// The lockdown level in force, the bracketed word of [`LOCKDOWN`]
/// (securityfs mounted first if it is not); `None` without the lockdown
/// LSM.
fn lockdown_level() -> Result<Option<String>, Failure> {
    if !Path::new("/sys/kernel/security").is_dir() {
        return Ok(None);
    }
    if !Path::new(LOCKDOWN).exists() {
        // SAFETY: Plain C strings that outlive the call; no data argument.
        let r = unsafe {
            libc::mount(
                c"securityfs".as_ptr(),
                c"/sys/kernel/security".as_ptr(),
                c"securityfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 && errno() != libc::EBUSY {
            return Err(Failure::Fail(format!(
                "mounting securityfs: {}",
                guest_sys::errname(errno())
            )));
        }
    }
    let Ok(text) = fs::read_to_string(LOCKDOWN) else {
        return Ok(None);
    };
    Ok(text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .map(str::to_owned))
}

/// Under kernel lockdown (raised to `integrity` at run time, after the
/// module is loaded: a signed-modules kernel would refuse the unsigned
/// module afterwards), sysfs `resource2` cannot be mapped (EPERM), and
/// `shm` still reads the host's data (`stat`, `open(O_RDONLY)`,
/// `mmap(PROT_READ)`) and writes the guest's. The guest stays locked down:
/// run this alone in its guest.
pub fn shm_lockdown() -> TestResult {
    let devs = devices(1)?;
    let pci = &devs[0];
    let Some(level) = lockdown_level()? else {
        skip!(
            "no lockdown LSM in this kernel ({LOCKDOWN} is missing: CONFIG_SECURITY_LOCKDOWN_LSM, which needs MODULE_SIG)"
        );
    };
    check!(
        level == "none",
        "lockdown is at {level:?} before the test raised it"
    );
    let _m = load()?;
    sys::write_sysfs(LOCKDOWN, "integrity")?;
    let level = lockdown_level()?;
    check!(
        level.as_deref() == Some("integrity"),
        "{LOCKDOWN} says {level:?} after writing integrity"
    );
    println!("# lockdown raised to integrity");

    let r2 = pci.path.join("resource2");
    let f = OpenOptions::new().read(true).write(true).open(&r2)?;
    expect_err(
        &format!("mmap of {} under lockdown", r2.display()),
        Map::new(f.as_fd(), PAGE, libc::PROT_READ, libc::MAP_SHARED, 0),
        libc::EPERM,
    )?;

    let (_, len) = stat_shm()?;
    let ro = File::open(SHM)?;
    let map = Map::new(ro.as_fd(), len, libc::PROT_READ, libc::MAP_SHARED, 0)?;
    data::check_host_wrote(&copy_out(&map), SHM)?;
    println!("# under lockdown, {SHM} read the host's {len} bytes (stat, O_RDONLY, PROT_READ)");
    let rw = OpenOptions::new().read(true).write(true).open(SHM)?;
    let w = Map::new(rw.as_fd(), len, RW, libc::MAP_SHARED, 0)?;
    let mut buf = vec![0u8; len];
    data::guest_data(&mut buf);
    // SAFETY: `w` maps `len` writable bytes and lives across the copy; `buf`
    // holds as many.
    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), w.ptr, len) };
    println!("# under lockdown, wrote the guest's data through {SHM}");
    Ok(())
}
