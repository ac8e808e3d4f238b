//! Selftests of removal under users: sysfs unbind and QMP hotplug while a
//! mapping and an ioctl loop are live.

use crate::fixture::*;
use crate::{Failure, TestResult, check, fail};
use guest_sys::{self as sys, PciDev, errname, errno};
use ivshmem::uapi::*;
use ivshmem::{CacheMode, Device};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use vmrun_protocol::Request;

/// Removes the device (by `remove`), checks that users see SIGBUS and
/// ENODEV, then brings it back (by `restore`) and checks it works again.
fn removal(
    remove: &dyn Fn(&PciDev) -> TestResult,
    restore: &dyn Fn(&PciDev) -> TestResult,
) -> TestResult {
    let devs = devices(1)?;
    let pci = &devs[0];
    let _m = load()?;
    let dev = Device::open(0)?;
    let map = dev.map_all()?;
    map.write_volatile(0, 0xfeed_f00du32)?;
    // An ioctl loop running while the device goes. It says when it has
    // made its first call, and runs until a call fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = std::sync::mpsc::channel();
    let looper = {
        let fd = Device::open(0)?;
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut calls = 0u64;
            loop {
                // Read before the call: a call made after `stop` was set
                // (the device is gone by then) must fail.
                let last = stop.load(Ordering::Acquire);
                match fd.info() {
                    Ok(_) => calls += 1,
                    Err(e) => return (calls, ivshmem::errno(&e)),
                }
                if calls == 1 {
                    started_tx.send(()).ok();
                }
                if last {
                    return (calls, None);
                }
            }
        })
    };
    started
        .recv()
        .map_err(|_| Failure::Fail("the ioctl loop never made a call".into()))?;
    // A process forked before the removal, which touches its copy of the
    // mapping after it.
    let ptr = map.as_ptr();
    let forked = Forked::start(|| {
        // SAFETY: In the child, which inherited the mapping at `ptr` (the
        // parent keeps it alive); after the removal the read faults with
        // SIGBUS, which only ends the child. Aligned, 4 bytes.
        let v = unsafe { ptr.cast::<u32>().read_volatile() };
        // Reaching here means no SIGBUS: stale data, or the new device's.
        if v == 0xfeed_f00d { 10 } else { 11 }
    })?;
    remove(pci)?;
    check!(
        sys::wait_for(60, || !sys::node_exists(0)),
        "/dev/ivshmem0 still exists after removal"
    );
    stop.store(true, Ordering::Release);
    let (calls, err) = join(looper, "ioctl loop")?;
    println!("# ioctl loop: {calls} calls, then {:?}", err.map(errname));
    check!(
        err == Some(libc::ENODEV),
        "the ioctl loop ended with {:?}, want ENODEV",
        err.map(errname)
    );
    gone_first(&dev)?;
    let ended = forked.go()?;
    check!(
        ended == Err(libc::SIGBUS),
        "a child forked before the removal, touching its mapping after it: {ended:?}, \
         want SIGBUS"
    );
    expect_sigbus(ptr, "the old mapping")?;
    for (what, r) in [
        ("INFO", dev.info().err()),
        ("mmap", dev.map(0, PAGE, CacheMode::WriteBack).err()),
    ] {
        let e = r.and_then(|e| ivshmem::errno(&e));
        check!(
            e == Some(libc::ENODEV),
            "{what} on the old file: {:?}, want ENODEV",
            e.map(errname)
        );
    }
    drop(map);
    restore(pci)?;
    check!(
        sys::wait_for(60, || sys::node_exists(0)),
        "/dev/ivshmem0 did not come back"
    );
    let dev2 = Device::open(0)?;
    let map2 = dev2.map_all()?;
    let v: u32 = map2.read_volatile(0)?;
    check!(
        v == 0xfeed_f00d,
        "the new device reads {v:#x} where the old one wrote 0xfeedf00d"
    );
    let e = dev.info().err().and_then(|e| ivshmem::errno(&e));
    check!(
        e == Some(libc::ENODEV),
        "the old file works again after rebinding: {:?}",
        e.map(errname)
    );
    Ok(())
}

