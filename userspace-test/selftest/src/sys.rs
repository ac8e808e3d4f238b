//! Small helpers over the guest's sysfs and module tools.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The module name, as in `/proc/modules` and `/sys/module`.
pub const MODULE: &str = "ivshmem";

/// Where the VM runner puts the module; `IVSHMEM_MODULE` overrides it.
pub fn module_path() -> PathBuf {
    std::env::var_os("IVSHMEM_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/lib/modules/ivshmem.ko"))
}

/// Whether the module is loaded.
pub fn module_loaded() -> io::Result<bool> {
    let mods = fs::read_to_string("/proc/modules")?;
    Ok(mods
        .lines()
        .any(|l| l.split_whitespace().next() == Some(MODULE)))
}

fn tool(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Loads the module; it unloads when the guard drops (unless
/// [`Loaded::unload`] already did).
pub struct Loaded {
    loaded: bool,
}

impl Loaded {
    /// `insmod` the module.
    pub fn load() -> Result<Self, String> {
        if module_loaded().map_err(|e| e.to_string())? {
            return Err("the module is already loaded".into());
        }
        let path = module_path();
        tool(&["insmod", &path.to_string_lossy()])?;
        Ok(Self { loaded: true })
    }

    /// The module as it is: loaded now if it is not (and unloaded on
    /// drop), left alone if something else (udev, on a distribution root)
    /// loaded it. Says which.
    pub fn ensure() -> Result<(Self, bool), String> {
        if module_loaded().map_err(|e| e.to_string())? {
            Ok((Self { loaded: false }, false))
        } else {
            Ok((Self::load()?, true))
        }
    }

    /// `rmmod` the module, reporting failure.
    pub fn unload(mut self) -> Result<(), String> {
        self.loaded = false;
        tool(&["rmmod", MODULE])
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if self.loaded {
            let _ = tool(&["rmmod", MODULE]);
        }
    }
}

/// A PCI function in sysfs.
#[derive(Debug, Clone)]
pub struct PciDev {
    /// `/sys/bus/pci/devices/<address>`.
    pub path: PathBuf,
}

impl PciDev {
    /// The PCI address, e.g. `0000:00:03.0`.
    pub fn address(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The bound driver's name, if any.
    pub fn driver(&self) -> Option<String> {
        fs::read_link(self.path.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    }
}

fn read_hex(path: &Path) -> io::Result<u32> {
    let s = fs::read_to_string(path)?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Every ivshmem function (`1af4:1110`) in the guest, in PCI address order.
pub fn ivshmem_devices() -> io::Result<Vec<PciDev>> {
    let mut v = Vec::new();
    for e in fs::read_dir("/sys/bus/pci/devices")? {
        let path = e?.path();
        if read_hex(&path.join("vendor"))? == 0x1af4 && read_hex(&path.join("device"))? == 0x1110 {
            v.push(PciDev { path });
        }
    }
    v.sort_by_key(PciDev::address);
    Ok(v)
}

/// The devices bound to the driver, from `/sys/bus/pci/drivers/ivshmem`.
pub fn driver_bound_devices() -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(format!("/sys/bus/pci/drivers/{MODULE}"))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        // Device links are named by PCI address, e.g. 0000:00:03.0.
        if name.contains(':') {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
}

/// A test setting from the kernel command line (`ivt_KEY=VALUE`).
pub fn setting(key: &str) -> Option<String> {
    std::env::var(format!("ivt_{key}")).ok()
}

/// A comma-separated list of numbers from a setting.
pub fn setting_u64s(key: &str) -> Result<Vec<u64>, String> {
    let Some(s) = setting(key) else {
        return Err(format!("the runner gave no ivt_{key}"));
    };
    s.split(',')
        .map(|v| v.parse().map_err(|e| format!("ivt_{key}={s}: {e}")))
        .collect()
}

/// Reads a sysfs file, trimmed.
pub fn read_trim(path: impl AsRef<Path>) -> Result<String, String> {
    let p = path.as_ref();
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {}: {e}", p.display()))
}

/// Writes a sysfs file.
pub fn write_sysfs(path: impl AsRef<Path>, value: &str) -> Result<(), String> {
    let p = path.as_ref();
    fs::write(p, value).map_err(|e| format!("writing {value:?} to {}: {e}", p.display()))
}

impl PciDev {
    /// The physical range of BAR `n`: (start, end inclusive).
    pub fn bar(&self, n: usize) -> Result<(u64, u64), String> {
        let text = read_trim(self.path.join("resource"))?;
        let line = text.lines().nth(n).ok_or("no such BAR")?;
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).unwrap_or(0))
            .collect();
        Ok((f[0], f[1]))
    }
}

/// Polls `cond` every 50 ms for up to `secs` seconds.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}

/// The errno of the last failed libc call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The name of an errno value, for messages.
pub fn errname(e: i32) -> String {
    let name = match e {
        0 => "success",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::EFAULT => "EFAULT",
        libc::ENODEV => "ENODEV",
        libc::EBUSY => "EBUSY",
        libc::E2BIG => "E2BIG",
        libc::EAGAIN => "EAGAIN",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EACCES => "EACCES",
        libc::ENXIO => "ENXIO",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EINTR => "EINTR",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// Whether `/dev/ivshmem<i>` exists.
pub fn node_exists(i: usize) -> bool {
    Path::new(&format!("/dev/ivshmem{i}")).exists()
}
