//! The driver module: where it is, whether it is loaded, loading and
//! unloading it.

use std::fs;
use std::io;
use std::path::PathBuf;
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

/// Runs a module tool (`insmod`, `rmmod`); its error holds the command
/// line, the exit status and what the tool printed.
fn tool(args: &[&str]) -> io::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", args[0])))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Loads the module; it unloads when the guard drops (unless
/// [`Loaded::unload`] already did).
#[derive(Debug)]
pub struct Loaded {
    loaded: bool,
}

impl Loaded {
    /// `insmod` the module; an error if it is loaded already.
    pub fn load() -> io::Result<Self> {
        if module_loaded()? {
            return Err(io::Error::other("the module is already loaded"));
        }
        let path = module_path();
        tool(&["insmod", &path.to_string_lossy()])?;
        Ok(Self { loaded: true })
    }

    /// The module as it is: loaded now if it is not (and unloaded on
    /// drop), left alone if something else (udev, on a distribution root)
    /// loaded it. Says which.
    pub fn ensure() -> io::Result<(Self, bool)> {
        if module_loaded()? {
            Ok((Self { loaded: false }, false))
        } else {
            Ok((Self::load()?, true))
        }
    }

    /// `rmmod` the module, reporting failure.
    pub fn unload(mut self) -> io::Result<()> {
        self.loaded = false;
        tool(&["rmmod", MODULE])
    }

    /// Leaves the module loaded when the guard drops.
    pub fn keep(mut self) {
        self.loaded = false;
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if self.loaded {
            let _ = tool(&["rmmod", MODULE]);
        }
    }
}

/// Loads the module unless it is loaded already, and leaves it loaded.
pub fn load_module() -> io::Result<()> {
    Loaded::ensure()?.0.keep();
    Ok(())
}
