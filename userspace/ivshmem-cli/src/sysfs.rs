//! What sysfs and debugfs say about the devices: the list of devices
//! (readable by anyone, unlike the nodes) and the memtype of their BAR2.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the driver's misc devices appear.
pub const CLASS_DIR: &str = "/sys/class/misc";
/// The kernel's list of PAT memtypes (root, debugfs).
pub const PAT_LIST: &str = "/sys/kernel/debug/x86/pat_memtype_list";

/// A device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// N of `/dev/ivshmemN`.
    pub index: u32,
    /// `/dev/ivshmemN`.
    pub node: PathBuf,
    /// PCI address, e.g. `0000:00:03.0`.
    pub pci: String,
    /// Bytes of shared memory.
    pub size: u64,
    /// IVPosition; `None` while a revision 0 device is not ready (-1).
    pub ivposition: Option<u16>,
    /// Doorbell vectors.
    pub vectors: u32,
    /// The driver's `features` attribute: `plain` or `doorbell msix`...
    pub features: String,
    /// BAR2's memtype: the cache mode of the current mappings.
    pub cache: CacheState,
}

/// The PAT memtype the driver holds for a device's memory: the cache mode
/// of its current mappings or, when nothing maps it, of the next mapping
/// that does not ask for another mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    /// This PAT memtype (`write-back`, `write-combining`,
    /// `uncached-minus`...).
    Mapped(String),
    /// No memtype: the driver does not hold the device's memory.
    Unmapped,
    /// The PAT list cannot be read (not root, no debugfs, PAT off).
    Unknown,
}

impl CacheState {
    /// The short name: `wb`, `wc`, `uc-`, `uc`, `wt`, `wp`, `none` or `?`.
    pub fn short(&self) -> &str {
        match self {
            Self::Mapped(t) => match t.as_str() {
                "write-back" => "wb",
                "write-combining" => "wc",
                "uncached-minus" => "uc-",
                "uncached" => "uc",
                "write-through" => "wt",
                "write-protect" => "wp",
                other => other,
            },
            Self::Unmapped => "none",
            Self::Unknown => "?",
        }
    }

    /// For JSON: the memtype's name, `"none"`, or null when unknown.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Self::Mapped(t) => t.as_str().into(),
            Self::Unmapped => "none".into(),
            Self::Unknown => serde_json::Value::Null,
        }
    }
}

/// The memtypes of the physical range `[start, end]` in a PAT list.
pub fn memtypes_in(list: &str, start: u64, end: u64) -> Vec<String> {
    let Some(stop) = end.checked_add(1) else {
        return Vec::new();
    };
    let want = format!("[mem {start:#018x}-{stop:#018x}]");
    list.lines()
        .filter(|l| l.contains(&want))
        .map(|l| l.rsplit(']').next().unwrap_or("").trim().to_string())
        .collect()
}

/// BAR `n` of a PCI function: its first and last physical address.
fn bar(pci: &str, n: usize) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/sys/bus/pci/devices/{pci}/resource")).ok()?;
    let mut f = text
        .lines()
        .nth(n)?
        .split_whitespace()
        .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
    Some((f.next()??, f.next()??))
}

/// BAR2's memtype for the device at `pci`.
pub fn cache_state(pci: &str) -> CacheState {
    let (Some((start, end)), Ok(list)) = (bar(pci, 2), fs::read_to_string(PAT_LIST)) else {
        return CacheState::Unknown;
    };
    match memtypes_in(&list, start, end).into_iter().next() {
        Some(t) => CacheState::Mapped(t),
        None => CacheState::Unmapped,
    }
}

fn attr(dir: &Path, name: &str) -> io::Result<String> {
    let p = dir.join(name);
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
}

fn num<T: std::str::FromStr>(dir: &Path, name: &str) -> io::Result<T> {
    let s = attr(dir, name)?;
    s.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a number: {s:?}", dir.join(name).display()),
        )
    })
}

/// The index N of a misc device named `ivshmemN`.
fn index_of(name: &str) -> Option<u32> {
    let n = name.strip_prefix("ivshmem")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Every device of the driver, by index. Devices that vanish while being
/// read are left out.
pub fn list() -> io::Result<Vec<Listed>> {
    let entries = match fs::read_dir(CLASS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{CLASS_DIR}: {e}"))),
    };
    let mut v = Vec::new();
    for e in entries {
        let e = e?;
        let Some(index) = e.file_name().to_str().and_then(index_of) else {
            continue;
        };
        let dir = e.path();
        let read = || -> io::Result<Listed> {
            let pci = fs::read_link(dir.join("device"))?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ivposition: i64 = num(&dir, "ivposition")?;
            Ok(Listed {
                index,
                node: PathBuf::from(format!("/dev/ivshmem{index}")),
                cache: cache_state(&pci),
                pci,
                size: num(&dir, "size")?,
                ivposition: u16::try_from(ivposition).ok(),
                vectors: num(&dir, "vectors")?,
                features: attr(&dir, "features")?,
            })
        };
        match read() {
            Ok(l) => v.push(l),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    v.sort_by_key(|l| l.index);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pat_list_lines() {
        let list = "PAT memtype list:\n\
                    PAT: [mem 0x00000000fd000000-0x00000000fd400000] write-combining\n\
                    PAT: [mem 0x00000000fe000000-0x00000000fe004000] uncached-minus\n";
        assert_eq!(
            memtypes_in(list, 0xfd00_0000, 0xfd3f_ffff),
            ["write-combining"]
        );
        assert!(memtypes_in(list, 0xfd00_0000, 0xfd1f_ffff).is_empty());
        assert!(memtypes_in(list, 0, u64::MAX).is_empty());
        assert_eq!(CacheState::Mapped("write-combining".into()).short(), "wc");
        assert_eq!(CacheState::Mapped("uncached-minus".into()).short(), "uc-");
        assert_eq!(CacheState::Unmapped.short(), "none");
    }

    #[test]
    fn misc_names() {
        assert_eq!(index_of("ivshmem0"), Some(0));
        assert_eq!(index_of("ivshmem12"), Some(12));
        assert_eq!(index_of("ivshmem"), None);
        assert_eq!(index_of("ivshmem-x"), None);
        assert_eq!(index_of("rfkill"), None);
    }
}
