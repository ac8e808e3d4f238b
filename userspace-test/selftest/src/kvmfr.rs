//! Selftests of Looking Glass's names for the device: class `kvmfr`, its
//! nodes `/dev/kvmfrN`, and kvmfr's `KVMFR_DMABUF_GETSIZE`, used as Looking
//! Glass's client uses them (common/src/platform/linux/ivshmem.c).
//! `KVMFR_DMABUF_CREATE` is tested in `dmabuf.rs`.

use crate::data;
use crate::fixture::*;
use crate::{Failure, TestResult, check, fail};
use guest_sys::{self as sys, Map, errname};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// `KVMFR_DMABUF_GETSIZE`, `_IO('u', 0x44)`.
pub(crate) const GETSIZE: u32 = 0x7544;
/// `KVMFR_DMABUF_CREATE`, `_IOW('u', 0x42, struct kvmfr_dmabuf_create)`.
pub(crate) const CREATE: u32 = 0x4018_7542;

/// The entries of a sysfs class directory, sorted.
fn class_entries(class: &str, prefix: &str) -> Result<Vec<String>, Failure> {
    let dir = format!("/sys/class/{class}");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| Failure::Fail(format!("{dir}: {e}")))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.retain(|n| n.starts_with(prefix));
    names.sort();
    Ok(names)
}

/// GETSIZE as Looking Glass calls it, `ioctl(fd, KVMFR_DMABUF_GETSIZE, 0)`,
/// on command `cmd`: the ioctl's (int) result, or the errno.
pub(crate) fn getsize(fd: &impl AsFd, cmd: u32) -> Result<i32, i32> {
    ioctl_value(fd, cmd, std::ptr::null_mut())
}

/// INFO's size on `fd`, through the raw ioctl.
fn info_size(fd: &impl AsFd) -> Result<u64, Failure> {
    let len = size_of::<ivshmem::uapi::ivshmem_info>();
    let mut info = vec![0u8; len];
    let e = raw_ioctl(fd, ioc(IOC_READ, 0x00, len), info.as_mut_ptr().cast());
    check!(e == 0, "IVSHMEM_IOCTL_INFO: {}", errname(e));
    // `size` is the first field, a __u64.
    Ok(u64::from_ne_bytes(info[..8].try_into().unwrap()))
}

/// Opens `path` read-write, as Looking Glass does.
pub(crate) fn open_rw(path: &str) -> Result<File, Failure> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Failure::Fail(format!("open {path} O_RDWR: {e}")))
}

/// Checks that `/sys/class/kvmfr` has exactly one `kvmfrN` per
/// `ivshmemN` of class misc, for the same PCI function, and that each
/// `/dev/kvmfrN` is that node.
fn nodes_match(devices: usize) -> TestResult {
    let ivshmem = class_entries("misc", "ivshmem")?;
    let kvmfr = class_entries("kvmfr", "")?;
    println!("# /sys/class/kvmfr: {kvmfr:?}; ivshmem nodes: {ivshmem:?}");
    check!(
        ivshmem.len() == devices,
        "{} ivshmem nodes for {devices} devices",
        ivshmem.len()
    );
    let want: Vec<String> = ivshmem
        .iter()
        .map(|n| n.replacen("ivshmem", "kvmfr", 1))
        .collect();
    check!(
        kvmfr == want,
        "/sys/class/kvmfr lists {kvmfr:?}, want {want:?}"
    );
    for (k, i) in kvmfr.iter().zip(&ivshmem) {
        let kp = fs::canonicalize(format!("/sys/class/kvmfr/{k}/device"))?;
        let ip = fs::canonicalize(format!("/sys/class/misc/{i}/device"))?;
        check!(
            kp == ip,
            "{k} is on {}, {i} on {}",
            kp.display(),
            ip.display()
        );
        let dev = sys::read_trim(format!("/sys/class/kvmfr/{k}/dev"))?;
        let md = fs::metadata(format!("/dev/{k}"))
            .map_err(|e| Failure::Fail(format!("/dev/{k}: {e}")))?;
        check!(
            md.file_type().is_char_device(),
            "/dev/{k} is not a character device"
        );
        let rdev = md.rdev();
        let node = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
        check!(node == dev, "/dev/{k} is {node}, the class device {dev}");
        check!(
            md.mode() & 0o777 == 0o600 && md.uid() == 0 && md.gid() == 0,
            "/dev/{k} has mode {:o}, owner {}:{}; want 600 root:root",
            md.mode() & 0o777,
            md.uid(),
            md.gid()
        );
    }
    Ok(())
}

