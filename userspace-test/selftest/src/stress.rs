//! The stress campaign's guest side (`make stress`; `make check` runs a
//! short slice with a fixed seed): the fuzzer, alone and while devices are
//! unbound and hot-unplugged under it; insmod/rmmod cycles; two guests
//! ringing each other at full speed. Each test reports the counts it
//! reached as KTAP diagnostics; what it is for is also the kernel's reports
//! (KASAN, lockdep, UBSAN, hung tasks, soft lockups, WARN), which fail the
//! scenario in the runner.
//!
//! Settings (kernel command line, `ivt_KEY=VALUE`): `seed`, `fuzz_calls`,
//! `bind_cycles`, `hotplug_cycles`, `mod_cycles`, `stress_rings`.

use crate::fixture::{
    Bell, find, find_peer, gettid, ivposition, join, open_bell, sigusr1_interrupts, wait_blocked,
};
use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{self as sys, Loaded, errname};
use ivshmem::Device;
use ivshmem_fuzz::{Config, Report};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vmrun_protocol::Request;

/// The seed of `make check`'s slice.
const SEED: u64 = 0x5eed_1f5e;
/// Where each guest of `stress_rings` writes its sequence number, by
/// IVPosition.
const RING_SEQ: usize = 0x6000;

fn nodes() -> Vec<PathBuf> {
    (0..64)
        .filter(|i| sys::node_exists(*i))
        .map(|i| PathBuf::from(format!("/dev/ivshmem{i}")))
        .collect()
}

pub(crate) fn fuzz_config(calls: u64) -> Config {
    Config {
        seed: sys::setting_or("seed", SEED),
        calls,
        procs: 2,
        threads: 3,
        devices: nodes(),
        until_gone: None,
    }
}

fn summary(what: &str, cfg: &Config, r: &Report) {
    let failed: u64 = r.errors.values().sum();
    let mut errs: Vec<String> = r
        .errors
        .iter()
        .map(|(e, n)| format!("{} {n}", errname(*e)))
        .collect();
    errs.truncate(12);
    println!(
        "# {what}: seed {:#x}: {} fuzzed calls reached of {}, {failed} refused ({}), {} SIGBUS mended, {} forks",
        cfg.seed,
        r.calls,
        cfg.calls,
        errs.join(", "),
        r.sigbus,
        r.forks
    );
}

/// Every device still works: it opens, INFO answers, its memory maps and
/// keeps what is written.
fn still_works() -> TestResult {
    for (i, dev) in sys::ivshmem_devices()?.iter().enumerate() {
        check!(
            dev.driver().as_deref() == Some(sys::MODULE),
            "{} is not bound after the run",
            dev.address()
        );
        let d = Device::open(i as u32)?;
        let info = d.info()?;
        let map = d.map(0, 4096, ivshmem::CacheMode::WriteBack)?;
        map.write_volatile(8, 0x600d_0000u64 + i as u64)?;
        let v: u64 = map.read_volatile(8)?;
        check!(
            v == 0x600d_0000 + i as u64,
            "ivshmem{i} ({} bytes) reads back {v:#x}",
            info.size
        );
    }
    Ok(())
}

/// The fuzzer alone: `fuzz_calls` calls (default 20,000) from 2 processes
/// of 3 threads on every node; then every device still works.
pub fn stress_fuzz() -> TestResult {
    let _m = Loaded::load()?;
    let cfg = fuzz_config(sys::setting_or("fuzz_calls", 20_000));
    if cfg.devices.is_empty() {
        skip!("no /dev/ivshmemN");
    }
    let r = ivshmem_fuzz::run(&cfg)?;
    summary("fuzz", &cfg, &r);
    check!(
        r.calls == cfg.calls,
        "{} calls reached of {}",
        r.calls,
        cfg.calls
    );
    still_works()
}

/// How a waiter's read ended.
#[derive(Debug)]
enum Woke {
    /// It returned this many events (and the waiter reads again).
    Events(usize),
    /// It failed with this errno (and the waiter is gone).
    Ended(i32),
}

/// A thread that reads doorbell events of one device in a loop, from a
/// file of its own, until a read fails; each read's outcome comes on `rx`.
struct Waiter {
    tid: i32,
    rx: mpsc::Receiver<Woke>,
    handle: std::thread::JoinHandle<()>,
}

