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
