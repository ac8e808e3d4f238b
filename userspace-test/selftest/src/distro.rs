//! Tests of the driver as a distribution installs it: the guest's root is a
//! Debian system where the `ivshmem-dkms` package's files are in place,
//! udev runs, and nothing calls insmod or modprobe by hand.

use crate::{TestResult, check, fail, skip};
use guest_sys as sys;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The running kernel's release.
fn release() -> std::io::Result<String> {
    sys::read_trim("/proc/sys/kernel/osrelease")
}

/// The first ivshmem PCI function, or a skip.
fn first_device() -> Result<sys::PciDev, crate::Failure> {
    match sys::ivshmem_devices()?.into_iter().next() {
        Some(d) => Ok(d),
        None => skip!("no ivshmem device in this guest"),
    }
}

/// Whether a `modules.alias` pattern (shell glob: `*` and `?` only, as
/// depmod writes for PCI ids) matches `s`.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&pat[1..], s) || (!s.is_empty() && glob_match(pat, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&pat[1..], &s[1..]),
        (Some(p), Some(c)) if p == c => glob_match(&pat[1..], &s[1..]),
        _ => false,
    }
}

/// The module was loaded by udev from the device's modalias, resolved
/// through depmod's `modules.alias`, to the DKMS-built module; and it is
/// bound to the device.
pub fn autoload_module() -> TestResult {
    let dev = first_device()?;
    let rel = release()?;
    let modalias = sys::read_trim(dev.path.join("modalias"))?;
    let aliases_path = format!("/lib/modules/{rel}/modules.alias");
    let aliases = fs::read_to_string(&aliases_path)
        .map_err(|e| crate::Failure::Fail(format!("{aliases_path}: {e}")))?;
    let matching: Vec<&str> = aliases
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("alias"), Some(pat), Some(module))
                    if glob_match(pat.as_bytes(), modalias.as_bytes()) =>
                {
                    Some(module)
                }
                _ => None,
            }
        })
        .collect();
    println!("# modalias {modalias} resolves to {matching:?} in {aliases_path}");
    check!(
        matching == [sys::MODULE],
        "modalias {modalias} resolves to {matching:?}, not to [\"{}\"]",
        sys::MODULE
    );
    check!(
        sys::module_loaded()?,
        "the module is not loaded: udev did not load it for {}",
        dev.address()
    );
    let dep = fs::read_to_string(format!("/lib/modules/{rel}/modules.dep"))?;
    let entry = dep
        .lines()
        .find(|l| l.contains("/ivshmem.ko"))
        .map(|l| l.split(':').next().unwrap_or_default().to_string());
    println!("# depmod's entry: {entry:?}");
    match entry {
        Some(p) if p.contains("updates/dkms/") => {}
        other => fail!("modules.dep has {other:?}, not the DKMS module in updates/dkms/"),
    }
    let taint = sys::read_trim("/sys/module/ivshmem/taint").unwrap_or_default();
    println!("# module taint flags: '{taint}' (O: out of tree, E: unsigned or unknown key)");
    check!(
        dev.driver().as_deref() == Some(sys::MODULE),
        "{} is bound to {:?}, not to {}",
        dev.address(),
        dev.driver(),
        sys::MODULE
    );
    Ok(())
}

/// The gid of `name` in `/etc/group`.
fn group_id(name: &str) -> std::io::Result<u32> {
    let groups = fs::read_to_string("/etc/group")
        .map_err(|e| std::io::Error::new(e.kind(), format!("/etc/group: {e}")))?;
    groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
        })
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no group '{name}' in /etc/group"),
            )
        })
}

/// udev gave `/dev/ivshmem0` the rule's group and mode.
pub fn autoload_node() -> TestResult {
    let _ = first_device()?;
    let node = Path::new("/dev/ivshmem0");
    let md =
        fs::metadata(node).map_err(|e| crate::Failure::Fail(format!("{}: {e}", node.display())))?;
    check!(
        md.file_type().is_char_device(),
        "{} is not a character device",
        node.display()
    );
    let gid = group_id("ivshmem")?;
    let mode = md.mode() & 0o7777;
    println!(
        "# {}: mode {mode:04o}, uid {}, gid {} (ivshmem is {gid})",
        node.display(),
        md.uid(),
        md.gid()
    );
    check!(md.uid() == 0, "owner is uid {}, not root", md.uid());
    check!(
        md.gid() == gid,
        "group is gid {}, not ivshmem ({gid})",
        md.gid()
    );
    check!(mode == 0o660, "mode is {mode:04o}, not 0660");
    Ok(())
}

/// udev made `/dev/ivshmem/by-path/pci-<address>` point at the device's node.
pub fn autoload_symlink() -> TestResult {
    let dev = first_device()?;
    let misc: Vec<PathBuf> = fs::read_dir(dev.path.join("misc"))
        .map_err(|e| crate::Failure::Fail(format!("{}/misc: {e}", dev.path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let [node_dir] = misc.as_slice() else {
        fail!("{} has misc children {misc:?}, not one", dev.address());
    };
    let name = node_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let link = PathBuf::from(format!("/dev/ivshmem/by-path/pci-{}", dev.address()));
    let target = fs::read_link(&link)
        .map_err(|e| crate::Failure::Fail(format!("{}: {e}", link.display())))?;
    let resolved = fs::canonicalize(&link)?;
    println!(
        "# {} -> {} ({})",
        link.display(),
        target.display(),
        resolved.display()
    );
    check!(
        resolved == Path::new("/dev").join(&name),
        "{} resolves to {}, not /dev/{name}",
        link.display(),
        resolved.display()
    );
    Ok(())
}

/// udev gave the device's sysfs `shm` file the node's group and mode, and
/// made `/dev/ivshmem/by-path/pci-<address>-shm` point at it, so that a
/// program given that path finds BAR2's size with `stat`.
pub fn autoload_shm() -> TestResult {
    let dev = first_device()?;
    let link = PathBuf::from(format!("/dev/ivshmem/by-path/pci-{}-shm", dev.address()));
    let resolved = fs::canonicalize(&link)
        .map_err(|e| crate::Failure::Fail(format!("{}: {e}", link.display())))?;
    let want = fs::canonicalize(dev.path.join("misc/ivshmem0/shm"))?;
    let md = fs::metadata(&link)?;
    let gid = group_id("ivshmem")?;
    let mode = md.mode() & 0o7777;
    let size: u64 = guest_sys::read_trim(dev.path.join("misc/ivshmem0/size"))?.parse()?;
    println!(
        "# {} -> {}: mode {mode:04o}, gid {} (ivshmem is {gid}), {} bytes",
        link.display(),
        resolved.display(),
        md.gid(),
        md.len()
    );
    check!(
        resolved == want,
        "{} resolves to {}, not {}",
        link.display(),
        resolved.display(),
        want.display()
    );
    check!(
        md.file_type().is_file() && md.len() == size,
        "{} is not a regular file of {size} bytes",
        link.display()
    );
    check!(
        md.gid() == gid && mode == 0o660,
        "group {} and mode {mode:04o}, want ivshmem ({gid}) and 0660",
        md.gid()
    );
    Ok(())
}
