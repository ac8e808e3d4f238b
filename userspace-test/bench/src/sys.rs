//! Guest helpers: settings, the module, PCI functions in sysfs, timing.

use std::fs;
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
