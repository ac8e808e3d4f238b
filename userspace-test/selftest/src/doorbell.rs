//! Selftests of doorbells: ringing, and waking on interrupts through
//! read, poll and eventfds.

use crate::fixture::*;
use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{self as sys, Loaded, errname, errno};
use ivshmem::uapi::IVSHMEM_FEATURE_MSIX;
use ivshmem::{Device, Event};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;
use vmrun_protocol::{Request, server_shm};

/// One doorbell device (rung by this guest itself) and one plain device.
pub fn doorbell_local() -> TestResult {
    let Bell {
        _m,
        index: bell,
        plain,
        dev,
        info,
        me,
    } = open_bell()?;
    let n = info.vectors as u16;
    check!(
        n >= 2,
        "the test needs 2 vectors or more, the device has {n}"
    );
    let other = Device::open(bell)?;
    let efds = eventfd_per_vector(&dev, n)?;
    let nb = Device::open(bell)?;
    set_nonblock(&nb, true)?;
    expect_err(
        "read with nothing pending, O_NONBLOCK",
        nb.read_events(),
        libc::EAGAIN,
    )?;

    for v in 0..n {
        let before = monotonic_ns();
        dev.ring(me, v)?;
        let got = expect_events(&dev, &[(v, 1)], &format!("ring vector {v}"))?;
        let ts = got[0].timestamp_ns;
        check!(
            ts >= before && ts <= monotonic_ns(),
            "vector {v}: timestamp {ts} out of range"
        );
        expect_only_eventfd(&efds, v)?;
        // Another open file sees the same ring: readers do not steal.
        expect_events(&other, &[(v, 1)], &format!("second reader, vector {v}"))?;
        let nb_got = nb.read_events()?;
        check!(
            nb_got.len() == 1 && nb_got[0].vector == v,
            "third reader, vector {v}: {nb_got:?}"
        );
    }
    println!("# each of {n} vectors woke read/poll and its eventfd only, in all three files");

    // A mask narrows what a file waits on; masked rings stay pending.
    // `other` selects every vector: once it has the ring, so would `dev`.
    dev.set_vector_mask([1])?;
    dev.ring(me, 0)?;
    expect_events(&other, &[(0, 1)], "vector 0, in a file selecting all")?;
    let quiet = dev.wait(Some(Duration::ZERO))?;
    check!(quiet.is_empty(), "a masked vector woke the file: {quiet:?}");
    dev.ring(me, 1)?;
    expect_events(&dev, &[(1, 1)], "unmasked vector 1")?;
    dev.set_vector_mask(0..n)?;
    expect_events(&dev, &[(0, 1)], "vector 0 after unmasking")?;
    for fd in &efds {
        efd_count(fd);
    }

    // Bad input.
    expect_err("ring vector 256", dev.ring(me, 256), libc::EINVAL)?;
    expect_err(
        "eventfd on vector N",
        dev.bind_eventfd(n, efds[0].as_fd()),
        libc::EINVAL,
    )?;
    // SAFETY: Fd 999 is not open in this process (the harness opens a handful
    // of files); the borrowed fd is only passed to the BIND_EVENTFD ioctl,
    // which reports EBADF, and is never read, written or closed here.
    let bad = unsafe { std::os::fd::BorrowedFd::borrow_raw(999) };
    expect_err(
        "eventfd from a closed fd",
        dev.bind_eventfd(0, bad),
        libc::EBADF,
    )?;
    expect_err(
        "eventfd from a non-eventfd",
        dev.bind_eventfd(0, other.as_fd()),
        libc::EINVAL,
    )?;
    let mut small = [0u8; 8];
    // SAFETY: The buffer is `small`, a local array of exactly the 8 bytes the
    // read may write; the descriptor is borrowed from `nb`, open for the call.
    let r = unsafe { libc::read(nb.as_fd().as_raw_fd(), small.as_mut_ptr().cast(), 8) };
    check!(
        r < 0 && errno() == libc::EINVAL,
        "read of 8 bytes: {r}, {}",
        errname(errno())
    );
    // Unbinding stops the eventfd.
    dev.unbind_eventfd(0)?;
    dev.ring(me, 0)?;
    expect_events(&dev, &[(0, 1)], "vector 0 after unbinding its eventfd")?;
    check!(efd_count(&efds[0]) == 0, "an unbound eventfd was signalled");

    // Closing a file releases its eventfds: a binding of a closed file
    // is never signalled again.
    let closing = Device::open(bell)?;
    let efd = eventfd()?;
    closing.bind_eventfd(2, efd.as_fd())?;
    drop(closing);
    dev.ring(me, 2)?;
    expect_events(
        &dev,
        &[(2, 1)],
        "vector 2 after closing a file that bound it",
    )?;
    check!(
        efd_count(&efd) == 0,
        "the eventfd of a closed file was signalled"
    );

    // Rings coalesce: QEMU raises one interrupt per read of the peer's
    // eventfd, so rings that pile up before it reads arrive as one; the
    // driver adds up the interrupts into one event. How many of the three
    // arrive is not known in advance, so this comes last (nothing reads
    // these files afterwards): the first must come within 10 s, and none
    // beyond the third within 2 s after it.
    for _ in 0..3 {
        dev.ring(me, 1)?;
    }
    let mut got = expect_some(&dev, Duration::from_secs(10))?;
    let more_until = std::time::Instant::now() + Duration::from_secs(2);
    let total = |g: &[Event]| g.iter().map(|e| e.count).sum::<u32>();
    while total(&got) < 4 && std::time::Instant::now() < more_until {
        got.extend(dev.wait(Some(
            more_until.saturating_duration_since(std::time::Instant::now()),
        ))?);
    }
    println!(
        "# three quick rings on vector 1 arrived as {} interrupt(s)",
        total(&got)
    );
    check!(
        got.iter().all(|e| e.vector == 1) && (1..=3).contains(&total(&got)),
        "three rings on vector 1: {got:?}"
    );

    // Plain devices have no doorbells.
    if let Some(p) = plain {
        let pd = Device::open(p)?;
        expect_err("ring on ivshmem-plain", pd.ring(0, 0), libc::EOPNOTSUPP)?;
        expect_err("read on ivshmem-plain", pd.read_events(), libc::EOPNOTSUPP)?;
        expect_err(
            "eventfd on ivshmem-plain",
            pd.bind_eventfd(0, efds[0].as_fd()),
            libc::EOPNOTSUPP,
        )?;
        expect_err(
            "wait on ivshmem-plain",
            pd.wait(Some(Duration::from_millis(100))),
            libc::ENODEV,
        )?;
    }
    Ok(())
}

