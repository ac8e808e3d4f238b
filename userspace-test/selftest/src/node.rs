//! Selftests of `/dev/ivshmemN` itself: the node, INFO and sysfs against
//! what QEMU was given, the host's data, the C example and other nodes.

use crate::data::{self, pattern};
use crate::fixture::*;
use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{self as sys, errname, errno};
use ivshmem::{CacheMode, Device};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

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
    // SAFETY: Every pointer passed is a NUL-terminated C string literal
    // (`c"..."`, `dir`, `node`), alive for the whole program; mount's data
    // argument is null, which tmpfs accepts.
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
    // SAFETY: The `dir` is a NUL-terminated C string literal, alive for the
    // whole program; umount only reads it.
    let busy = unsafe { libc::umount(dir.as_ptr()) };
    let busy_errno = errno();
    check!(
        busy != 0 && busy_errno == libc::EBUSY,
        "unmount while mapped: {}",
        errname(if busy == 0 { 0 } else { busy_errno })
    );
    drop(map);
    // SAFETY: The `dir` is a NUL-terminated C string literal, alive for the
    // whole program; umount only reads it.
    let r = unsafe { libc::umount(dir.as_ptr()) };
    check!(
        r == 0,
        "unmount after the mapping is gone: {}",
        errname(errno())
    );
    Ok(())
}