impl Waiter {
    /// Starts it on device `index` and returns once it is blocked in read.
    fn start(index: u32) -> Result<Waiter, Failure> {
        let dev = Device::open(index)?;
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("doorbell-waiter".into())
            .spawn(move || {
                let _ = ready_tx.send(gettid());
                loop {
                    match dev.read_events() {
                        Ok(v) => {
                            let _ = tx.send(Woke::Events(v.len()));
                        }
                        Err(e) => {
                            let _ = tx.send(Woke::Ended(ivshmem::errno(&e).unwrap_or(0)));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Failure::Fail(format!("cannot start the waiter thread: {e}")))?;
        let tid = ready_rx
            .recv()
            .map_err(|_| Failure::Fail("the waiter thread died".into()))?;
        wait_blocked(tid, &[libc::SYS_read], "the doorbell waiter")?;
        Ok(Waiter { tid, rx, handle })
    }

    /// Waits up to `secs` for the waiter to end; returns its errno.
    fn ended(self, secs: u64) -> Result<i32, Failure> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Woke::Events(_)) => continue,
                Ok(Woke::Ended(e)) => {
                    let _ = self.handle.join();
                    return Ok(e);
                }
                Err(_) => fail!("the doorbell waiter did not end within {secs} s"),
            }
        }
    }

    /// Interrupts its read with a signal (no SA_RESTART) and waits for it
    /// to end, closing its file. The signal is sent only once the thread
    /// is blocked in read (one arriving between two reads would be lost),
    /// and again if an event got in first.
    fn stop(self) -> Result<i32, Failure> {
        sigusr1_interrupts();
        for _ in 0..10 {
            wait_blocked(self.tid, &[libc::SYS_read], "the doorbell waiter")?;
            // SAFETY: The tgkill call takes no pointers: it signals task
            // `self.tid` only if it is in this process's thread group, and
            // SIGUSR1's handler (sigusr1_interrupts, installed above) does
            // nothing.
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), self.tid, libc::SIGUSR1) };
            match self.rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Woke::Events(_)) => continue,
                Ok(Woke::Ended(e)) => {
                    let _ = self.handle.join();
                    return Ok(e);
                }
                Err(_) => fail!("the doorbell waiter did not end within 10 s of a signal"),
            }
        }
        fail!("the doorbell waiter kept receiving events instead of ending")
    }
}

/// `bind_cycles` (default 10) unbind/bind cycles of every device while
/// the fuzzer runs on them and a thread waits for doorbells on the
/// doorbell device: each unbind ends the wait with ENODEV; each bind
/// brings every node back.
pub fn stress_bind() -> TestResult {
    let cycles = sys::setting_or("bind_cycles", 10);
    let _m = Loaded::load()?;
    let devs = sys::ivshmem_devices()?;
    if devs.is_empty() {
        skip!("no ivshmem device");
    }
    let cfg = fuzz_config(sys::setting_or("fuzz_calls", 20_000));
    let fuzz = ivshmem_fuzz::spawn(&cfg)?;
    let mut done = 0;
    let result = (|| -> TestResult {
        for i in 0..cycles {
            let waiter = match find()?.0 {
                Some(bell) => Some(Waiter::start(bell)?),
                None => None,
            };
            for d in &devs {
                sys::unbind(&d.path)?;
            }
            if let Some(w) = waiter {
                let e = w.ended(10)?;
                check!(
                    e == libc::ENODEV,
                    "cycle {i}: the blocked wait ended with {}, want ENODEV",
                    errname(e)
                );
            }
            for d in &devs {
                sys::bind(&d.path)?;
            }
            check!(
                sys::wait_for(30, || sys::node_exists(devs.len() - 1)),
                "cycle {i}: /dev/ivshmem{} did not come back",
                devs.len() - 1
            );
            done += 1;
        }
        Ok(())
    })();
    let fuzzed = fuzz.wait();
    println!(
        "# bind: {done} of {cycles} unbind/bind cycles of {} device(s)",
        devs.len()
    );
    result?;
    summary("bind: fuzzer meanwhile", &cfg, &fuzzed?);
    still_works()
}