/// A signal interrupts a blocked read (EINTR without SA_RESTART).
pub fn doorbell_signal() -> TestResult {
    let _m = Loaded::load()?;
    let bell = find_bell()?;
    sigusr1_interrupts();
    let dev = Arc::new(Device::open(bell)?);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            // SAFETY: The pthread_self call has no preconditions; it returns
            // the calling thread's own handle.
            tx.send((unsafe { libc::pthread_self() }, gettid())).ok();
            err_of(dev.read_events())
        })
    };
    let (tid, task) = rx.recv().map_err(|e| Failure::Fail(e.to_string()))?;
    wait_blocked(task, &[SYS_READ], "the reader")?;
    check!(!reader.is_finished(), "read returned with nothing pending");
    // SAFETY: The `tid` is the pthread handle of `reader`, whose JoinHandle is
    // joined only below, so the thread has not been joined and the handle is
    // valid; SIGUSR1's handler (sigusr1_interrupts) does nothing.
    unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
    let got = join(reader, "reader")?;
    check!(
        got == Some(libc::EINTR),
        "blocked read after a signal: {:?}, want EINTR",
        got.map(errname)
    );
    Ok(())
}

/// Unbinding the device wakes a blocked reader with ENODEV and a poller
/// with POLLHUP | POLLERR; rebinding works.
pub fn doorbell_unbind() -> TestResult {
    let _m = Loaded::load()?;
    let bell = find_bell()?;
    let pci = sys::ivshmem_devices()?[bell as usize].clone();
    let dev = Arc::new(Device::open(bell)?);
    let efd = eventfd()?;
    dev.bind_eventfd(0, efd.as_fd())?;
    let (tx, tids) = std::sync::mpsc::channel();
    let reader = {
        let dev = dev.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            tx.send(gettid()).ok();
            err_of(dev.read_events())
        })
    };
    let poller = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            tx.send(gettid()).ok();
            poll_in(&*dev, 30_000).1
        })
    };
    // Both wait before the device goes.
    for _ in 0..2 {
        let tid = tids.recv().map_err(|e| Failure::Fail(e.to_string()))?;
        wait_blocked(tid, &[SYS_READ, SYS_POLL, SYS_PPOLL], "a waiter")?;
    }
    sys::write_sysfs("/sys/bus/pci/drivers/ivshmem/unbind", &pci.address())?;
    let r = join(reader, "reader")?;
    let p = join(poller, "poller")?;
    println!("# blocked read: {:?}; poll revents {p:#x}", r.map(errname));
    check!(
        r == Some(libc::ENODEV),
        "blocked read after unbind: {:?}, want ENODEV",
        r.map(errname)
    );
    check!(
        p & (libc::POLLHUP | libc::POLLERR) == libc::POLLHUP | libc::POLLERR,
        "poll after unbind: {p:#x}"
    );
    expect_err("ring after unbind", dev.ring(0, 0), libc::ENODEV)?;
    sys::write_sysfs("/sys/bus/pci/drivers/ivshmem/bind", &pci.address())?;
    check!(
        sys::wait_for(10, || sys::node_exists(bell as usize)),
        "the device did not come back"
    );
    let again = Device::open(bell)?;
    let me = ivposition(&again.info()?)?;
    again.ring(me, 0)?;
    expect_events(&again, &[(0, 1)], "ring after rebinding")?;
    Ok(())
}

