//! ivshmem PCI functions in sysfs, binding them to the driver, and what
//! the driver says of each device.

use crate::module::MODULE;
use crate::{read_trim, write_sysfs};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

    /// The physical range of BAR `n`: (start, end inclusive).
    pub fn bar(&self, n: usize) -> io::Result<(u64, u64)> {
        let text = read_trim(self.path.join("resource"))?;
        let line = text
            .lines()
            .nth(n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such BAR"))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).unwrap_or(0))
            .collect();
        Ok((f[0], f[1]))
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

fn address_of(dev: &Path) -> String {
    dev.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Unbinds the driver from the PCI function at `dev` (its sysfs path).
pub fn unbind(dev: &Path) -> io::Result<()> {
    write_sysfs(
        format!("/sys/bus/pci/drivers/{MODULE}/unbind"),
        &address_of(dev),
    )
}

/// Binds the driver to the PCI function at `dev` (its sysfs path).
pub fn bind(dev: &Path) -> io::Result<()> {
    write_sysfs(
        format!("/sys/bus/pci/drivers/{MODULE}/bind"),
        &address_of(dev),
    )
}

/// The driver's count of page-table entries it inserted for device
/// `index`: (4K, 2M, 1G), from `/sys/class/misc/ivshmemN/faults`
/// (`pte N pmd N pud N`).
pub fn driver_faults(index: u32) -> io::Result<[u64; 3]> {
    let path = format!("/sys/class/misc/ivshmem{index}/faults");
    let s = read_trim(&path)?;
    let w: Vec<&str> = s.split_whitespace().collect();
    let get = |k: &str| {
        w.windows(2)
            .find(|p| p[0] == k)
            .and_then(|p| p[1].parse().ok())
    };
    match (get("pte"), get("pmd"), get("pud")) {
        (Some(pte), Some(pmd), Some(pud)) => Ok([pte, pmd, pud]),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} reads {s:?}"),
        )),
    }
}

/// Whether `/dev/ivshmem<i>` exists.
pub fn node_exists(i: usize) -> bool {
    Path::new(&format!("/dev/ivshmem{i}")).exists()
}
