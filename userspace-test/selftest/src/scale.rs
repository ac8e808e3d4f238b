//! Selftests of a doorbell device with many vectors and many eventfd
//! bindings: the driver takes the interrupt vectors it can get, and caps
//! the eventfds each vector signals.

use crate::fixture::{efd_count, eventfd, expect_events, open_bell};
use crate::{Failure, TestResult, check, fail};
use guest_sys::{self as sys, errname};
use ivshmem::Device;
use ivshmem::uapi::IVSHMEM_MAX_EVENTFDS;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

/// The kernel log so far.
fn kernel_log() -> Result<String, Failure> {
    // SAFETY: SYSLOG_ACTION_SIZE_BUFFER takes no buffer.
    let size = unsafe { libc::klogctl(10, std::ptr::null_mut(), 0) };
    check!(size > 0, "klogctl(SIZE_BUFFER): {size}");
    let mut buf = vec![0u8; size as usize];
    // SAFETY: SYSLOG_ACTION_READ_ALL fills at most `size` bytes of `buf`.
    let n = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), size) };
    check!(n >= 0, "klogctl(READ_ALL): {n}");
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Lines of `/proc/interrupts` that belong to the driver.
/// The vectors of device `index` with a handler in /proc/interrupts,
/// named `ivshmem{index}-{vector}`, sorted.
fn driver_irqs(index: u32) -> Result<Vec<u32>, Failure> {
    let text = std::fs::read_to_string("/proc/interrupts")?;
    let prefix = format!("ivshmem{index}-");
    let mut v: Vec<u32> = text
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .last()?
                .strip_prefix(&prefix)?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// A 256-vector device on a 1-vCPU guest: the node exists, the shared
/// memory maps, INFO and sysfs report the same usable vector count (the
/// handlers in /proc/interrupts, one per vector, named after it), and each
/// usable vector receives.
pub fn doorbell_vectors_256() -> TestResult {
    let asked = sys::setting_u64s("vectors")?[0];
    let bell = open_bell()?;
    let info = bell.dev.info()?;
    let sysfs = sys::read_trim(format!("/sys/class/misc/ivshmem{}/vectors", bell.index))?;
    let handlers = driver_irqs(bell.index)?;
    let irqs = handlers.len();
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
        handlers.iter().copied().eq(0..info.vectors),
        "handlers in /proc/interrupts for vectors {handlers:?} of ivshmem{}, INFO says {}",
        bell.index,
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

/// Hundreds of files bind an eventfd to every vector: each vector takes
/// `IVSHMEM_MAX_EVENTFDS`, the next gets ENOSPC; every binding is
/// signalled; closing all the files releases every binding and slot.
pub fn doorbell_many_bindings() -> TestResult {
    let files_n = 200usize;
    let bell = open_bell()?;
    let n = bell.dev.info()?.vectors as u16;
    check!(n >= 1, "no usable vector");
    let log_before = kernel_log()?.lines().count();
    // One eventfd per vector, shared by every file that binds the vector:
    // each binding adds 1 per interrupt.
    let efds: Vec<OwnedFd> = (0..n).map(|_| eventfd()).collect::<Result<_, _>>()?;
    let mut files = Vec::with_capacity(files_n);
    let t0 = Instant::now();
    for f in 0..files_n {
        let dev = Device::open(bell.index)?;
        for (v, efd) in efds.iter().enumerate() {
            let r = dev.bind_eventfd(v as u16, efd.as_fd());
            if f < IVSHMEM_MAX_EVENTFDS {
                if let Err(e) = r {
                    fail!("file {f}, vector {v}: {e}");
                }
            } else {
                let got = r.err().and_then(|e| ivshmem::errno(&e));
                check!(
                    got == Some(libc::ENOSPC),
                    "file {f}, vector {v}: binding beyond {IVSHMEM_MAX_EVENTFDS}: {:?}, want ENOSPC",
                    got.map(errname)
                );
            }
        }
        files.push(dev);
    }
    println!(
        "# {files_n} files bound {n} vectors in {:?}: {IVSHMEM_MAX_EVENTFDS} per vector, then ENOSPC",
        t0.elapsed()
    );
    // A slot freed by unbinding can be taken by another file.
    files[0].unbind_eventfd(0)?;
    files[IVSHMEM_MAX_EVENTFDS].bind_eventfd(0, efds[0].as_fd())?;
    // Every binding is signalled.
    for v in 0..n {
        bell.dev.ring(bell.me, v)?;
    }
    let want: Vec<(u16, u32)> = (0..n).map(|v| (v, 1)).collect();
    expect_events(&bell.dev, &want, "a ring on every vector")?;
    for (v, efd) in efds.iter().enumerate() {
        let c = efd_count(efd);
        check!(
            c == IVSHMEM_MAX_EVENTFDS as u64,
            "vector {v}: its eventfd counts {c}, want one per binding ({IVSHMEM_MAX_EVENTFDS})"
        );
    }
    // Closing every file releases every binding (checked below: no
    // eventfd is signalled any more, and the slots are free again). The
    // time is reported, not judged: timings belong to `make bench`.
    let t0 = Instant::now();
    drop(files);
    println!("# closing {files_n} files took {:?}", t0.elapsed());
    for v in 0..n {
        bell.dev.ring(bell.me, v)?;
    }
    expect_events(
        &bell.dev,
        &want,
        "a ring on every vector after the files closed",
    )?;
    for (v, efd) in efds.iter().enumerate() {
        check!(
            efd_count(efd) == 0,
            "vector {v}: an eventfd of a closed file was signalled"
        );
    }
    // Every slot is free again: as many new files take them all.
    let mut again = Vec::with_capacity(IVSHMEM_MAX_EVENTFDS);
    for i in 0..IVSHMEM_MAX_EVENTFDS {
        let dev = Device::open(bell.index)?;
        for (v, efd) in efds.iter().enumerate() {
            dev.bind_eventfd(v as u16, efd.as_fd()).map_err(|e| {
                Failure::Fail(format!(
                    "file {i}, vector {v}, after the others closed: {e}"
                ))
            })?;
        }
        again.push(dev);
    }
    drop(again);
    let log = kernel_log()?;
    let new: Vec<&str> = log.lines().skip(log_before).collect();
    check!(
        !new.iter().any(|l| l.contains("allocation failure")),
        "allocation failures in the kernel log: {:?}",
        new.iter()
            .filter(|l| l.contains("allocation failure"))
            .collect::<Vec<_>>()
    );
    Ok(())
}