// Protocol offsets in the server's shared memory; peer discovery's
// `SLOTS` and `READY` are in the fixture.

/// One 8-byte slot per vector.
const SEQ: usize = 0x5000;

/// The stream's sequence number.
const STREAM: usize = 0x2000;

// None of them overlaps the runner's answers (`server_shm`: from
// PEER_ACKS to END).
const _: () = {
    assert!(SLOTS + 8 * server_shm::MAX_ID as usize <= server_shm::PEER_ACKS);
    assert!(server_shm::PEER_ACKS + 8 * server_shm::MAX_ID as usize <= STREAM);
    assert!(STREAM + 8 <= server_shm::HOST_IDS);
    assert!(SEQ >= server_shm::END);
};

/// Two guests ring each other on every vector (read, poll and eventfd wake
/// on exactly that vector, with the sender's data visible), then stream
/// rings with a sequence number in shared memory, then the host client
/// rings each guest and each guest rings a host client.
pub fn doorbell_pair() -> TestResult {
    let rings: u64 = sys::setting_u64s("rings").map(|v| v[0]).unwrap_or(100_000);
    let Bell {
        _m, dev, info, me, ..
    } = open_bell()?;
    let n = info.vectors as u16;
    check!(n >= 4, "the test needs 4 vectors, the device has {n}");
    let map = dev.map_all()?;
    let efds = eventfd_per_vector(&dev, n)?;
    let peer = find_peer(&map, me)?;
    let first = me < peer;
    println!("# I am {me}, my peer is {peer}; I ring first: {first}");
    check!(me != peer, "both guests have IVPosition {me}");

    // Every vector, both ways.
    for v in 0..n {
        let slot = SEQ + 8 * usize::from(v);
        if first {
            map.write_volatile(slot, 0xda7a_0000 | u64::from(v))?;
            dev.ring(peer, v)?;
            expect_events(&dev, &[(v, 1)], &format!("answer on vector {v}"))?;
        } else {
            expect_events(&dev, &[(v, 1)], &format!("ring on vector {v}"))?;
            let d: u64 = map.read_volatile(slot)?;
            check!(
                d == 0xda7a_0000 | u64::from(v),
                "vector {v}: the sender's data is not visible: {d:#x}"
            );
        }
        // Checked before answering: once answered, the peer may ring the
        // next vector at once.
        expect_only_eventfd(&efds, v)?;
        if !first {
            dev.ring(peer, v)?;
        }
    }
    println!("# {n} vectors each way: read/poll and eventfd woke on exactly the vector rung");

    // A stream: the receiver must end up seeing the last sequence number.
    let start = std::time::Instant::now();
    if first {
        for i in 1..=rings {
            map.write_volatile(STREAM, i)?;
            dev.ring(peer, 0)?;
        }
        let sent = start.elapsed();
        expect_events(&dev, &[(1, 1)], "the receiver's end of stream")?;
        println!(
            "# sent {rings} rings in {:.2} s: {:.0} rings/s",
            sent.as_secs_f64(),
            rings as f64 / sent.as_secs_f64()
        );
    } else {
        let (mut wakes, mut interrupts) = (0u64, 0u64);
        loop {
            let evs = dev.wait(Some(Duration::from_secs(60)))?;
            let seq: u64 = map.read_volatile(STREAM)?;
            if evs.is_empty() {
                fail!("no wake-up for 60 s with sequence {seq} of {rings}: a lost wake-up");
            }
            check!(
                evs.iter().all(|e| e.vector == 0),
                "stream events on other vectors: {evs:?}"
            );
            wakes += 1;
            interrupts += evs.iter().map(|e| u64::from(e.count)).sum::<u64>();
            if seq == rings {
                break;
            }
        }
        println!(
            "# received up to sequence {rings} in {:.2} s: {wakes} wake-ups, {interrupts} interrupts",
            start.elapsed().as_secs_f64()
        );
        dev.ring(peer, 1)?;
    }
    for fd in &efds {
        efd_count(fd);
    }
    // The peer's last rings (vectors 0 and 1) may still be on their way:
    // from here on this file waits on vector 2 only, which the host
    // client alone rings.
    dev.set_vector_mask([2])?;

    // The host client rings this guest, and this guest rings a host client.
    let ring = Request::HostRing {
        peer: me,
        vector: 2,
    };
    println!("{}", ring.line());
    expect_events(&dev, &[(2, 1)], "the host client's ring on vector 2")?;
    let wait = Request::HostWait {
        guest: me,
        vector: 3,
    };
    println!("{}", wait.line());
    let slot = server_shm::host_id_slot(me);
    let host = host_answer(&map, slot, server_shm::host_id)
        .ok_or(Failure::Fail("the host client's id never arrived".into()))?;
    // This guest's QEMU drops a ring to a peer whose arrival it has not
    // read from the server yet, and nothing tells when it has: ring, ask
    // the host whether its client got it, and ring again until it has.
    let got = Request::HostGot(me);
    for attempt in 1..=50 {
        dev.ring(host, 3)?;
        map.write_volatile::<u64>(slot, 0)?;
        println!("{}", got.line());
        match host_answer(&map, slot, server_shm::host_got) {
            Some(true) => {
                println!("# rang host client {host} on vector 3 (ring {attempt})");
                return Ok(());
            }
            Some(false) => {}
            None => fail!("the host never said whether its client got the ring"),
        }
    }
    fail!("host client {host} never got a ring on vector 3 in 50 rings")
}

