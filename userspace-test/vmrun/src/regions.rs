//! The runner's files under /dev/shm: the backing files of a scenario's
//! ivshmem-plain devices, its server's shared memory, the benchmarks'
//! files. Each is a [`ShmFile`], removed when dropped (also when a
//! scenario fails or the runner returns an error) and, if the runner is
//! interrupted by SIGINT, SIGTERM or SIGHUP, by [`remove_on_signals`]'s
//! thread before it exits.

use crate::qemu::{Device, GuestSpec};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The files of live [`ShmFile`]s, for the signal handler.
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn live() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    // A panic while the set was held left it as valid as ever.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A file the runner creates (or has a child create) and removes: when
/// dropped, or on a signal.
#[derive(Debug)]
pub struct ShmFile(PathBuf);

impl ShmFile {
    /// Takes charge of `path`, which exists or is about to.
    pub fn track(path: PathBuf) -> Self {
        live().insert(path.clone());
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        live().remove(&self.0);
    }
}

/// Removes `files`; returns how many there were.
fn remove_files(files: &BTreeSet<PathBuf>) -> usize {
    for p in files {
        let _ = fs::remove_file(p);
    }
    files.len()
}

/// On SIGINT, SIGTERM or SIGHUP, removes every live [`ShmFile`]'s file and
/// exits with 128 + the signal, as the signal would have. The QEMUs and
/// servers die with the runner (`qemu::die_with_runner`).
pub fn remove_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let n = remove_files(&live());
                println!("Bail out! interrupted by signal {sig}");
                eprintln!(
                    "ivshmem-vmrun: interrupted by signal {sig}; removed {n} file(s) in /dev/shm"
                );
                std::process::exit(128 + sig);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Shared memory files of a scenario, removed when dropped.
#[derive(Debug)]
pub struct Regions {
    paths: BTreeMap<String, ShmFile>,
}

impl Regions {
    /// Creates the backing file of every region the guests name, once
    /// each, sized as the first device that names it says.
    pub fn create(scenario: &str, guests: &[GuestSpec]) -> Result<Self> {
        let mut r = Regions {
            paths: BTreeMap::new(),
        };
        for d in guests.iter().flat_map(|g| &g.devices) {
            let Device::Plain { region, size } = d else {
                continue;
            };
            if r.paths.contains_key(region) {
                continue;
            }
            let p = ShmFile::track(PathBuf::from(format!(
                "/dev/shm/ivshmem-vmrun.{}.{scenario}.{region}",
                std::process::id(),
            )));
            let f = fs::File::create(p.path())
                .with_context(|| format!("creating {}", p.path().display()))?;
            f.set_len(*size)
                .with_context(|| format!("sizing {} to {size} bytes", p.path().display()))?;
            r.paths.insert(region.clone(), p);
        }
        Ok(r)
    }

    /// The backing file of `region`.
    pub fn path(&self, region: &str) -> PathBuf {
        self.paths
            .get(region)
            .map(|f| f.path().to_path_buf())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::GuestSpec;

    #[test]
    fn regions_are_created_once_each_and_removed_when_dropped() {
        let guests = [
            GuestSpec::new("a", &[])
                .plain("shared", 8192)
                .plain("own", 4096),
            GuestSpec::new("b", &[]).plain("shared", 8192).doorbell(1),
        ];
        let r = Regions::create("regions-test", &guests).unwrap();
        let (shared, own) = (r.path("shared"), r.path("own"));
        assert!(shared.starts_with("/dev/shm"), "{}", shared.display());
        assert_ne!(shared, own);
        assert_eq!(fs::metadata(&shared).unwrap().len(), 8192);
        assert_eq!(fs::metadata(&own).unwrap().len(), 4096);
        assert!(live().contains(&shared) && live().contains(&own));
        drop(r);
        assert!(!shared.exists() && !own.exists());
        assert!(!live().contains(&shared) && !live().contains(&own));
    }

    #[test]
    fn a_failed_creation_leaves_nothing() {
        // The second region cannot be sized: the first is removed too.
        let guests = [GuestSpec::new("a", &[])
            .plain("fine", 4096)
            .plain("huge", u64::MAX)];
        let fine = PathBuf::from(format!(
            "/dev/shm/ivshmem-vmrun.{}.failing-test.fine",
            std::process::id()
        ));
        let e = Regions::create("failing-test", &guests).unwrap_err();
        assert!(format!("{e:#}").contains("sizing"), "{e:#}");
        assert!(!fine.exists());
        assert!(!live().contains(&fine));
    }

    #[test]
    fn the_signal_handler_removes_what_is_live() {
        let p = std::env::temp_dir().join(format!("vmrun-shmfile.{}", std::process::id()));
        fs::write(&p, b"x").unwrap();
        let f = ShmFile::track(p.clone());
        // What the handler does, on this file only (other tests' files
        // are live too).
        let set: BTreeSet<PathBuf> = live().iter().filter(|l| **l == p).cloned().collect();
        assert_eq!(remove_files(&set), 1);
        assert!(!p.exists());
        // Dropping it afterwards is harmless, and forgets it.
        drop(f);
        assert!(!live().contains(&p));
    }
}