/// Once the device is gone, every call on an old file says ENODEV first,
/// whatever else is wrong with it (here: a plain device, which has no
/// doorbells, a buffer too small for an event, a foreign ioctl).
fn gone_first(dev: &Device) -> TestResult {
    let fd = dev.as_fd().as_raw_fd();
    let mut small = [0u8; 8];
    // SAFETY: The buffer is `small`, a local 8-byte array, and the length
    // passed is its length; `fd` is borrowed from `dev`, open for the call.
    let short = unsafe { libc::read(fd, small.as_mut_ptr().cast(), small.len()) };
    let short = if short < 0 { errno() } else { 0 };
    let mut foreign = 0u64;
    // TCGETS, a terminal ioctl.
    let tty = raw_ioctl(dev, 0x5401, (&raw mut foreign).cast());
    let mut ring = ivshmem_ring::default();
    let ring_cmd = ioc(IOC_WRITE, 2, std::mem::size_of::<ivshmem_ring>());
    let ring = raw_ioctl(dev, ring_cmd, (&raw mut ring).cast());
    let (polled, revents) = poll_in(dev, 0);
    let errno_of = |r: std::io::Result<Vec<ivshmem::Event>>| {
        r.err().and_then(|e| ivshmem::errno(&e)).unwrap_or(0)
    };
    for (what, got) in [
        ("read of a plain device", errno_of(dev.read_events())),
        ("read of 8 bytes", short),
        ("a foreign ioctl (TCGETS)", tty),
        ("RING on a plain device", ring),
    ] {
        println!("# after removal, {what}: {}", errname(got));
        check!(
            got == libc::ENODEV,
            "after removal, {what}: {}, want ENODEV",
            errname(got)
        );
    }
    let hup = libc::POLLHUP | libc::POLLERR;
    check!(
        polled == 1 && revents & hup == hup,
        "after removal, poll: {polled}, revents {:#x}, want POLLHUP | POLLERR",
        revents
    );
    Ok(())
}

/// sysfs unbind under a mapping and an ioctl loop; rebind.
pub fn unbind_rebind() -> TestResult {
    removal(&|pci| Ok(sys::unbind(&pci.path)?), &|pci| {
        Ok(sys::bind(&pci.path)?)
    })
}

/// QMP device_del / device_add under a mapping and an ioctl loop.
pub fn hotplug() -> TestResult {
    removal(
        &|pci| {
            println!("{}", Request::DeviceDel("shm0".into()).line());
            if sys::wait_for(60, || !pci.path.exists()) {
                Ok(())
            } else {
                fail!("{} still present 60 s after device_del", pci.address())
            }
        },
        &|_| {
            println!("{}", Request::DeviceAdd("shm0".into()).line());
            Ok(())
        },
    )
}

/// QMP hot-unplug of a doorbell device (on the root port, on the
/// scenario's server) with every kind of user: an eventfd bound on each
/// vector, a reader and a poller blocked, the doorbell page and BAR2
/// mapped, and a child forked before the removal that holds the page.
/// The waiters wake (ENODEV; POLLHUP | POLLERR), the page gives SIGBUS in
/// this process and in the child, RING and BIND get ENODEV, the eventfds
/// were not signalled and still work, and the module unloads once the
/// files are closed (no reference left behind).
pub fn doorbell_unplug() -> TestResult {
    unplug_bell(None)
}

/// [`doorbell_unplug`] with the seeded fuzzer (`fuzz_calls` calls, at
/// least) running on the device through the removal (`make stress`): its
/// processes survive (the SIGBUS of their mappings mended), then the same
/// checks.
pub fn stress_doorbell_unplug() -> TestResult {
    unplug_bell(Some(sys::setting_or("fuzz_calls", 20_000)))
}