/// Mid-stream, one guest asks the runner to kill the other; the survivor
/// keeps ringing the dead peer (harmless) and still gets its own rings.
pub fn doorbell_kill() -> TestResult {
    let Bell { _m, dev, me, .. } = open_bell()?;
    let map = dev.map_all()?;
    let peer = find_peer(&map, me)?;
    let victim = sys::setting("victim").unwrap_or_default();
    if sys::setting("name").as_deref() == Some(victim.as_str()) {
        // The victim: receive until killed.
        loop {
            dev.wait(Some(Duration::from_secs(1)))?;
        }
    }
    for i in 0..2000u64 {
        map.write_volatile(STREAM, i)?;
        dev.ring(peer, 0)?;
        if i == 1000 {
            let kill = Request::Kill {
                guest: victim.clone(),
                peer: Some(peer),
            };
            println!("{}", kill.line());
        }
    }
    // The host acknowledges once the server has seen the peer go (and has
    // told this guest's QEMU); then keep ringing the dead peer.
    let want = server_shm::ack(peer);
    let acked = sys::wait_for(60, || {
        map.read_volatile::<u64>(server_shm::KILL_ACK).ok() == Some(want)
    });
    check!(acked, "the host did not confirm that peer {peer} is gone");
    for _ in 0..10_000 {
        dev.ring(peer, 0)?;
    }
    // Vector 1, which only this guest rings: nothing earlier is pending
    // there, whatever else is.
    dev.set_vector_mask([1])?;
    dev.ring(me, 1)?;
    expect_events(&dev, &[(1, 1)], "own ring after the peer died")?;
    println!("# the peer died mid-stream; 10000 rings to it were harmless; rings still arrive");
    Ok(())
}

