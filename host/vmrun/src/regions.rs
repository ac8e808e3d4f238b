//! The backing files of a scenario's ivshmem-plain devices, under
//! /dev/shm.

use crate::qemu::{Device, GuestSpec};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// Shared memory files of a scenario, removed when dropped.
#[derive(Debug)]
pub struct Regions {
    paths: BTreeMap<String, PathBuf>,
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
            let p = PathBuf::from(format!(
                "/dev/shm/ivshmem-vmrun.{}.{scenario}.{region}",
                std::process::id(),
            ));
            let f = fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?;
            // Removed with `r` from here on, even if sizing fails.
            r.paths.insert(region.clone(), p.clone());
            f.set_len(*size)
                .with_context(|| format!("sizing {} to {size} bytes", p.display()))?;
        }
        Ok(r)
    }

    /// The backing file of `region`.
    pub fn path(&self, region: &str) -> PathBuf {
        self.paths.get(region).cloned().unwrap_or_default()
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        for p in self.paths.values() {
            let _ = fs::remove_file(p);
        }
    }
}