/// `hotplug_cycles` (default 3) hot-unplug/replug cycles (QMP, through
/// the runner) of the plain device `shm0`, each while it is mapped by
/// this test and the fuzzer runs on every node; a thread waits for
/// doorbells on the doorbell device across all cycles and still wakes at
/// the end.
pub fn stress_hotplug() -> TestResult {
    let cycles = sys::setting_or("hotplug_cycles", 3);
    let _m = Loaded::load()?;
    let (bell, Some(plain)) = find()? else {
        skip!("no plain ivshmem device to unplug");
    };
    let devs = sys::ivshmem_devices()?;
    let pci = devs[plain as usize].clone();
    let waiter = match bell {
        Some(b) => Some((b, Waiter::start(b)?)),
        None => None,
    };
    let cfg = fuzz_config(sys::setting_or("fuzz_calls", 20_000));
    let fuzz = ivshmem_fuzz::spawn(&cfg)?;
    let mut done = 0;
    let result = (|| -> TestResult {
        for i in 0..cycles {
            let index = find()?
                .1
                .ok_or_else(|| Failure::Fail("the plain device is gone".into()))?;
            let dev = Device::open(index)?;
            let map = dev.map_all()?;
            map.write_volatile(0, 0x0091_0900 + i)?;
            let t = Instant::now();
            println!("{}", Request::DeviceDel("shm0".into()).line());
            check!(
                sys::wait_for(60, || !pci.path.exists()),
                "cycle {i}: {} still present 60 s after device_del",
                pci.address()
            );
            let e = dev.info().err().and_then(|e| ivshmem::errno(&e));
            check!(
                e == Some(libc::ENODEV),
                "cycle {i}: INFO on the unplugged device: {:?}, want ENODEV",
                e.map(errname)
            );
            drop(map);
            println!("{}", Request::DeviceAdd("shm0".into()).line());
            check!(
                sys::wait_for(60, || pci.path.exists() && pci.driver().is_some()),
                "cycle {i}: {} did not come back within 60 s",
                pci.address()
            );
            println!("# hotplug cycle {i}: {:.1} s", t.elapsed().as_secs_f64());
            done += 1;
        }
        Ok(())
    })();
    let fuzzed = fuzz.wait();
    println!("# hotplug: {done} of {cycles} unplug/replug cycles");
    result?;
    summary("hotplug: fuzzer meanwhile", &cfg, &fuzzed?);
    if let Some((b, w)) = waiter {
        // The waiter has waited through every cycle (woken, maybe, by the
        // fuzzer's rings): a ring of ours wakes it still.
        while let Ok(r) = w.rx.try_recv() {
            check!(
                matches!(r, Woke::Events(_)),
                "the waiter on the doorbell device ended: {r:?}"
            );
        }
        let dev = Device::open(b)?;
        let me = ivposition(&dev.info()?)?;
        dev.ring(me, 0)?;
        match w.rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Woke::Events(n)) if n > 0 => {}
            r => fail!("the waiter on the doorbell device: {r:?} after a ring, want events"),
        }
        let e = w.stop()?;
        check!(
            e == libc::EINTR,
            "the waiter ended with {}, want EINTR",
            errname(e)
        );
    }
    still_works()
}

/// `mod_cycles` (default 20) insmod/rmmod cycles, each opening every node,
/// asking INFO and touching its memory.
pub fn stress_modules() -> TestResult {
    let cycles = sys::setting_or("mod_cycles", 20);
    let devs = sys::ivshmem_devices()?;
    if devs.is_empty() {
        skip!("no ivshmem device");
    }
    let mut done = 0;
    let t = Instant::now();
    for i in 0..cycles {
        let m = Loaded::load()?;
        for k in 0..devs.len() as u32 {
            let d = Device::open(k)?;
            d.info()?;
            let map = d.map(0, 4096, ivshmem::CacheMode::WriteBack)?;
            map.write_volatile(16, i)?;
        }
        m.unload()
            .map_err(|e| Failure::Fail(format!("cycle {i}: {e}")))?;
        done += 1;
    }
    println!(
        "# modules: {done} of {cycles} insmod/rmmod cycles in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    check!(!sys::node_exists(0), "/dev/ivshmem0 outlives the module");
    Ok(())
}

/// Two guests ring each other at full speed at the same time,
/// `stress_rings` (default 10,000) rings each way, each with a sequence
/// number in shared memory: each guest's last wake-up must show the
/// peer's last number (no lost final wake-up).
pub fn stress_rings() -> TestResult {
    let rings = sys::setting_or("stress_rings", 10_000);
    let Bell {
        _m,
        index: bell,
        dev,
        me,
        ..
    } = open_bell()?;
    let map = dev.map_all()?;
    let peer = find_peer(&map, me)?;
    map.write_volatile(RING_SEQ + 8 * usize::from(me), 0u64)?;
    let start = Instant::now();
    let sender = {
        let dev = Device::open(bell)?;
        let map = dev.map_all()?;
        std::thread::spawn(move || -> Result<f64, Failure> {
            let t = Instant::now();
            for i in 1..=rings {
                map.write_volatile(RING_SEQ + 8 * usize::from(me), i)?;
                if let Err(e) = dev.ring(peer, 0) {
                    fail!("ring {i}: {e}");
                }
            }
            Ok(t.elapsed().as_secs_f64())
        })
    };
    let (mut seen, mut wakes) = (0u64, 0u64);
    while seen < rings {
        let evs = dev.wait(Some(Duration::from_secs(60)))?;
        if evs.is_empty() {
            break;
        }
        wakes += 1;
        seen = map.read_volatile(RING_SEQ + 8 * usize::from(peer))?;
    }
    let sent = join(sender, "the sender")??;
    println!(
        "# rings: sent {rings} in {sent:.2} s ({:.0}/s) while receiving; saw the peer's {seen} of {rings} after {wakes} wake-ups in {:.2} s",
        rings as f64 / sent,
        start.elapsed().as_secs_f64()
    );
    check!(
        seen == rings,
        "lost final wake-up: the last wake-up showed {seen} of the peer's {rings} rings (60 s with none)"
    );
    Ok(())
}
