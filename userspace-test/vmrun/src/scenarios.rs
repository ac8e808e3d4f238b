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

/// What a scenario's host does to the shared memory files before the
/// guests boot, or checks in them after.
pub type Hook = fn(&Regions) -> anyhow::Result<()>;

/// A scenario. Built with [`Scenario::new`] and the methods after it.
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
    pub before: Option<Hook>,
    /// Checks the shared memory files after the guests finished.
    pub after: Option<Hook>,
}

const MIB: u64 = 1 << 20;

/// The size of a scenario server's shared memory.
pub const SERVER_SIZE: u64 = 4 * MIB;

impl Scenario {
    /// A scenario of the suite that may take `timeout` and must pass, with
    /// no guest yet, no server and no hooks.
    pub fn new(name: &'static str, about: &'static str, timeout: Duration) -> Self {
        Self {
            name,
            about,
            guests: Vec::new(),
            timeout,
            expect: Expect::Pass,
            in_suite: true,
            server: None,
            before: None,
            after: None,
        }
    }

    /// Adds a guest; guests boot together, in this order.
    pub fn guest(mut self, g: GuestSpec) -> Self {
        self.guests.push(g);
        self
    }

    /// Starts our ivshmem server with `vectors` vectors per peer and
    /// [`SERVER_SIZE`] bytes of shared memory for the doorbell devices.
    pub fn server(mut self, vectors: u32) -> Self {
        self.server = Some(ServerSpec {
            vectors,
            size: SERVER_SIZE,
        });
        self
    }

    /// Lets the scenario take `timeout`, boots included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Expects this ending instead of a pass (the runner's own tests).
    pub fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    /// Leaves the scenario out of `suite`: it runs only when named.
    pub fn not_in_suite(mut self) -> Self {
        self.in_suite = false;
        self
    }

    /// Prepares the shared memory files before the guests boot.
    pub fn before(mut self, hook: Hook) -> Self {
        self.before = Some(hook);
        self
    }

    /// Checks the shared memory files after the guests finished.
    pub fn after(mut self, hook: Hook) -> Self {
        self.after = Some(hook);
        self
    }
}

/// One guest with a 4 MiB plain device whose memory the host fills before
/// boot and checks after: the guest's `tests` read the host's data and
/// write their own.
fn data_both_ways(
    name: &'static str,
    about: &'static str,
    timeout: Duration,
    tests: &[&str],
) -> Scenario {
    Scenario::new(name, about, timeout)
        .guest(GuestSpec::new("guest", tests).plain("shm", 4 * MIB))
        .before(hooks::host_writes)
        .after(hooks::guest_wrote)
}