/// The runner's module loaded with `kvmfr_nodes=0`: no class, no node,
/// `/dev/ivshmem0` as usual; then unloaded.
fn nodes_off() -> TestResult {
    let path = sys::module_path();
    let out = std::process::Command::new("insmod")
        .arg(&path)
        .arg("kvmfr_nodes=0")
        .output()?;
    check!(
        out.status.success(),
        "insmod kvmfr_nodes=0: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let param = sys::read_trim("/sys/module/ivshmem/parameters/kvmfr_nodes");
    let class = Path::new("/sys/class/kvmfr").exists();
    let node = Path::new("/dev/ivshmem0").exists();
    let rm = std::process::Command::new("rmmod")
        .arg("ivshmem")
        .output()?;
    check!(rm.status.success(), "rmmod after kvmfr_nodes=0 failed");
    let param = param?;
    check!(
        param == "N",
        "parameters/kvmfr_nodes reads {param:?}, want N"
    );
    check!(!class, "/sys/class/kvmfr exists with kvmfr_nodes=0");
    check!(node, "no /dev/ivshmem0 with kvmfr_nodes=0");
    Ok(())
}

/// What Looking Glass does with `/dev/kvmfr0`: GETSIZE (== INFO == sysfs),
/// map it all read-write and shared, read the host's data and write the
/// guest's (the runner checks it after the guest ends). Also: one
/// `kvmfrN` per `ivshmemN`; GETSIZE on `/dev/ivshmem0` too; exact numbers
/// only; an open `/dev/kvmfr0` blocks rmmod; the class goes with the
/// module; `kvmfr_nodes=0` makes none.
pub fn kvmfr_getsize() -> TestResult {
    let devs = devices(1)?;
    check!(
        !Path::new("/sys/class/kvmfr").exists(),
        "/sys/class/kvmfr exists before the module is loaded"
    );
    let m = load()?;
    nodes_match(devs.len())?;
    let param = sys::read_trim("/sys/module/ivshmem/parameters/kvmfr_nodes")?;
    check!(
        param == "Y",
        "parameters/kvmfr_nodes reads {param:?}, want Y"
    );

    let f = open_rw("/dev/kvmfr0")?;
    let sysfs: u64 = sys::read_trim("/sys/class/misc/ivshmem0/size")?.parse()?;
    let info = info_size(&f)?;
    let size = match getsize(&f, GETSIZE) {
        Ok(s) => s,
        Err(e) => fail!("GETSIZE on /dev/kvmfr0: {}", errname(e)),
    };
    println!("# /dev/kvmfr0: GETSIZE {size}, INFO {info}, sysfs {sysfs}");
    check!(
        u64::try_from(size) == Ok(info) && info == sysfs,
        "GETSIZE {size}, INFO {info}, sysfs size {sysfs} differ"
    );
    let node = open_rw("/dev/ivshmem0")?;
    check!(
        getsize(&node, GETSIZE) == Ok(size),
        "GETSIZE on /dev/ivshmem0: {:?}, want {size}",
        getsize(&node, GETSIZE).map_err(errname)
    );
    drop(node);
    // kvmfr compares whole numbers: another size or direction is not
    // GETSIZE.
    for (what, cmd) in [
        ("GETSIZE with a size", GETSIZE | (8 << 16)),
        ("GETSIZE as _IOR", GETSIZE | (2 << 30)),
    ] {
        expect_errno(what, getsize(&f, cmd).err().unwrap_or(0), libc::ENOTTY)?;
    }

    let len = size as usize;
    let map = Map::new(f.as_fd(), len, RW, libc::MAP_SHARED, 0)?;
    let mut buf = vec![0u8; len];
    // SAFETY: `map` maps `len` readable bytes and lives across the copy;
    // `buf` holds `len` bytes; the host does not write meanwhile.
    unsafe { std::ptr::copy_nonoverlapping(map.ptr, buf.as_mut_ptr(), len) };
    data::check_host_wrote(&buf, "/dev/kvmfr0")?;
    data::guest_data(&mut buf);
    // SAFETY: As above, with the mapping writable (RW, MAP_SHARED).
    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), map.ptr, len) };
    println!("# checked the host's {len} bytes through /dev/kvmfr0, wrote the guest's");
    drop(map);
    expect_rmmod_refused("/dev/kvmfr0 was open")?;
    drop(f);

    m.unload()?;
    check!(
        !Path::new("/sys/class/kvmfr").exists() && !Path::new("/dev/kvmfr0").exists(),
        "/sys/class/kvmfr or /dev/kvmfr0 outlived the module"
    );
    nodes_off()
}

