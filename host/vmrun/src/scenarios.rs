//! The scenarios of the suite: which guests boot, with which devices, and
//! which selftests each runs.

use crate::hooks;
use crate::qemu::GuestSpec;
use crate::regions::Regions;
use crate::server::ServerSpec;
use std::time::Duration;

/// What a scenario must end in for the runner to call it a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every guest finishes and every test passes or skips.
    Pass,
    /// A guest reports a failing test, and the runner reports it properly.
    /// Used only by the runner's own tests.
    GuestFailure,
    /// A guest never finishes and the runner times it out properly. Used
    /// only by the runner's own tests.
    Timeout,
}

/// A scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name, used to select it.
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// The guests, booted together.
    pub guests: Vec<GuestSpec>,
    /// How long the whole scenario may take, boots included.
    pub timeout: Duration,
    /// What it must end in.
    pub expect: Expect,
    /// Whether `suite` runs it (the demo does not).
    pub in_suite: bool,
    /// The ivshmem server the doorbell devices connect to.
    pub server: Option<ServerSpec>,
    /// Prepares the shared memory files before the guests boot.
    pub before: Option<fn(&Regions) -> anyhow::Result<()>>,
    /// Checks the shared memory files after the guests finished.
    pub after: Option<fn(&Regions) -> anyhow::Result<()>>,
}

const MIB: u64 = 1 << 20;

