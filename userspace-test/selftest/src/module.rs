//! Selftests of the module: loading, binding every device, unloading,
//! cycles, unloading while in use, and its KUnit suites.

use crate::fixture::*;
use crate::{TestResult, check, fail, skip};
use guest_sys::{self as sys, Loaded};
use ivshmem::{CacheMode, Device};
use std::path::Path;

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

pub fn module_bind() -> TestResult {
    let devs = sys::ivshmem_devices()?;
    if devs.is_empty() {
        skip!("this guest has no ivshmem device");
    }
    let module = Loaded::load()?;
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
    module.unload()?;
    check_unloaded(&devs)
}

pub fn module_nodev() -> TestResult {
    let devs = sys::ivshmem_devices()?;
    if !devs.is_empty() {
        skip!("this guest has {} ivshmem devices", devs.len());
    }
    let module = Loaded::load()?;
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
    module.unload()?;
    check_unloaded(&devs)
}

/// 50 insmod/rmmod cycles, each binding every device.
pub fn module_cycles() -> TestResult {
    let devs = devices(1)?;
    for i in 0..50 {
        let m = load()?;
        for d in &devs {
            check!(
                d.driver().as_deref() == Some(sys::MODULE),
                "cycle {i}: {} not bound",
                d.address()
            );
        }
        check!(
            sys::node_exists(devs.len() - 1),
            "cycle {i}: /dev/ivshmem{} missing",
            devs.len() - 1
        );
        m.unload()?;
    }
    check!(!sys::node_exists(0), "/dev/ivshmem0 outlives the module");
    Ok(())
}

/// rmmod is refused while a file is open or a mapping exists.
pub fn rmmod_busy() -> TestResult {
    devices(1)?;
    let m = load()?;
    let dev = Device::open(0)?;
    let map = dev.map(0, PAGE, CacheMode::WriteBack)?;
    let try_rmmod = || {
        std::process::Command::new("rmmod")
            .arg("ivshmem")
            .output()
            .map(|o| o.status.success())
    };
    check!(!try_rmmod()?, "rmmod succeeded with an open file");
    drop(dev);
    check!(!try_rmmod()?, "rmmod succeeded with a mapping");
    check!(sys::module_loaded()?, "the module is gone");
    map.write_volatile(0, 7u32)?;
    drop(map);
    Ok(m.unload()?)
}

/// The module's KUnit suites pass (they run when it loads).
pub fn kunit() -> TestResult {
    let _m = load()?;
    if !Path::new("/sys/kernel/debug/kunit").exists() {
        skip!("no KUnit in this kernel (CONFIG_KUNIT)");
    }
    for (suite, cases) in [
        ("ivshmem_shm", &["mmap_ranges"][..]),
        (
            "ivshmem_intx",
            &[
                "intx_enable_sets_the_mask",
                "intx_unbind_clears_the_mask_and_the_status",
                "intx_status_zero_is_not_ours",
                "intx_status_set_is_acknowledged_and_counted",
            ][..],
        ),
        (
            "ivshmem_doorbell",
            &["pending_is_round_robin_and_masked"][..],
        ),
        ("ivshmem_kvmfr", &["numbers", "sizes"][..]),
        ("ivshmem_bars", &["only_memory_bars_are_accepted"][..]),
    ] {
        let results = sys::read_trim(format!("/sys/kernel/debug/kunit/{suite}/results"))?;
        for l in results.lines() {
            println!("#   {l}");
        }
        for c in cases {
            check!(
                results
                    .lines()
                    .any(|l| l.trim().starts_with("ok ") && l.trim().ends_with(c)),
                "{suite}: {c} did not pass"
            );
        }
        check!(!results.contains("not ok"), "{suite}: a KUnit case failed");
    }
    Ok(())
}