const MESSAGE: usize = 0x4000;

fn read_text(map: &ivshmem::Mapping) -> Result<String, Failure> {
    let mut buf = [0u8; 128];
    map.read_slice(MESSAGE, &mut buf)?;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn write_text(map: &ivshmem::Mapping, text: &str) -> Result<(), Failure> {
    let mut buf = [0u8; 128];
    let n = text.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    map.write_slice(MESSAGE, &buf)?;
    Ok(())
}

/// The demo: one guest writes a message into the shared memory and rings
/// the other, which wakes, prints it and answers the same way.
pub fn demo_chat() -> TestResult {
    let Bell { _m, dev, me, .. } = open_bell()?;
    let map = dev.map_all()?;
    let peer = find_peer(&map, me)?;
    let wait = |what: &str| -> Result<u64, Failure> {
        let ev = dev.wait(Some(Duration::from_secs(60)))?;
        let Some(e) = ev.first() else {
            fail!("no ring for {what}");
        };
        Ok(monotonic_ns().saturating_sub(e.timestamp_ns))
    };
    let message = |from: u16| format!("hello from guest {from}, over ivshmem");
    let answer = |from: u16| format!("hi back from guest {from}");
    // Waits for the peer's text, `what`, woken by `interrupt`, and checks it.
    let receive = |what: &str, interrupt: &str, want: String| -> TestResult {
        let latency = wait(what)?;
        let got = read_text(&map)?;
        println!(
            "# guest {me}: woke {} us after {interrupt}: {got:?}",
            latency / 1000
        );
        check!(got == want, "guest {me} read {got:?}, want {want:?}");
        Ok(())
    };
    if me < peer {
        let text = message(me);
        write_text(&map, &text)?;
        dev.ring(peer, 0)?;
        println!("# guest {me}: wrote {text:?} and rang guest {peer}");
        receive("the answer", "its interrupt", answer(peer))?;
    } else {
        receive(
            "the message",
            &format!("the interrupt of guest {peer}'s ring"),
            message(peer),
        )?;
        let reply = answer(me);
        write_text(&map, &reply)?;
        dev.ring(peer, 0)?;
        println!("# guest {me}: answered {reply:?}");
    }
    Ok(())
}

/// Waits up to 30 s for the host's answer in `slot` of the server's shared
/// memory, as `parse` reads it (`None`: no answer).
fn host_answer<T>(
    map: &ivshmem::Mapping,
    slot: usize,
    parse: impl Fn(u64) -> Option<T>,
) -> Option<T> {
    let mut answer = None;
    sys::wait_for(30, || {
        answer = map.read_volatile::<u64>(slot).ok().and_then(&parse);
        answer.is_some()
    });
    answer
}

/// The C example rings this guest itself and polls for the event, using
/// only the UAPI header.
pub fn c_ring() -> TestResult {
    if !std::path::Path::new("/bin/ivshmem-ring").exists() {
        skip!("/bin/ivshmem-ring (the C example) is not in this initramfs");
    }
    let b = open_bell()?;
    let out = std::process::Command::new("/bin/ivshmem-ring")
        .args([
            format!("/dev/ivshmem{}", b.index),
            b.me.to_string(),
            "3".into(),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines() {
        println!("# ivshmem-ring: {l}");
    }
    check!(
        out.status.success() && text.contains("event vector=3 count=1"),
        "the C program did not get its own ring: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another open file saw the same ring.
    expect_events(&b.dev, &[(3, 1)], "vector 3 rung by the C program")?;
    Ok(())
}

/// Whether `/proc/iomem` lists the reservation of the rest of a doorbell
/// device's register page.
/// What `/proc/iomem` places in `[start, end]`, other than this driver's
/// reservation of it and the windows that contain all of it.
fn iomem_users(start: u64, end: u64) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string("/proc/iomem")?;
    let mut users = Vec::new();
    for l in text.lines() {
        let Some((range, name)) = l.trim().split_once(" : ") else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let overlaps = a <= end && b >= start;
        let contains = a <= start && b >= end;
        if overlaps && !contains && name != "ivshmem sub-page reserved" {
            users.push(format!("{range} {name}"));
        }
    }
    Ok(users)
}

fn tail_reserved() -> Result<bool, Failure> {
    let text = std::fs::read_to_string("/proc/iomem")
        .map_err(|e| Failure::Fail(format!("/proc/iomem: {e}")))?;
    Ok(text.contains("ivshmem sub-page reserved"))
}

/// Booted with `pci=nomsi`, a doorbell device gets no MSI-X vectors:
/// INFO offers no doorbell page and mapping it fails, since a store to
/// IntrMask/IntrStatus could raise an interrupt no handler claims.
pub fn doorbell_nomsi() -> TestResult {
    let cmdline = sys::read_trim("/proc/cmdline")?;
    if !cmdline.split_whitespace().any(|a| a == "pci=nomsi") {
        skip!("not booted with pci=nomsi");
    }
    let Bell { _m, dev, info, .. } = open_bell()?;
    println!(
        "# vectors {}, features {:#x}",
        info.vectors, info.raw.features
    );
    check!(
        info.vectors == 0,
        "{} usable vectors without MSI",
        info.vectors
    );
    check!(
        !info.doorbell_mmap,
        "INFO offers the doorbell page without MSI-X vectors (features {:#x})",
        info.raw.features
    );
    expect_err(
        "doorbell page without MSI-X vectors",
        dev.map_doorbell(),
        libc::EOPNOTSUPP,
    )?;
    Ok(())
}

/// The doorbell page: a store rings a peer as the ioctl does, wakes the
/// reader, and leaves BAR2's cache mode free; a mapping of another length,
/// a private one, one of a read-only file, or of a plain device is refused;
/// after unbind the store raises SIGBUS and the page's reservation is gone.
pub fn doorbell_mmap() -> TestResult {
    const PAGE: usize = 4096;
    let off = ivshmem::uapi::IVSHMEM_DOORBELL_MMAP_OFFSET;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let b = open_bell()?;
    let (bell, plain, dev, info, me) = (b.index, b.plain, b.dev, b.info, b.me);
    let pci = sys::ivshmem_devices()?[bell as usize].clone();
    // The driver offers the page only when BAR0 starts a page that nothing
    // else uses: firmware decides that, not the driver.
    let (bar0, bar0_end) = pci.bar(0)?;
    if bar0 % PAGE as u64 != 0 {
        skip!("BAR0 at {bar0:#x} is not page-aligned: the driver offers no doorbell page");
    }
    let shared = iomem_users(bar0_end + 1, bar0 + PAGE as u64 - 1)?;
    if !shared.is_empty() {
        skip!(
            "the rest of BAR0's page ({bar0:#x}) is used by {shared:?}: the driver offers no \
             doorbell page"
        );
    }
    check!(
        info.doorbell_mmap,
        "INFO of an MSI-X doorbell device: features {:#x}, no IVSHMEM_FEATURE_DOORBELL_MMAP",
        info.raw.features
    );
    check!(
        tail_reserved()?,
        "/proc/iomem has no \"ivshmem sub-page reserved\" for the rest of BAR0's page"
    );
    let page = dev.map_doorbell()?;
    // One at a time: QEMU merges rings it has not delivered yet.
    for i in 0..3 {
        page.ring(me, 0);
        expect_events(&dev, &[(0, 1)], &format!("store ring {i} on vector 0"))?;
    }
    if info.vectors > 1 {
        page.ring(me, 1);
        expect_events(&dev, &[(1, 1)], "store ring on vector 1")?;
    }
    // The ioctl still rings alongside.
    dev.ring(me, 0)?;
    expect_events(&dev, &[(0, 1)], "ioctl ring while the page is mapped")?;
    // The page does not pin BAR2's cache mode: with only the page mapped,
    // BAR2 can be mapped in any mode.
    for mode in [
        ivshmem::CacheMode::WriteCombining,
        ivshmem::CacheMode::WriteBack,
    ] {
        drop(dev.map(0, PAGE, mode)?);
    }

    for (what, len, prot, flags, offset, want) in [
        (
            "two pages",
            2 * PAGE,
            rw,
            libc::MAP_SHARED,
            off,
            libc::EINVAL,
        ),
        (
            "MAP_PRIVATE",
            PAGE,
            rw,
            libc::MAP_PRIVATE,
            off,
            libc::EINVAL,
        ),
        (
            "the page after it",
            PAGE,
            rw,
            libc::MAP_SHARED,
            off + PAGE as u64,
            libc::EINVAL,
        ),
    ] {
        let got = crate::fixture::raw_mmap(&dev, len, prot, flags, offset as i64);
        println!("# doorbell page, {what}: {}", errname(got));
        check!(
            got == want,
            "mapping the doorbell page, {what}: {}, want {}",
            errname(got),
            errname(want)
        );
    }
    let ro = Device::open_read_only(bell)?;
    let got = crate::fixture::raw_mmap(&ro, PAGE, libc::PROT_READ, libc::MAP_SHARED, off as i64);
    check!(
        got == libc::EACCES,
        "doorbell page of a read-only file: {}, want EACCES",
        errname(got)
    );
    drop(ro);
    if let Some(p) = plain {
        let pdev = Device::open(p)?;
        check!(
            !pdev.info()?.doorbell_mmap,
            "a plain device says it has a doorbell page"
        );
        expect_err(
            "doorbell page of a plain device",
            pdev.map_doorbell(),
            libc::EOPNOTSUPP,
        )?;
    }

    // Unbind: the page is zapped and its reservation released.
    sys::write_sysfs("/sys/bus/pci/drivers/ivshmem/unbind", &pci.address())?;
    let reg = page_ptr(&page);
    let ended = crate::fixture::in_child(|| {
        // SAFETY: This runs in a forked child: `reg` points into the doorbell
        // page mapped by `page`, which the parent keeps alive, so the address
        // is still mapped (the driver zapped its pages on unbind: the store
        // faults with SIGBUS, which only ends the child). The store is aligned
        // and 4 bytes.
        unsafe { reg.write_volatile(u32::from(me) << 16) };
        // Reaching here means no SIGBUS.
        10
    })?;
    check!(
        ended == Err(libc::SIGBUS),
        "a store to the doorbell page after unbind: {ended:?}, want SIGBUS"
    );
    check!(
        !tail_reserved()?,
        "the rest of BAR0's page is still reserved after unbind"
    );
    expect_err(
        "doorbell page after unbind",
        dev.map_doorbell(),
        libc::ENODEV,
    )?;
    drop(page);
    drop(dev);
    sys::write_sysfs("/sys/bus/pci/drivers/ivshmem/bind", &pci.address())?;
    check!(
        sys::wait_for(10, || sys::node_exists(bell as usize)),
        "the device did not come back"
    );
    check!(tail_reserved()?, "no page reservation after rebinding");
    let again = Device::open(bell)?;
    again.map_doorbell()?.ring(me, 0);
    expect_events(&again, &[(0, 1)], "store ring after rebinding")?;
    drop(again);
    b._m.unload()?;
    check!(
        !tail_reserved()?,
        "the rest of BAR0's page is still reserved after rmmod"
    );
    Ok(())
}

/// The Doorbell register of a mapped doorbell page.
fn page_ptr(page: &ivshmem::DoorbellPage) -> *mut u32 {
    page.as_ptr()
        .wrapping_add(ivshmem::uapi::IVSHMEM_REG_DOORBELL)
        .cast()
}

/// The interrupts counted so far on the line named `name` in
/// /proc/interrupts, over every CPU, or `None` when there is no such line.
fn interrupts_of(name: &str) -> Result<Option<u64>, Failure> {
    let text = std::fs::read_to_string("/proc/interrupts")
        .map_err(|e| Failure::Fail(format!("/proc/interrupts: {e}")))?;
    for line in text.lines() {
        if line.split_whitespace().last() != Some(name) {
            continue;
        }
        let counts = line
            .split_whitespace()
            .skip(1)
            .map_while(|w| w.parse::<u64>().ok());
        return Ok(Some(counts.sum()));
    }
    Ok(None)
}

/// Every MSI-X vector the driver allocated delivers: each vector, rung on
/// its own, raises its own interrupt (its `ivshmemN-V` line in
/// /proc/interrupts counts exactly one more) and signals its own eventfd
/// only. A driver that could reach only the first and the last vector of
/// its allocation would fail on the ones between.
pub fn doorbell_all_vectors() -> TestResult {
    let Bell { _m, dev, me, .. } = open_bell()?;
    let info = dev.info()?;
    let n = info.vectors as u16;
    check!(
        n >= 3,
        "the test needs a first, a middle and a last vector; the device receives on {n}"
    );
    let (domain, bus, slot, func) = info.pci;
    let msi = format!("/sys/bus/pci/devices/{domain:04x}:{bus:02x}:{slot:02x}.{func}/msi_irqs");
    let allocated = std::fs::read_dir(&msi)
        .map_err(|e| Failure::Fail(format!("{msi}: {e}")))?
        .count();
    println!("# {allocated} MSI-X vectors allocated, {n} receiving");
    check!(
        allocated == usize::from(n),
        "{allocated} vectors allocated, but the driver receives on {n}"
    );
    let efds = eventfd_per_vector(&dev, n)?;
    for v in 0..n {
        let line = format!("ivshmem{}-{v}", info.index);
        let Some(before) = interrupts_of(&line)? else {
            fail!("no {line} in /proc/interrupts");
        };
        dev.ring(me, v)?;
        expect_events(&dev, &[(v, 1)], &format!("ring vector {v}"))?;
        let after = interrupts_of(&line)?.unwrap_or(0);
        check!(
            after == before + 1,
            "vector {v}: {line} counted {before} then {after} interrupts"
        );
        expect_only_eventfd(&efds, v)?;
    }
    println!("# each of the {n} vectors raised its own interrupt and eventfd");
    Ok(())
}

/// An ivshmem-doorbell device on the runner's ivshmem server: INFO and
/// sysfs say doorbell, the configured vectors, and the IVPosition the
/// server gave, which the host then finds in its client's peer list.
pub fn doorbell_info() -> TestResult {
    let vectors = sys::setting_u64s("vectors")?[0];
    devices(1)?;
    let _m = load()?;
    let dev = Device::open(0)?;
    let info = dev.info()?;
    println!("# {info:?}");
    check!(
        info.doorbell && info.raw.features & IVSHMEM_FEATURE_MSIX != 0,
        "not a doorbell device"
    );
    check!(
        u64::from(info.vectors) == vectors,
        "{} vectors, QEMU has {vectors}",
        info.vectors
    );
    let Some(id) = info.ivposition else {
        fail!(
            "IVPosition {} on a revision 1 doorbell device",
            info.raw.ivposition
        );
    };
    let class = "/sys/class/misc/ivshmem0";
    for (attr, want) in [
        ("ivposition", id.to_string()),
        ("vectors", vectors.to_string()),
        ("features", "doorbell msix".into()),
    ] {
        let got = sys::read_trim(format!("{class}/{attr}"))?;
        check!(got == want, "{class}/{attr} is {got:?}, want {want:?}");
    }
    println!("# ivposition={id}");
    let map = dev.map_all()?;
    let ack_at = server_shm::peer_ack_slot(id);
    println!("{}", Request::Peers(id).line());
    let want = server_shm::ack(id);
    let acked = sys::wait_for(60, || map.read_volatile::<u64>(ack_at).ok() == Some(want));
    check!(
        acked,
        "the host did not confirm peer {id} in its client's peer list"
    );
    Ok(())
}
