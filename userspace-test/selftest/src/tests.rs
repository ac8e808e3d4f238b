//! The selftests.

use crate::{Test, TestResult, fail};
use crate::{
    cli, distro, dmabuf, doorbell, ioctl, kvmfr, mmap, module, node, ptables, python, readers,
    removal, scale, sharing, shmfile, stress,
};

/// One row of the table: the name, whether it runs by default, the test
/// and one line on what it checks.
const fn t(
    name: &'static str,
    default: bool,
    run: fn() -> TestResult,
    about: &'static str,
) -> Test {
    Test {
        name,
        default,
        about,
        run,
    }
}

/// Every test, in the default running order.
#[rustfmt::skip]
pub fn all() -> Vec<Test> {
    vec![
        t("autoload_module", false, distro::autoload_module, "udev loaded the DKMS-built module from the device's modalias (modules.alias)"),
        t("autoload_node", false, distro::autoload_node, "udev gave /dev/ivshmem0 the rule's group (ivshmem) and mode (0660)"),
        t("autoload_symlink", false, distro::autoload_symlink, "udev made /dev/ivshmem/by-path/pci-<address> point at the device's node"),
        t("autoload_shm", false, distro::autoload_shm, "udev gave sysfs shm the node's group and mode, and made /dev/ivshmem/by-path/pci-<address>-shm point at it"),
        t("python_pytest", false, python::python_pytest, "the Python package's pytest tests pass with Debian's CPython on the real devices"),
        t("python_wait_latency", false, python::python_wait_latency, "the Python package's wait latency over raw os.read (ring-to-wake, median and p99)"),
        t("module_bind", true, module::module_bind, "the module loads, binds every ivshmem device and unloads cleanly"),
        t("module_nodev", true, module::module_nodev, "with no ivshmem device, the module loads, binds nothing, unloads"),
        t("module_cycles", true, module::module_cycles, "50 insmod/rmmod cycles, each binding every device"),
        t("rmmod_busy", true, module::rmmod_busy, "rmmod is refused while a file is open or a mapping exists"),
        t("kunit", true, module::kunit, "the module's KUnit suites pass"),
        t("info_sysfs", true, node::info_sysfs, "/dev/ivshmemN, INFO and sysfs match the QEMU configuration"),
        t("host_data", true, node::host_data, "the host's data is visible in the guest and the guest's reaches the host"),
        t("c_example", true, node::c_example, "a C program built against the UAPI header reads INFO and maps"),
        t("kvmfr_getsize", false, kvmfr::kvmfr_getsize, "/dev/kvmfr0 as Looking Glass opens it: GETSIZE == INFO == sysfs, data both ways; one kvmfrN per ivshmemN; class gone on rmmod; kvmfr_nodes=0"),
        t("kvmfr_getsize_big", false, kvmfr::kvmfr_getsize_big, "GETSIZE on a BAR of 2 GiB or more fails with EOVERFLOW (/dev/kvmfr0 and /dev/ivshmem0)"),
        t("kvmfr_unbind", false, kvmfr::kvmfr_unbind, "unbind/bind cycles under a loop of /dev/kvmfr0 opens: open works or fails cleanly; ENODEV after unbind; class follows the nodes"),
        t("shm_path", false, shmfile::shm_path, "sysfs shm as Scream maps a path: stat gives BAR2's size, O_RDONLY + PROT_READ reads the host's data, O_RDWR writes the guest's (PMDs); read-only stays so; rmmod waits; unbind zaps"),
        t("shm_lockdown", false, shmfile::shm_lockdown, "under kernel lockdown (raised to integrity at run time) resource2 cannot be mapped (EPERM) while sysfs shm reads the host's data and writes the guest's"),
        t("kvmfr_open", false, dmabuf::kvmfr_open, "Looking Glass's open sequence on /dev/kvmfr0: GETSIZE, mmap, CREATE with CLOEXEC mapped at pages 0 and 1, data both ways and to the host; one CREATE per frame"),
        t("kvmfr_dmabuf", true, dmabuf::kvmfr_dmabuf, "a dma-buf gets PMD entries when aligned, refuses MAP_PRIVATE and ranges past it, EBUSY while the node is mapped WC, outlives the node's file, holds the module"),
        t("kvmfr_bad_input", true, dmabuf::kvmfr_bad_input, "CREATE refuses bad flags, offsets, sizes and pointers (EINVAL, EFAULT), other sizes (ENOTTY), read-only and write-only opens (EBADF); padding is ignored"),
        t("dmabuf_import", true, dmabuf::dmabuf_import, "a device importer (the suite's importer module) gets BAR2's bus address + offset from map_dma_buf; static, non-P2P and non-revocable importers, and a root-bus function P2P cannot reach, get EOPNOTSUPP; vmap reads the node's data"),
        t("dmabuf_unbind", false, dmabuf::dmabuf_unbind, "sysfs unbind with a slow device importer mapped: when it returns the importer was told once and unmapped, new maps get ENODEV, another buffer's mapping SIGBUS; imports work after rebinding"),
        t("dmabuf_unplug", false, dmabuf::dmabuf_unplug, "hot-unplug with a dma-buf mapped, its fd in a child and a device importer mapped: SIGBUS, ENODEV for SYNC and mmap, the importer told once and unmapped; CREATE works after replug"),
        t("eventfd_per_user", false, sharing::eventfd_per_user, "two users each bind IVSHMEM_MAX_EVENTFDS_PER_USER eventfds on a vector, then get EDQUOT; root (CAP_SYS_RESOURCE) fills the rest, then ENOSPC"),
        t("set_mask_other_file", false, sharing::set_mask_other_file, "10000 SET_MASK calls on one file do not wake a reader blocked on another file in another process; a ring does"),
        t("doorbell_reserved", false, ioctl::doorbell_reserved, "non-zero reserved fields and flags of RING, SET_MASK and BIND_EVENTFD get EINVAL on a doorbell device"),
        t("mmap_bad", true, mmap::mmap_bad, "bad mmap calls are refused with the right errno"),
        t("mmap_noexec", true, mmap::mmap_noexec, "PROT_EXEC mappings are refused (EPERM); mprotect cannot add PROT_EXEC (EACCES)"),
        t("map_private_refused", true, mmap::map_private_refused, "MAP_PRIVATE is refused for every protection and access mode; MAP_SHARED works"),
        t("ioctl_bad", true, ioctl::ioctl_bad, "bad ioctls are refused; structures extend both ways"),
        t("pat_memtype", true, mmap::pat_memtype, "each cache mode is BAR2's memtype in the PAT list while mapped; write-back from bind, kept after unmapping, released on unload"),
        t("huge_faults", true, mmap::huge_faults, "aligned mappings are populated with PMD entries"),
        t("stress_fuzz", false, stress::stress_fuzz, "the seeded fuzzer (fuzz_calls calls, 2 processes x 3 threads) on every node; every device still works"),
        t("stress_bind", false, stress::stress_bind, "bind_cycles unbind/bind cycles under the fuzzer and a blocked doorbell waiter (ENODEV each time)"),
        t("stress_hotplug", false, stress::stress_hotplug, "hotplug_cycles QMP unplug/replug cycles of a mapped plain device under the fuzzer; a doorbell waiter survives"),
        t("stress_doorbell_unplug", false, removal::stress_doorbell_unplug, "QMP hot-unplug of a doorbell device under the fuzzer, with eventfds bound, waiters blocked and the doorbell page mapped: the fuzzer's processes survive; doorbell_unplug's checks"),
        t("stress_modules", false, stress::stress_modules, "mod_cycles insmod/rmmod cycles, each opening, asking and touching every device"),
        t("stress_rings", false, stress::stress_rings, "two guests ring each other at full speed at once (stress_rings each way); no lost final wake-up"),
        t("pat_page_tables", true, ptables::pat_page_tables, "each cache mode's bits (none, PWT, PCD) in the page table entries of a mapping (PTDUMP)"),
        t("huge_entries", true, ptables::huge_entries, "the page tables map aligned mappings with PMD (and, on 2 GiB BARs, PUD) entries, misaligned ones with PTEs (PTDUMP)"),
        t("huge_pud", true, ptables::huge_pud, "a 1 GiB-aligned mapping of a BAR of 2 GiB or more faults in 1 GiB (PUD) entries"),
        t("mem_access", true, mmap::mem_access, "a debugger's access (/proc/self/mem) reads and writes the mapping"),
        t("other_node", true, node::other_node, "a mknod'ed node on a tmpfs works; the driver pins no file system"),
        t("big_bar", false, mmap::big_bar, "a BAR of 4 GiB or more maps and reads at both ends"),
        t("unbind_rebind", false, removal::unbind_rebind, "unbind under a mapping and an ioctl loop: SIGBUS, ENODEV; rebind"),
        t("hotplug", false, removal::hotplug, "QMP device_del/device_add under a mapping: SIGBUS, ENODEV; re-plug"),
        t("doorbell_unplug", false, removal::doorbell_unplug, "QMP hot-unplug of a doorbell device with eventfds bound, a reader and a poller blocked, the doorbell page mapped (also in a child): ENODEV, POLLHUP, SIGBUS; eventfds untouched; the module unloads"),
        t("doorbell_info", false, doorbell::doorbell_info, "a doorbell device's IVPosition is the server's, listed by the host client"),
        t("doorbell_local", false, doorbell::doorbell_local, "self-rings wake read, poll and eventfds on exactly their vector; mask; bad input"),
        t("c_ring", false, doorbell::c_ring, "a C program built against the UAPI header rings and polls"),
        t("doorbell_all_vectors", false, doorbell::doorbell_all_vectors, "every allocated MSI-X vector raises its own interrupt and eventfd, not only the first and last"),
        t("doorbell_signal", false, doorbell::doorbell_signal, "a signal interrupts a blocked read"),
        t("doorbell_mmap", false, doorbell::doorbell_mmap, "the doorbell page: a store rings; bad mappings refused; SIGBUS after unbind"),
        t("doorbell_nomsi", false, doorbell::doorbell_nomsi, "booted with pci=nomsi: no doorbell page in INFO, mapping it fails"),
        t("doorbell_unbind", false, doorbell::doorbell_unbind, "unbind wakes a blocked reader (ENODEV) and a poller (HUP|ERR)"),
        t("doorbell_mask_wakeup", false, readers::doorbell_mask_wakeup, "SET_MASK wakes a blocked poll and read; a narrowed mask is honoured by a waiting read"),
        t("doorbell_two_readers", false, readers::doorbell_two_readers, "two readers of one file: S not D, EINTR on a signal, EAGAIN with O_NONBLOCK, each event once"),
        t("doorbell_fairness", false, readers::doorbell_fairness, "one event per read: a busy vector 0 does not starve vector 1"),
        t("readonly_open", false, readers::readonly_open, "an O_RDONLY file: RING, BIND_EVENTFD, SET_CACHE get EBADF; INFO, read, read-only mmap work"),
        t("doorbell_vectors_256", false, scale::doorbell_vectors_256, "256 vectors on one vCPU: the device binds, maps, and INFO, sysfs and the handlers agree on the usable count"),
        t("doorbell_many_bindings", false, scale::doorbell_many_bindings, "200 files bind every vector: IVSHMEM_MAX_EVENTFDS per vector, then ENOSPC; all signalled; closing them frees every slot"),
        t("doorbell_pair", false, doorbell::doorbell_pair, "two guests ring each other on every vector, stream 100k rings, ring and are rung by the host"),
        t("doorbell_kill", false, doorbell::doorbell_kill, "a peer killed mid-stream: rings to it are harmless, the survivor works"),
        t("demo_chat", false, doorbell::demo_chat, "the demo: a message and its answer between two guests, by doorbell"),
        t("cli_list", false, cli::cli_list, "ivshmem list (table, JSON, as nobody) matches INFO; its cache column follows the mappings"),
        t("cli_info_dump_write", false, cli::cli_info_dump_write, "ivshmem info by index, node and link; dump shows mmap'ed and host data; write lands, all or nothing"),
        t("cli_ring_wait", false, cli::cli_ring_wait, "ivshmem ring reaches the device; ivshmem wait wakes on its vectors (text, JSON), times out with 124"),
        t("cli_errors", false, cli::cli_errors, "ivshmem errors: 'ivshmem: PATH: message' exit 1, usage exit 2, EACCES, doorbells on a plain device"),
        t("deliberate_fail", false, deliberate_fail, "always fails: proves a failure turns the run red"),
        t("hang", false, hang, "never returns: proves the runner's timeout"),
    ]
}

fn deliberate_fail() -> TestResult {
    fail!("deliberate failure, selected only by the runner's own test")
}

fn hang() -> TestResult {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
