//! The stress campaign (`make stress`, `ivshmem-vmrun stress`): the
//! in-guest fuzzer alone and while devices are unbound and hot-unplugged
//! under it, insmod/rmmod cycles, and two guests ringing each other at full
//! speed, on the debug kernel, whose reports (KASAN, lockdep, UBSAN, hung
//! tasks, soft lockups, WARN) fail a scenario. `--quick` is the short,
//! fixed-seed slice `make check` runs so that the campaign cannot rot.
//!
//! The counts reached are the guests' KTAP diagnostics; the seed is in
//! every fuzzing test's diagnostic, and `--seed` repeats a run.

use crate::qemu::GuestSpec;
use crate::scenarios::Scenario;
use crate::session;
use anyhow::Result;
use ivshmem_vmrun::cli::{Cli, Given, StressOpts};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// `stress`: runs the campaign. Returns whether every scenario passed.
pub fn run(cli: &Cli, given: &[Given], o: &StressOpts) -> Result<bool> {
    let all = scenarios(o);
    session::run(cli, given, &all.iter().collect::<Vec<_>>())
}

/// The counts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Calls of the fuzzer alone, and of each fuzzer that runs while
    /// devices go and come.
    pub fuzz_calls: u64,
    /// Unbind/bind cycles.
    pub bind_cycles: u64,
    /// Hot-unplug/replug cycles.
    pub hotplug_cycles: u64,
    /// insmod/rmmod cycles.
    pub mod_cycles: u64,
    /// Rings each way between two guests.
    pub rings: u64,
    /// The time each scenario may take.
    pub timeout: Duration,
}

impl Budget {
    /// The full campaign, or the slice of `make check`.
    pub fn of(o: &StressOpts) -> Self {
        if o.quick {
            Budget {
                fuzz_calls: 20_000,
                bind_cycles: 10,
                hotplug_cycles: 2,
                mod_cycles: 20,
                rings: 10_000,
                timeout: Duration::from_secs(300),
            }
        } else {
            Budget {
                fuzz_calls: 1_000_000,
                bind_cycles: 1000,
                hotplug_cycles: 100,
                mod_cycles: 1000,
                rings: 100_000,
                timeout: Duration::from_secs(1500),
            }
        }
    }
}

/// The fixed seed of `--quick` (and the default otherwise).
pub const SEED: u64 = 0x5eed_1f5e;

/// The stress scenarios.
pub fn scenarios(o: &StressOpts) -> Vec<Scenario> {
    let b = Budget::of(o);
    let seed = o.seed.unwrap_or(SEED);
    let settings = |g: GuestSpec| {
        g.env("seed", seed)
            .env("fuzz_calls", b.fuzz_calls)
            .env("bind_cycles", b.bind_cycles)
            .env("hotplug_cycles", b.hotplug_cycles)
            .env("mod_cycles", b.mod_cycles)
            .env("stress_rings", b.rings)
    };
    vec![
        Scenario::new(
            "stress-fuzz",
            "the seeded fuzzer on a doorbell and a plain device, alone, then under unbind/bind cycles; insmod/rmmod cycles",
            b.timeout,
        )
        .guest(settings(
            GuestSpec::new("guest", &["stress_fuzz", "stress_bind", "stress_modules"])
                .doorbell(4)
                .plain("shm", 4 * MIB),
        ))
        .server(4)
        .not_in_suite(),
        Scenario::new(
            "stress-hotplug",
            "QMP hot-unplug/replug of a mapped plain device under the fuzzer, a doorbell waiter across every cycle",
            b.timeout,
        )
        .guest(settings(
            GuestSpec::new("guest", &["stress_hotplug"])
                .plain("shm", 4 * MIB)
                .hotplug()
                .doorbell(4),
        ))
        .server(4)
        .not_in_suite(),
        Scenario::new(
            "stress-doorbell-unplug",
            "QMP hot-unplug of a doorbell device under the fuzzer, with eventfds bound, waiters blocked and the doorbell page mapped",
            b.timeout,
        )
        .guest(settings(
            GuestSpec::new("guest", &["stress_doorbell_unplug"])
                .doorbell(4)
                .hotplug(),
        ))
        .server(4)
        .not_in_suite(),
        Scenario::new(
            "stress-rings",
            "two guests ring each other at full speed at the same time; no lost final wake-up",
            b.timeout,
        )
        .guest(settings(GuestSpec::new("a", &["stress_rings"]).doorbell(4)))
        .guest(settings(GuestSpec::new("b", &["stress_rings"]).doorbell(4)))
        .server(4)
        .not_in_suite(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_campaign_reaches_the_issue_s_targets() {
        let b = Budget::of(&StressOpts::default());
        assert!(b.fuzz_calls >= 1_000_000);
        assert!(b.bind_cycles >= 1000 && b.mod_cycles >= 1000);
        assert!(b.hotplug_cycles >= 100 && b.rings >= 100_000);
        let q = Budget::of(&StressOpts {
            quick: true,
            ..Default::default()
        });
        assert!(q.fuzz_calls < b.fuzz_calls && q.timeout < b.timeout);
    }

    #[test]
    fn every_guest_gets_the_seed() {
        let o = StressOpts {
            quick: true,
            seed: Some(42),
        };
        for s in scenarios(&o) {
            assert!(!s.in_suite, "{} is in the suite", s.name);
            for g in &s.guests {
                assert!(
                    g.env.iter().any(|(k, v)| k == "seed" && v == "42"),
                    "{}/{} has no seed",
                    s.name,
                    g.name
                );
            }
        }
    }
}
