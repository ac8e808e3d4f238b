//! The selftests.

use crate::sys::{self, Loaded};
use crate::{Test, TestResult, check, fail, skip};
use std::path::Path;

/// Every test, in the default running order.
pub fn all() -> Vec<Test> {
    vec![
        Test {
            name: "autoload_module",
            default: false,
            about: "udev loaded the DKMS-built module from the device's modalias (modules.alias)",
            run: crate::distro::autoload_module,
        },
        Test {
            name: "autoload_node",
            default: false,
            about: "udev gave /dev/ivshmem0 the rule's group (ivshmem) and mode (0660)",
            run: crate::distro::autoload_node,
        },
        Test {
            name: "autoload_symlink",
            default: false,
            about: "udev made /dev/ivshmem/by-path/pci-<address> point at the device's node",
            run: crate::distro::autoload_symlink,
        },
        Test {
            name: "python_pytest",
            default: false,
            about: "the Python package's pytest tests pass with Debian's CPython on the real devices",
            run: crate::python::python_pytest,
        },
        Test {
            name: "python_wait_latency",
            default: false,
            about: "the Python package's wait latency over raw os.read (ring-to-wake, median and p99)",
            run: crate::python::python_wait_latency,
        },
        Test {
            name: "module_bind",
            default: true,
            about: "the module loads, binds every ivshmem device and unloads cleanly",
            run: module_bind,
        },
        Test {
            name: "module_nodev",
            default: true,
            about: "with no ivshmem device, the module loads, binds nothing, unloads",
            run: module_nodev,
        },
        Test {
            name: "module_cycles",
            default: true,
            about: "50 insmod/rmmod cycles, each binding every device",
            run: crate::shm::module_cycles,
        },
        Test {
            name: "rmmod_busy",
            default: true,
            about: "rmmod is refused while a file is open or a mapping exists",
            run: crate::shm::rmmod_busy,
        },
        Test {
            name: "kunit",
            default: true,
            about: "the module's KUnit suites pass",
            run: crate::shm::kunit,
        },
        Test {
            name: "info_sysfs",
            default: true,
            about: "/dev/ivshmemN, INFO and sysfs match the QEMU configuration",
            run: crate::shm::info_sysfs,
        },
        Test {
            name: "host_data",
            default: true,
            about: "the host's data is visible in the guest and the guest's reaches the host",
            run: crate::shm::host_data,
        },
        Test {
            name: "c_example",
            default: true,
            about: "a C program built against the UAPI header reads INFO and maps",
            run: crate::shm::c_example,
        },
        Test {
            name: "mmap_bad",
            default: true,
            about: "bad mmap calls are refused with the right errno",
            run: crate::shm::mmap_bad,
        },
        Test {
            name: "map_private_refused",
            default: true,
            about: "MAP_PRIVATE is refused for every protection and access mode; MAP_SHARED works",
            run: crate::shm::map_private_refused,
        },
        Test {
            name: "ioctl_bad",
            default: true,
            about: "bad ioctls are refused; structures extend both ways",
            run: crate::shm::ioctl_bad,
        },
        Test {
            name: "pat_memtype",
            default: true,
            about: "each cache mode is BAR2's memtype in the PAT list while mapped; write-back from bind, kept after unmapping, released on unload",
            run: crate::shm::pat_memtype,
        },
        Test {
            name: "huge_faults",
            default: true,
            about: "aligned mappings are populated with PMD entries",
            run: crate::shm::huge_faults,
        },
        Test {
            name: "stress_fuzz",
            default: false,
            about: "the seeded fuzzer (fuzz_calls calls, 2 processes x 3 threads) on every node; every device still works",
            run: crate::stress::stress_fuzz,
        },
        Test {
            name: "stress_bind",
            default: false,
            about: "bind_cycles unbind/bind cycles under the fuzzer and a blocked doorbell waiter (ENODEV each time)",
            run: crate::stress::stress_bind,
        },
        Test {
            name: "stress_hotplug",
            default: false,
            about: "hotplug_cycles QMP unplug/replug cycles of a mapped plain device under the fuzzer; a doorbell waiter survives",
            run: crate::stress::stress_hotplug,
        },
        Test {
            name: "stress_modules",
            default: false,
            about: "mod_cycles insmod/rmmod cycles, each opening, asking and touching every device",
            run: crate::stress::stress_modules,
        },
        Test {
            name: "stress_rings",
            default: false,
            about: "two guests ring each other at full speed at once (stress_rings each way); no lost final wake-up",
            run: crate::stress::stress_rings,
        },
        Test {
            name: "pat_page_tables",
            default: true,
            about: "each cache mode's bits (none, PWT, PCD) in the page table entries of a mapping (PTDUMP)",
            run: crate::ptables::pat_page_tables,
        },
        Test {
            name: "huge_entries",
            default: true,
            about: "the page tables map aligned mappings with PMD (and, on 2 GiB BARs, PUD) entries, misaligned ones with PTEs (PTDUMP)",
            run: crate::ptables::huge_entries,
        },
        Test {
            name: "huge_pud",
            default: true,
            about: "a 1 GiB-aligned mapping of a BAR of 2 GiB or more faults in 1 GiB (PUD) entries",
            run: crate::ptables::huge_pud,
        },
        Test {
            name: "mem_access",
            default: true,
            about: "a debugger's access (/proc/self/mem) reads and writes the mapping",
            run: crate::shm::mem_access,
        },
        Test {
            name: "other_node",
            default: true,
            about: "a mknod'ed node on a tmpfs works; the driver pins no file system",
            run: crate::shm::other_node,
        },
        Test {
            name: "big_bar",
            default: false,
            about: "a BAR of 4 GiB or more maps and reads at both ends",
            run: crate::shm::big_bar,
        },
        Test {
            name: "unbind_rebind",
            default: false,
            about: "unbind under a mapping and an ioctl loop: SIGBUS, ENODEV; rebind",
            run: crate::shm::unbind_rebind,
        },
        Test {
            name: "hotplug",
            default: false,
            about: "QMP device_del/device_add under a mapping: SIGBUS, ENODEV; re-plug",
            run: crate::shm::hotplug,
        },
        Test {
            name: "doorbell_info",
            default: false,
            about: "a doorbell device's IVPosition is the server's, listed by the host client",
            run: crate::shm::doorbell_info,
        },
        Test {
            name: "doorbell_local",
            default: false,
            about: "self-rings wake read, poll and eventfds on exactly their vector; mask; bad input",
            run: crate::doorbell::doorbell_local,
        },
        Test {
            name: "c_ring",
            default: false,
            about: "a C program built against the UAPI header rings and polls",
            run: crate::doorbell::c_ring,
        },
        Test {
            name: "doorbell_all_vectors",
            default: false,
            about: "every allocated MSI-X vector raises its own interrupt and eventfd, not only the first and last",
            run: crate::doorbell::doorbell_all_vectors,
        },
        Test {
            name: "doorbell_signal",
            default: false,
            about: "a signal interrupts a blocked read",
            run: crate::doorbell::doorbell_signal,
        },
        Test {
            name: "doorbell_mmap",
            default: false,
            about: "the doorbell page: a store rings; bad mappings refused; SIGBUS after unbind",
            run: crate::doorbell::doorbell_mmap,
        },
        Test {
            name: "doorbell_unbind",
            default: false,
            about: "unbind wakes a blocked reader (ENODEV) and a poller (HUP|ERR)",
            run: crate::doorbell::doorbell_unbind,
        },
        Test {
            name: "doorbell_mask_wakeup",
            default: false,
            about: "SET_MASK wakes a blocked poll and read; a narrowed mask is honoured by a waiting read",
            run: crate::readers::doorbell_mask_wakeup,
        },
        Test {
            name: "doorbell_two_readers",
            default: false,
            about: "two readers of one file: S not D, EINTR on a signal, EAGAIN with O_NONBLOCK, each event once",
            run: crate::readers::doorbell_two_readers,
        },
        Test {
            name: "doorbell_fairness",
            default: false,
            about: "one event per read: a busy vector 0 does not starve vector 1",
            run: crate::readers::doorbell_fairness,
        },
        Test {
            name: "readonly_open",
            default: false,
            about: "an O_RDONLY file: RING, BIND_EVENTFD, SET_CACHE get EBADF; INFO, read, read-only mmap work",
            run: crate::readers::readonly_open,
        },
        Test {
            name: "doorbell_vectors_256",
            default: false,
            about: "256 vectors on one vCPU: the device binds, maps, and INFO, sysfs and the handlers agree on the usable count",
            run: crate::scale::doorbell_vectors_256,
        },
        Test {
            name: "doorbell_many_bindings",
            default: false,
            about: "200 files bind every vector: IVSHMEM_MAX_EVENTFDS per vector, then ENOSPC; all signalled; close is quick",
            run: crate::scale::doorbell_many_bindings,
        },
        Test {
            name: "doorbell_pair",
            default: false,
            about: "two guests ring each other on every vector, stream 100k rings, ring and are rung by the host",
            run: crate::doorbell::doorbell_pair,
        },
        Test {
            name: "doorbell_kill",
            default: false,
            about: "a peer killed mid-stream: rings to it are harmless, the survivor works",
            run: crate::doorbell::doorbell_kill,
        },
        Test {
            name: "demo_chat",
            default: false,
            about: "the demo: a message and its answer between two guests, by doorbell",
            run: crate::doorbell::demo_chat,
        },
        Test {
            name: "cli_list",
            default: false,
            about: "ivshmem list (table, JSON, as nobody) matches INFO; its cache column follows the mappings",
            run: crate::cli::cli_list,
        },
        Test {
            name: "cli_info_dump_write",
            default: false,
            about: "ivshmem info by index, node and link; dump shows mmap'ed and host data; write lands, all or nothing",
            run: crate::cli::cli_info_dump_write,
        },
        Test {
            name: "cli_ring_wait",
            default: false,
            about: "ivshmem ring reaches the device; ivshmem wait wakes on its vectors (text, JSON), times out with 124",
            run: crate::cli::cli_ring_wait,
        },
        Test {
            name: "cli_errors",
            default: false,
            about: "ivshmem errors: 'ivshmem: PATH: message' exit 1, usage exit 2, EACCES, doorbells on a plain device",
            run: crate::cli::cli_errors,
        },
        Test {
            name: "deliberate_fail",
            default: false,
            about: "always fails: proves a failure turns the run red",
            run: deliberate_fail,
        },
        Test {
            name: "hang",
            default: false,
            about: "never returns: proves the runner's timeout",
            run: hang,
        },
    ]
}