/// Every scenario, in the order the suite runs them. `base` is the time a
/// scenario may take unless it says otherwise.
pub fn all(base: Duration) -> Vec<Scenario> {
    vec![
        Scenario::new(
            "plain-bind",
            "one ivshmem-plain device: the module binds it and unloads cleanly",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["module_bind", "module_cycles", "rmmod_busy"])
                .plain("shm", 4 * MIB),
        ),
        Scenario::new(
            "debian-autoload",
            "a Debian root where ivshmem-dkms is installed: udev loads the module by \
             modalias, sets the node's and the shm file's group and mode, makes the by-path \
             links; the package's ivshmem command",
            base,
        )
        .guest(
            GuestSpec::new(
                "guest",
                &[
                    "autoload_module",
                    "autoload_node",
                    "autoload_symlink",
                    "autoload_shm",
                    "cli_list",
                    "cli_info_dump_write",
                    "cli_errors",
                ],
            )
            .plain("shm", 4 * MIB)
            .debian_root(),
        ),
        Scenario::new(
            "doorbell-service",
            "a doorbell guest rings itself through a server the runner did not start \
             (--server-socket: the packaged ivshmem-server@.service's, 4 vectors)",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["doorbell_local", "c_ring"])
                .doorbell(4)
                .plain("shm", 4 * MIB),
        )
        .server(4)
        .not_in_suite(),
        Scenario::new(
            "python",
            "the Python package's pytest tests with Debian's CPython, on a doorbell \
             device (ringing itself, on the scenario's server) and a plain one; its wait \
             latency over raw os.read",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["python_pytest", "python_wait_latency"])
                .doorbell(4)
                .plain("shm", 4 * MIB)
                .env("pyrequire", "plain,doorbell")
                .env("samples", 3000)
                .debian_python_root(),
        )
        .server(4),
        Scenario::new(
            "no-device",
            "no ivshmem device: the module loads, binds nothing, unloads",
            base,
        )
        .guest(GuestSpec::new("guest", &["module_nodev"])),
        Scenario::new(
            "shm-basic",
            "a 4 MiB plain device: node, INFO, sysfs, data both ways, the C example",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["info_sysfs", "host_data", "c_example"])
                .plain("shm", 4 * MIB)
                .env("sizes", 4 * MIB),
        )
        .before(hooks::host_writes)
        .after(hooks::guest_wrote),
        data_both_ways(
            "shm-kvmfr",
            "a 4 MiB plain device through its Looking Glass name: class kvmfr, \
             /dev/kvmfr0, GETSIZE, data both ways; opens racing unbind",
            base,
            &["kvmfr_getsize", "kvmfr_unbind"],
        ),
        data_both_ways(
            "shm-dmabuf",
            "a 4 MiB plain device as Looking Glass's client uses /dev/kvmfr0: GETSIZE, \
             mmap, dma-bufs from CREATE mapped at two offsets, data both ways; per-frame buffers",
            base,
            &["kvmfr_open"],
        ),
        data_both_ways(
            "shm-path",
            "a 4 MiB plain device through sysfs shm, as programs that take a path map it: \
             stat, read-only and read-write mappings, data both ways, unbind",
            base,
            &["shm_path"],
        ),
        data_both_ways(
            "shm-lockdown",
            "a 4 MiB plain device under kernel lockdown: resource2 refused, sysfs shm maps \
             (stat, read-only, read-write), data both ways",
            base,
            &["shm_lockdown"],
        ),
        Scenario::new(
            "shm-mm",
            "bad mmaps and ioctls, cache modes in the PAT list, huge faults, a mknod \
             node, KUnit",
            base,
        )
        .guest(
            GuestSpec::new(
                "guest",
                &[
                    "mmap_bad",
                    "mmap_noexec",
                    "map_private_refused",
                    "kvmfr_dmabuf",
                    "dmabuf_import",
                    "kvmfr_bad_input",
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
        ),
        Scenario::new(
            "shm-three",
            "three plain devices of different sizes become ivshmem0..2 in PCI order",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["info_sysfs"])
                .plain("a", MIB)
                .plain("b", 4 * MIB)
                .plain("c", 2 * MIB)
                .env("sizes", format!("{},{},{}", MIB, 4 * MIB, 2 * MIB)),
        ),
        Scenario::new(
            "shm-big",
            "an 8 GiB BAR (sparse file, above 4 GiB): markers at both ends and across 4 \
             GiB, write-back",
            base,
        )
        .guest(
            GuestSpec::new(
                "guest",
                &[
                    "big_bar",
                    "pat_memtype",
                    "huge_pud",
                    "huge_entries",
                    "kvmfr_getsize_big",
                ],
            )
            .plain("big", 8 << 30)
            .env("big", 8u64 << 30),
        )
        .before(hooks::big_markers)
        .after(hooks::big_replies),
        Scenario::new(
            "shm-unbind",
            "sysfs unbind under a mapping and an ioctl loop, and under a slow dma-buf \
             importer, then rebind",
            base,
        )
        .guest(GuestSpec::new("guest", &["unbind_rebind", "dmabuf_unbind"]).plain("shm", 4 * MIB)),
        Scenario::new(
            "shm-hotplug",
            "QMP device_del/device_add (q35, pcie-root-port) under a mapping, and under a \
             mapped dma-buf whose fd a child holds",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["hotplug", "dmabuf_unplug"])
                .plain("shm", 4 * MIB)
                .hotplug(),
        ),
        Scenario::new(
            "doorbell-hotplug",
            "QMP hot-unplug (q35, pcie-root-port) of a doorbell device with eventfds bound, \
             waiters blocked and the doorbell page mapped",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["doorbell_unplug"])
                .doorbell(2)
                .hotplug(),
        )
        .server(2),
        Scenario::new(
            "doorbell-server",
            "two ivshmem-doorbell guests on our server: distinct IVPositions, both in the \
             host client's peer list",
            base,
        )
        .guest(
            GuestSpec::new("a", &["doorbell_info"])
                .doorbell(2)
                .env("vectors", 2),
        )
        .guest(
            GuestSpec::new("b", &["doorbell_info"])
                .doorbell(2)
                .env("vectors", 2),
        )
        .server(2),
        Scenario::new(
            "doorbell-local",
            "a doorbell guest rings itself: read, poll, eventfd, mask, signals, waiting \
             readers, read-only files, per-user eventfd bounds, unbind; a plain device refuses",
            base,
        )
        .guest(
            GuestSpec::new(
                "guest",
                &[
                    "doorbell_local",
                    "doorbell_all_vectors",
                    "c_ring",
                    "doorbell_signal",
                    "doorbell_mask_wakeup",
                    "doorbell_two_readers",
                    "doorbell_fairness",
                    "readonly_open",
                    "doorbell_many_bindings",
                    "eventfd_per_user",
                    "set_mask_other_file",
                    "doorbell_reserved",
                    "doorbell_mmap",
                    "doorbell_unbind",
                ],
            )
            .doorbell(4)
            .plain("shm", 4 * MIB),
        )
        .server(4),
        Scenario::new(
            "doorbell-nomsi",
            "a doorbell guest booted with pci=nomsi: no MSI-X vectors, so no doorbell \
             page (INFO, mmap), and no unhandled interrupt line",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["doorbell_nomsi"])
                .doorbell(2)
                .kernel_arg("pci=nomsi"),
        )
        .server(2),
        Scenario::new(
            "doorbell-many-vectors",
            "256 vectors on one vCPU: probe takes the vectors it can get; 200 files bind \
             eventfds up to the cap",
            base,
        )
        .guest(
            GuestSpec::new("guest", &["doorbell_vectors_256", "doorbell_many_bindings"])
                // One CPU has fewer free interrupt vectors than 256.
                .smp(1)
                .doorbell(256)
                .env("vectors", 256),
        )
        .server(256),
        Scenario::new(
            "doorbell-pair",
            "two guests and the host client ring each other on our server; 100k rings, \
             none lost",
            base,
        )
        .guest(
            GuestSpec::new("a", &["doorbell_pair"])
                .doorbell(4)
                .env("rings", 100_000),
        )
        .guest(
            GuestSpec::new("b", &["doorbell_pair"])
                .doorbell(4)
                .env("rings", 100_000),
        )
        .server(4)
        .timeout(base * 2),
        Scenario::new(
            "doorbell-kill",
            "a guest dies mid-stream: the other keeps working, its rings to the dead one \
             are harmless",
            base,
        )
        .guest(
            GuestSpec::new("a", &["doorbell_kill"])
                .doorbell(2)
                .env("victim", "b"),
        )
        .guest(
            GuestSpec::new("b", &["doorbell_kill"])
                .doorbell(2)
                .env("victim", "b"),
        )
        .server(2),
        Scenario::new(
            "cli",
            "the ivshmem command: list, info, dump, write (checked by the host), ring and \
             wait on a doorbell device rung by this guest, errors and exit codes",
            base,
        )
        .guest(
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
        )
        .server(4)
        .before(hooks::cli_host_text)
        .after(hooks::cli_guest_text),
        Scenario::new(
            "runner-detects-failure",
            "a deliberately failing selftest turns the run red",
            base,
        )
        .guest(GuestSpec::new("guest", &["deliberate_fail"]))
        .expect(Expect::GuestFailure),
        Scenario::new(
            "runner-detects-timeout",
            "a guest that never finishes is timed out and reported with its console",
            base,
        )
        .guest(GuestSpec::new("guest", &["hang"]))
        // Long enough to boot (about 12 s under TCG with the debug
        // kernel) and start the test, short enough not to slow the
        // suite down; the console tail must show the boot either way.
        .timeout(Duration::from_secs(45).min(base))
        .expect(Expect::Timeout),
        Scenario::new(
            "demo",
            "two guests on our ivshmem-server: a message and its answer, each woken by a \
             doorbell",
            base,
        )
        .guest(GuestSpec::new("alice", &["demo_chat"]).doorbell(1))
        .guest(GuestSpec::new("bob", &["demo_chat"]).doorbell(1))
        .server(1)
        .not_in_suite(),
    ]
}