/// Every scenario, in the order the suite runs them.
pub fn all(base_timeout: Duration) -> Vec<Scenario> {
    let t = |mult: u32| base_timeout * mult;
    vec![
        Scenario {
            name: "plain-bind",
            about: "one ivshmem-plain device: the module binds it and unloads cleanly",
            guests: vec![
                GuestSpec::new("guest", &["module_bind", "module_cycles", "rmmod_busy"])
                    .plain("shm", 4 * MIB),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "debian-autoload",
            about: "a Debian root where ivshmem-dkms is installed: udev loads the module by modalias, \
                    sets the node's group and mode, makes the by-path link; the package's ivshmem command",
            guests: vec![
                GuestSpec::new(
                    "guest",
                    &[
                        "autoload_module",
                        "autoload_node",
                        "autoload_symlink",
                        "cli_list",
                        "cli_info_dump_write",
                        "cli_errors",
                    ],
                )
                .plain("shm", 4 * MIB)
                .debian_root(),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "doorbell-service",
            about: "a doorbell guest rings itself through a server the runner did not start \
                    (--server-socket: the packaged ivshmem-server@.service's, 4 vectors)",
            guests: vec![
                GuestSpec::new("guest", &["doorbell_local", "c_ring"])
                    .doorbell(4)
                    .plain("shm", 4 * MIB),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: false,
            server: Some(ServerSpec {
                vectors: 4,
                size: 4 * MIB,
            }),
            before: None,
            after: None,
        },
        Scenario {
            name: "python",
            about: "the Python package's pytest tests with Debian's CPython, on a doorbell device \
                    (ringing itself, on the scenario's server) and a plain one; its wait \
                    latency over raw os.read",
            guests: vec![
                GuestSpec::new("guest", &["python_pytest", "python_wait_latency"])
                    .doorbell(4)
                    .plain("shm", 4 * MIB)
                    .env("pyrequire", "plain,doorbell")
                    .env("samples", 3000)
                    .debian_python_root(),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: Some(ServerSpec {
                vectors: 4,
                size: 4 * MIB,
            }),
            before: None,
            after: None,
        },
        Scenario {
            name: "no-device",
            about: "no ivshmem device: the module loads, binds nothing, unloads",
            guests: vec![GuestSpec::new("guest", &["module_nodev"])],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "shm-basic",
            about: "a 4 MiB plain device: node, INFO, sysfs, data both ways, the C example",
            guests: vec![
                GuestSpec::new("guest", &["info_sysfs", "host_data", "c_example"])
                    .plain("shm", 4 * MIB)
                    .env("sizes", 4 * MIB),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: Some(hooks::host_writes),
            after: Some(hooks::guest_wrote),
        },
        Scenario {
            name: "shm-mm",
            about: "bad mmaps and ioctls, cache modes in the PAT list, huge faults, a mknod node, KUnit",
            guests: vec![
                GuestSpec::new(
                    "guest",
                    &[
                        "mmap_bad",
                        "ioctl_bad",
                        "pat_memtype",
                        "huge_faults",
                        "pat_page_tables",
                        "huge_entries",
                        "mem_access",
                        "other_node",
                        "kunit",
                    ],
                )
                .plain("shm", 4 * MIB),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "shm-three",
            about: "three plain devices of different sizes become ivshmem0..2 in PCI order",
            guests: vec![
                GuestSpec::new("guest", &["info_sysfs"])
                    .plain("a", MIB)
                    .plain("b", 4 * MIB)
                    .plain("c", 2 * MIB)
                    .env("sizes", format!("{},{},{}", MIB, 4 * MIB, 2 * MIB)),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "shm-big",
            about: "an 8 GiB BAR (sparse file, above 4 GiB): markers at both ends and across 4 GiB, write-back",
            guests: vec![
                GuestSpec::new(
                    "guest",
                    &["big_bar", "pat_memtype", "huge_pud", "huge_entries"],
                )
                .plain("big", 8 << 30)
                .env("big", 8u64 << 30),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: Some(hooks::big_markers),
            after: Some(hooks::big_replies),
        },
        Scenario {
            name: "shm-unbind",
            about: "sysfs unbind under a mapping and an ioctl loop, then rebind",
            guests: vec![GuestSpec::new("guest", &["unbind_rebind"]).plain("shm", 4 * MIB)],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "shm-hotplug",
            about: "QMP device_del/device_add (q35, pcie-root-port) under a mapping",
            guests: vec![
                GuestSpec::new("guest", &["hotplug"])
                    .plain("shm", 4 * MIB)
                    .hotplug(),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "doorbell-server",
            about: "two ivshmem-doorbell guests on our server: distinct IVPositions, both in the host client's peer list",
            guests: vec![
                GuestSpec::new("a", &["doorbell_info"])
                    .doorbell(2)
                    .env("vectors", 2),
                GuestSpec::new("b", &["doorbell_info"])
                    .doorbell(2)
                    .env("vectors", 2),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: Some(ServerSpec {
                vectors: 2,
                size: 4 * MIB,
            }),
            before: None,
            after: None,
        },
        Scenario {
            name: "doorbell-local",
            about: "a doorbell guest rings itself: read, poll, eventfd, mask, signals, waiting readers, read-only files, unbind; a plain device refuses",
            guests: vec![
                GuestSpec::new(
                    "guest",
                    &[
                        "doorbell_local",
                        "c_ring",
                        "doorbell_signal",
                        "doorbell_mask_wakeup",
                        "doorbell_two_readers",
                        "doorbell_fairness",
                        "readonly_open",
                        "doorbell_many_bindings",
                        "doorbell_unbind",
                    ],
                )
                .doorbell(4)
                .plain("shm", 4 * MIB),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: Some(ServerSpec {
                vectors: 4,
                size: 4 * MIB,
            }),
            before: None,
            after: None,
        },
        Scenario {
            name: "doorbell-many-vectors",
            about: "256 vectors on one vCPU: probe takes the vectors it can get; 200 files bind eventfds up to the cap",
            guests: vec![GuestSpec {
                // One CPU has fewer free interrupt vectors than 256.
                smp: 1,
                ..GuestSpec::new("guest", &["doorbell_vectors_256", "doorbell_many_bindings"])
                    .doorbell(256)
                    .env("vectors", 256)
            }],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: Some(ServerSpec {
                vectors: 256,
                size: 4 * MIB,
            }),
            before: None,
            after: None,
        },
        Scenario {
            name: "doorbell-pair",
            about: "two guests and the host client ring each other on our server; 100k rings, none lost",
            guests: vec![
                GuestSpec::new("a", &["doorbell_pair"])
                    .doorbell(4)
                    .env("rings", 100_000),
                GuestSpec::new("b", &["doorbell_pair"])
                    .doorbell(4)
                    .env("rings", 100_000),
            ],
            timeout: t(2),
            expect: Expect::Pass,
            in_suite: true,
            server: Some(ServerSpec {
                vectors: 4,
                size: 4 * MIB,
            }),
            before: None,
            after: None,
        },
        Scenario {
            name: "doorbell-kill",
            about: "a guest dies mid-stream: the other keeps working, its rings to the dead one are harmless",
            guests: vec![
                GuestSpec::new("a", &["doorbell_kill"])
                    .doorbell(2)
                    .env("victim", "b"),
                GuestSpec::new("b", &["doorbell_kill"])
                    .doorbell(2)
                    .env("victim", "b"),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: Some(ServerSpec {
                vectors: 2,
                size: 4 * MIB,
            }),
            before: None,
            after: None,
        },
        Scenario {
            name: "cli",
            about: "the ivshmem command: list, info, dump, write (checked by the host), ring and wait on a \
                    doorbell device rung by this guest, errors and exit codes",
            guests: vec![
                GuestSpec::new(
                    "guest",
                    &[
                        "cli_list",
                        "cli_info_dump_write",
                        "cli_ring_wait",
                        "cli_errors",
                    ],
                )
                .doorbell(4)
                .plain("shm", 4 * MIB)
                .plain("small", MIB)
                .env("cli_host", 1),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: true,
            server: Some(ServerSpec {
                vectors: 4,
                size: 4 * MIB,
            }),
            before: Some(hooks::cli_host_text),
            after: Some(hooks::cli_guest_text),
        },
        Scenario {
            name: "runner-detects-failure",
            about: "a deliberately failing selftest turns the run red",
            guests: vec![GuestSpec::new("guest", &["deliberate_fail"])],
            timeout: t(1),
            expect: Expect::GuestFailure,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "runner-detects-timeout",
            about: "a guest that never finishes is timed out and reported with its console",
            guests: vec![GuestSpec::new("guest", &["hang"])],
            // Long enough to boot (about 12 s under TCG with the debug
            // kernel) and start the test, short enough not to slow the
            // suite down; the console tail must show the boot either way.
            timeout: Duration::from_secs(45).min(t(1)),
            expect: Expect::Timeout,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        },
        Scenario {
            name: "demo",
            about: "two guests on our ivshmem-server: a message and its answer, each woken by a doorbell",
            guests: vec![
                GuestSpec::new("alice", &["demo_chat"]).doorbell(1),
                GuestSpec::new("bob", &["demo_chat"]).doorbell(1),
            ],
            timeout: t(1),
            expect: Expect::Pass,
            in_suite: false,
            server: Some(ServerSpec {
                vectors: 1,
                size: 4 * MIB,
            }),
            before: None,
            after: None,
        },
    ]
}