fn driver_dir() -> &'static Path {
    Path::new("/sys/bus/pci/drivers/ivshmem")
}

/// Checks the state after an unload: no module, no driver, no bindings.
fn check_unloaded(devs: &[sys::PciDev]) -> TestResult {
    check!(
        !sys::module_loaded()?,
        "ivshmem still in /proc/modules after rmmod"
    );
    check!(
        !Path::new("/sys/module/ivshmem").exists(),
        "/sys/module/ivshmem still exists after rmmod"
    );
    check!(
        !driver_dir().exists(),
        "{} still exists after rmmod",
        driver_dir().display()
    );
    for d in devs {
        check!(
            d.driver().is_none(),
            "{} still has a driver after rmmod",
            d.address()
        );
    }
    Ok(())
}

fn module_bind() -> TestResult {
    let devs = sys::ivshmem_devices()?;
    if devs.is_empty() {
        skip!("this guest has no ivshmem device");
    }
    let module = Loaded::load().map_err(crate::Failure::Fail)?;
    let bound = sys::driver_bound_devices()?;
    for d in &devs {
        match d.driver() {
            Some(drv) if drv == sys::MODULE => {}
            Some(other) => fail!("{} is bound to {other}, not ivshmem", d.address()),
            None => fail!("{} is not bound after insmod", d.address()),
        }
        check!(
            bound.contains(&d.address()),
            "{} missing from {}",
            d.address(),
            driver_dir().display()
        );
        println!("# {} bound to ivshmem", d.address());
    }
    check!(
        bound.len() == devs.len(),
        "driver has {} devices bound, the guest has {} ivshmem devices",
        bound.len(),
        devs.len()
    );
    module.unload().map_err(crate::Failure::Fail)?;
    check_unloaded(&devs)
}

fn module_nodev() -> TestResult {
    let devs = sys::ivshmem_devices()?;
    if !devs.is_empty() {
        skip!("this guest has {} ivshmem devices", devs.len());
    }
    let module = Loaded::load().map_err(crate::Failure::Fail)?;
    check!(
        sys::module_loaded()?,
        "ivshmem not in /proc/modules after insmod"
    );
    check!(
        driver_dir().exists(),
        "driver not registered: no {}",
        driver_dir().display()
    );
    let bound = sys::driver_bound_devices()?;
    check!(
        bound.is_empty(),
        "driver bound {bound:?} with no ivshmem device present"
    );
    module.unload().map_err(crate::Failure::Fail)?;
    check_unloaded(&devs)
}

fn deliberate_fail() -> TestResult {
    fail!("deliberate failure, selected only by the runner's own test")
}

fn hang() -> TestResult {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
