//! The bench scenarios, and the sizes and counts of a run.

use super::{MIB, Opts};
use crate::qemu::GuestSpec;
use crate::scenarios::Scenario;
use std::time::Duration;

/// The sizes and counts of one run.
pub(super) struct Budget {
    pub(super) reps: u64,
    /// BAR sizes of the mapping benchmark's devices.
    pub(super) sizes: Vec<u64>,
    /// Bytes per bandwidth sample.
    pub(super) bw: u64,
    /// The largest mapping touched whole (the host allocates what is touched).
    pub(super) touch_max: u64,
    pub(super) pings: u64,
    pub(super) rounds: u64,
    pub(super) stream: u64,
    /// Peer counts of the server benchmark.
    pub(super) peers: Vec<usize>,
    /// BAR size of the fault benchmark's device (the mapping is 2 MiB less).
    pub(super) faults: u64,
}

impl Budget {
    pub(super) fn of(o: &Opts) -> Self {
        if o.quick {
            Self {
                reps: o.reps.unwrap_or(2),
                sizes: vec![4 * MIB, 8 * MIB],
                bw: MIB,
                touch_max: 8 * MIB,
                pings: 50,
                rounds: 1,
                stream: 200,
                peers: vec![10, 50],
                faults: 8 * MIB,
            }
        } else {
            Self {
                reps: o.reps.unwrap_or(11),
                sizes: vec![4 * MIB, 256 * MIB, 8 << 30],
                bw: 64 * MIB,
                touch_max: 256 * MIB,
                pings: 2000,
                rounds: 7,
                stream: 10_000,
                peers: vec![100, 1000, 4096],
                faults: 1 << 30,
            }
        }
    }
}

/// The bench scenarios.
pub fn scenarios(o: &Opts) -> Vec<Scenario> {
    let b = Budget::of(o);
    let mut mapping = GuestSpec::new("guest", &["mapping"])
        .env("prog", "bench")
        .env("reps", b.reps)
        .env("bw_mib", b.bw / MIB)
        .env("touch_max_mib", b.touch_max / MIB);
    for (i, s) in b.sizes.iter().enumerate() {
        mapping = mapping.plain(&format!("r{i}"), *s);
    }
    // Room for the bandwidth buffers and the sysfs mappings' page tables;
    // a vIOMMU for vfio-pci.
    mapping = mapping.mem_mib(1024).viommu();
    let bell = |name: &str| {
        GuestSpec::new(name, &["doorbell"])
            .env("prog", "bench")
            .env("pings", b.pings)
            .env("rounds", b.rounds)
            .env("stream", b.stream)
            .doorbell(4)
            .viommu()
    };
    let faults = GuestSpec::new("guest", &["faults"])
        .env("prog", "bench")
        .env("reps", b.reps.min(5))
        .env("fault_mib", b.faults / MIB)
        .plain("big", b.faults);
    let timeout = Duration::from_secs(if o.quick { 240 } else { 900 });
    vec![
        Scenario::new(
            "bench-mapping",
            "mmap setup, first touch, page tables and bandwidth: /dev/ivshmemN in each \
             cache mode vs sysfs resource2/resource2_wc and a vfio-pci region (vIOMMU)",
            timeout,
        )
        .guest(mapping)
        .not_in_suite(),
        Scenario::new(
            "bench-doorbell",
            "two guests ring each other: ring-to-wake latency (read, poll, epoll) \
             vs vfio-pci's MSI-X eventfd and eventfd between threads; rings per second",
            timeout,
        )
        .guest(bell("a"))
        .guest(bell("b"))
        .server(4)
        .not_in_suite(),
        Scenario::new(
            "bench-faults",
            "fault-heavy first touch: 1, NCPU and 4*NCPU threads touching one large \
             mapping with 4 KiB entries only",
            timeout,
        )
        .guest(faults)
        .not_in_suite(),
    ]
}