fn unplug_bell(fuzz_calls: Option<u64>) -> TestResult {
    let Bell {
        _m, dev, info, me, ..
    } = open_bell()?;
    check!(
        info.doorbell_mmap,
        "INFO: features {:#x}, no doorbell page (BAR0 alone on its root port is page-aligned)",
        info.raw.features
    );
    let pci = sys::ivshmem_devices()?[0].clone();
    // The fuzzer runs on until the node is gone, so that the removal comes
    // in the middle of its calls (its ENODEV count says so). Forked before
    // this test starts threads of its own.
    let fuzz = fuzz_calls.map(|calls| ivshmem_fuzz::Config {
        until_gone: Some("/dev/ivshmem0".into()),
        ..crate::stress::fuzz_config(calls)
    });
    let fuzzing = fuzz.as_ref().map(ivshmem_fuzz::spawn).transpose()?;
    let dev = Arc::new(dev);
    let efds = eventfd_per_vector(&dev, info.vectors as u16)?;
    let page = dev.map_doorbell()?;
    let map = dev.map_all()?;
    if fuzzing.is_none() {
        // The page rings before the removal.
        page.ring(me, 0);
        expect_events(
            &dev,
            &[(0, 1)],
            "a ring through the page before the removal",
        )?;
    }
    // Every eventfd at 0 (they are non-blocking: reading one resets it).
    for efd in &efds {
        efd_count(efd);
    }
    let ptr = page.as_ptr();
    let forked = Forked::start(|| {
        // SAFETY: In the child, which inherited the page at `ptr` (the
        // parent keeps it mapped); after the removal the store faults with
        // SIGBUS, which only ends the child. Aligned, 4 bytes.
        unsafe { ptr.cast::<u32>().write_volatile(u32::from(me) << 16) };
        10
    })?;
    // The waiters wait until the device goes: the fuzzer's rings wake them
    // before, and they wait again.
    let (tx, tids) = std::sync::mpsc::channel();
    let reader = {
        let (dev, tx) = (dev.clone(), tx.clone());
        std::thread::spawn(move || {
            tx.send(gettid()).ok();
            loop {
                if let Some(e) = err_of(dev.read_events()) {
                    return e;
                }
            }
        })
    };
    let poller = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            tx.send(gettid()).ok();
            loop {
                let (n, revents) = poll_in(&*dev, 120_000);
                if n != 1 || revents & libc::POLLIN == 0 {
                    return revents;
                }
                // Take the events that woke it, to block again.
                let mut evs = [0u8; 64];
                // SAFETY: `evs` is a local 64-byte buffer, a whole number
                // of events; the descriptor is borrowed from `dev`.
                unsafe { libc::read(dev.as_fd().as_raw_fd(), evs.as_mut_ptr().cast(), 64) };
            }
        })
    };
    for _ in 0..2 {
        let tid = tids.recv().map_err(|e| Failure::Fail(e.to_string()))?;
        wait_blocked(tid, &[SYS_READ, SYS_POLL, SYS_PPOLL], "a waiter")?;
    }
    println!("{}", Request::DeviceDel("shm0".into()).line());
    check!(
        sys::wait_for(60, || !pci.path.exists()),
        "{} still present 60 s after device_del",
        pci.address()
    );
    check!(
        sys::wait_for(60, || !sys::node_exists(0)),
        "/dev/ivshmem0 still exists after removal"
    );
    let r = join(reader, "reader")?;
    let p = join(poller, "poller")?;
    println!("# blocked read: {}; poll revents {p:#x}", errname(r));
    check!(
        r == libc::ENODEV,
        "blocked read after hot-unplug: {}, want ENODEV",
        errname(r)
    );
    check!(
        p & (libc::POLLHUP | libc::POLLERR) == libc::POLLHUP | libc::POLLERR,
        "poll after hot-unplug: {p:#x}, want POLLHUP | POLLERR"
    );
    if let (Some(cfg), Some(running)) = (&fuzz, fuzzing) {
        let report = running.wait()?;
        let saw = |e| report.errors.get(&e).copied().unwrap_or(0);
        // Its calls met the removal: ENODEV on its files, ENOENT opening
        // the node, or SIGBUS on its mappings.
        check!(
            saw(libc::ENODEV) + saw(libc::ENOENT) + report.sigbus > 0,
            "the fuzzer ended before the removal: {:?}",
            report.errors
        );
        println!(
            "# the fuzzer through the removal: seed {:#x}, {} calls on {:?} (until {:?} was \
             gone), {} of them ENODEV, {} SIGBUS mended; errors {:?}",
            cfg.seed,
            report.calls,
            cfg.devices,
            cfg.until_gone,
            report.errors.get(&libc::ENODEV).copied().unwrap_or(0),
            report.sigbus,
            report.errors
        );
    }
    let ended = forked.go()?;
    check!(
        ended == Err(libc::SIGBUS),
        "a child forked before the removal, ringing through its page after it: {ended:?}, \
         want SIGBUS"
    );
    expect_sigbus(ptr, "the doorbell page")?;
    expect_sigbus(map.as_ptr(), "BAR2")?;
    expect_err("RING after hot-unplug", dev.ring(me, 0), libc::ENODEV)?;
    let spare = eventfd()?;
    expect_err(
        "BIND_EVENTFD after hot-unplug",
        dev.bind_eventfd(0, spare.as_fd()),
        libc::ENODEV,
    )?;
    for (v, efd) in efds.iter().enumerate() {
        let signalled = efd_count(efd);
        check!(
            fuzz.is_some() || signalled == 0,
            "eventfd of vector {v} signalled by the removal ({signalled})"
        );
        let one = 1u64.to_ne_bytes();
        // SAFETY: `one` is a local 8-byte array, an eventfd's write size;
        // the descriptor is open (owned by `efds`).
        let w = unsafe { libc::write(efd.as_raw_fd(), one.as_ptr().cast(), 8) };
        let got = efd_count(efd);
        check!(
            w == 8 && got == 1,
            "eventfd of vector {v} after the removal: write {w}, then read {got}"
        );
    }
    drop((page, map, efds, spare));
    let dev = Arc::try_unwrap(dev).map_err(|_| Failure::Fail("a waiter kept the file".into()))?;
    drop(dev);
    // `_m` unloads the module: it fails if the removal left a reference.
    Ok(())
}
