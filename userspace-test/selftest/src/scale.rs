//! Selftests of a doorbell device with many vectors: the driver takes the
//! interrupt vectors it can get.

use crate::doorbell::{expect_events, open_bell};
use crate::sys;
use crate::{Failure, TestResult, check};

/// Lines of `/proc/interrupts` that belong to the driver.
fn driver_irqs() -> Result<usize, Failure> {
    let text = std::fs::read_to_string("/proc/interrupts")?;
    Ok(text.lines().filter(|l| l.ends_with(" ivshmem")).count())
}

/// A 256-vector device on a 1-vCPU guest: the node exists, the shared
/// memory maps, INFO and sysfs report the same usable vector count (the
/// handlers in /proc/interrupts), and each usable vector receives.
pub fn doorbell_vectors_256() -> TestResult {
    let asked = sys::setting_u64s("vectors").map_err(Failure::Fail)?[0];
    let bell = open_bell()?;
    let info = bell.dev.info()?;
    let sysfs = sys::read_trim(format!("/sys/class/misc/ivshmem{}/vectors", bell.index))
        .map_err(Failure::Fail)?;
    let irqs = driver_irqs()?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# {asked} vectors asked of QEMU, {} usable (sysfs {sysfs}, {irqs} handlers), {cpus} CPU(s)",
        info.vectors
    );
    check!(
        sysfs == info.vectors.to_string(),
        "sysfs vectors {sysfs:?}, INFO {}",
        info.vectors
    );
    check!(
        irqs == info.vectors as usize,
        "{irqs} ivshmem handlers in /proc/interrupts, INFO says {}",
        info.vectors
    );
    check!(
        info.vectors >= 1 && u64::from(info.vectors) <= asked.min(256),
        "{} usable vectors of {asked}",
        info.vectors
    );
    let map = bell.dev.map_all()?;
    map.write_volatile(64, 0x2560_2560u32)?;
    let v: u32 = map.read_volatile(64)?;
    check!(v == 0x2560_2560, "the shared memory reads {v:#x}");
    // Every usable vector receives its own ring.
    let n = info.vectors as u16;
    for v in 0..n {
        bell.dev.ring(bell.me, v)?;
    }
    let want: Vec<(u16, u32)> = (0..n).map(|v| (v, 1)).collect();
    expect_events(&bell.dev, &want, "a ring on every usable vector")?;
    Ok(())
}