/// On a BAR of 2 GiB or more, GETSIZE fails with EOVERFLOW (an int cannot
/// hold the size) on `/dev/kvmfr0` and `/dev/ivshmem0`; INFO has it.
pub fn kvmfr_getsize_big() -> TestResult {
    let devs = devices(1)?;
    let big = sys::setting_u64s("big")?[0];
    let _m = load()?;
    nodes_match(devs.len())?;
    for path in ["/dev/kvmfr0", "/dev/ivshmem0"] {
        let f = open_rw(path)?;
        let info = info_size(&f)?;
        check!(info == big, "{path}: INFO size {info}, want {big}");
        check!(
            big >= 1 << 31,
            "the scenario's BAR ({big} bytes) is below 2 GiB"
        );
        expect_errno(
            &format!("GETSIZE on {path} ({big} bytes)"),
            getsize(&f, GETSIZE).err().unwrap_or(0),
            libc::EOVERFLOW,
        )?;
    }
    Ok(())
}

/// Unbind/bind cycles while another thread opens `/dev/kvmfr0` and asks
/// GETSIZE in a loop: every open either works (GETSIZE then gives the size,
/// or ENODEV once the device is gone) or fails with ENOENT (no node),
/// ENXIO (no character device) or ENODEV (the node is being removed);
/// nothing else, and no splat (the runner checks the kernel log). A file
/// opened through `/dev/kvmfr0` before an unbind gets ENODEV after it; the
/// class goes with the last node and comes back with the next.
pub fn kvmfr_unbind() -> TestResult {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};

    let devs = devices(1)?;
    let pci = &devs[0].path;
    let _m = load()?;
    let size = getsize(&open_rw("/dev/kvmfr0")?, GETSIZE)
        .map_err(|e| Failure::Fail(format!("GETSIZE: {}", errname(e))))?;
    let stop = Arc::new(AtomicBool::new(false));
    let opens = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(Mutex::new(None::<String>));
    let opener = {
        let (stop, opens, wrong) = (stop.clone(), opens.clone(), wrong.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                let bad = match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/kvmfr0")
                {
                    Ok(f) => {
                        opens.fetch_add(1, Relaxed);
                        match getsize(&f, GETSIZE) {
                            Ok(s) if s == size => None,
                            Err(libc::ENODEV) => None,
                            r => Some(format!("GETSIZE on a fresh open: {:?}", r.map_err(errname))),
                        }
                    }
                    Err(e) => match e.raw_os_error() {
                        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => None,
                        _ => Some(format!("open /dev/kvmfr0: {e}")),
                    },
                };
                if let Some(b) = bad {
                    *wrong.lock().unwrap() = Some(b);
                    return;
                }
            }
        })
    };
    let cycles = 30;
    let mut result = Ok(());
    for _ in 0..cycles {
        let held = open_rw("/dev/kvmfr0")?;
        sys::unbind(pci)?;
        let after = getsize(&held, GETSIZE);
        let gone = !Path::new("/sys/class/kvmfr").exists() && !Path::new("/dev/kvmfr0").exists();
        drop(held);
        sys::bind(pci)?;
        if after != Err(libc::ENODEV) {
            result = Err(format!(
                "GETSIZE after unbind: {:?}, want ENODEV",
                after.map_err(errname)
            ));
        } else if !gone {
            result = Err("/sys/class/kvmfr or /dev/kvmfr0 survived the unbind".into());
        } else if !Path::new("/sys/class/kvmfr/kvmfr0").exists() {
            result = Err("no /sys/class/kvmfr/kvmfr0 after bind".into());
        }
        if result.is_err() {
            break;
        }
    }
    stop.store(true, Relaxed);
    join(opener, "the opener")?;
    result.map_err(Failure::Fail)?;
    if let Some(w) = wrong.lock().unwrap().take() {
        fail!("{w}");
    }
    println!(
        "# {cycles} unbind/bind cycles; {} opens of /dev/kvmfr0 meanwhile",
        opens.load(Relaxed)
    );
    check!(
        getsize(&open_rw("/dev/kvmfr0")?, GETSIZE) == Ok(size),
        "GETSIZE after the cycles is not {size}"
    );
    Ok(())
}
