//! Selftests of readers and pollers of a doorbell device that wait while
//! other threads change the vector mask, read the same file, or keep one
//! vector busy; and of read-only opens.
//!
//! Every hand-off is a real one: a thread is known to be blocked when
//! `/proc/TID/syscall` shows it inside `read` or `poll` and its
//! state is not running; an interrupt is known to have been handled when a
//! second open file (which selects every vector) has reported it. Time
//! limits are failure deadlines only.

use crate::fixture::*;
use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{Loaded, Map, errname, errno};
use ivshmem::{Device, Event};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whether `dev` polls readable right now.
fn readable_now(dev: &Device) -> bool {
    let (r, revents) = poll_in(dev, 0);
    r == 1 && revents & libc::POLLIN != 0
}

/// A thread blocked in one `read()` of `dev`; its result comes on the
/// receiver.
struct Reader {
    tid: i32,
    pthread: libc::pthread_t,
    done: Receiver<ReadResult>,
    handle: JoinHandle<()>,
}

/// What a reader thread reports: its task id and the read's result
/// (events, or an errno).
type ReadResult = (i32, Result<Vec<Event>, i32>);

/// Starts a thread that blocks in one `read()` of `dev` and sends its
/// result to `tx`.
fn spawn_reader_to(
    dev: &Arc<Device>,
    tx: Sender<ReadResult>,
) -> Result<(i32, libc::pthread_t, JoinHandle<()>), Failure> {
    let (id_tx, id_rx) = mpsc::channel();
    let dev = dev.clone();
    let handle = std::thread::spawn(move || {
        // SAFETY: The pthread_self call has no preconditions; it returns the
        // calling thread's own handle.
        let me = unsafe { libc::pthread_self() };
        let tid = gettid();
        id_tx.send((tid, me)).ok();
        let r = dev
            .read_events()
            .map_err(|e| ivshmem::errno(&e).unwrap_or(0));
        tx.send((tid, r)).ok();
    });
    let (tid, pthread) = id_rx
        .recv()
        .map_err(|_| Failure::Fail("reader thread died".into()))?;
    Ok((tid, pthread, handle))
}

fn spawn_reader(dev: &Arc<Device>) -> Result<Reader, Failure> {
    let (tx, done) = mpsc::channel();
    let (tid, pthread, handle) = spawn_reader_to(dev, tx)?;
    Ok(Reader {
        tid,
        pthread,
        done,
        handle,
    })
}

impl Reader {
    /// The read's result, within `secs`; `None` if it is still blocked.
    fn result(&self, secs: u64) -> Option<Result<Vec<Event>, i32>> {
        match self.done.recv_timeout(Duration::from_secs(secs)) {
            Ok((_, r)) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(-1)),
        }
    }

    fn join(self) {
        let _ = self.handle.join();
    }
}

fn summary(evs: &[Event]) -> Vec<(u16, u32)> {
    let mut s: Vec<(u16, u32)> = evs.iter().map(|e| (e.vector, e.count)).collect();
    s.sort();
    s
}

/// Frees a reader left blocked by a failed check (so that the module can
/// unload), by ringing every vector of this guest.
fn unstick(bell: &Bell, reader: Reader) {
    for v in 0..4 {
        let _ = bell.dev.ring(bell.me, v);
    }
    // A reader that never returns is left behind rather than joined.
    if reader.result(10).is_some() {
        reader.join();
    }
}

/// Widening the mask wakes a blocked poll and a blocked read within 1 s;
/// narrowing it is honoured by a read already waiting.
pub fn doorbell_mask_wakeup() -> TestResult {
    let bell = open_bell()?;
    let me = bell.me;
    let reference = Device::open(bell.index)?;
    let dev = Arc::new(Device::open(bell.index)?);
    check!(dev.info()?.vectors >= 2, "the test needs 2 vectors or more");

    // (a) A poller waiting with vector 0 masked and pending.
    dev.set_vector_mask([1])?;
    dev.ring(me, 0)?;
    expect_events(&reference, &[(0, 1)], "vector 0, in a file selecting all")?;
    check!(
        !readable_now(&dev),
        "a masked vector made the file readable"
    );
    let (tx, rx) = mpsc::channel();
    let poller = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            tx.send(gettid()).ok();
            poll_in(&*dev, 10_000)
        })
    };
    let tid = rx.recv().map_err(|_| Failure::Fail("poller died".into()))?;
    wait_blocked(tid, &[SYS_POLL, SYS_PPOLL], "the poller")?;
    let t0 = Instant::now();
    dev.set_vector_mask([0, 1])?;
    let (r, revents) = join(poller, "poller")?;
    let took = t0.elapsed();
    println!("# poll after unmasking a pending vector: {r}, revents {revents:#x}, after {took:?}");
    check!(
        r == 1 && revents & libc::POLLIN != 0 && took < Duration::from_secs(1),
        "a blocked poll did not wake within 1 s of unmasking a pending vector \
         (poll returned {r}, revents {revents:#x}, after {took:?})"
    );
    let got = dev.read_events()?;
    check!(summary(&got) == [(0, 1)], "read after unmasking: {got:?}");

    // (b) A reader waiting with vector 0 masked and pending.
    dev.set_vector_mask([1])?;
    dev.ring(me, 0)?;
    expect_events(
        &reference,
        &[(0, 1)],
        "vector 0 again, in a file selecting all",
    )?;
    let reader = spawn_reader(&dev)?;
    wait_blocked(reader.tid, &[SYS_READ], "the reader")?;
    dev.set_vector_mask([0, 1])?;
    match reader.result(1) {
        Some(Ok(evs)) => {
            reader.join();
            check!(
                summary(&evs) == [(0, 1)],
                "blocked read after unmasking: {evs:?}, want vector 0 once"
            );
        }
        Some(Err(e)) => {
            reader.join();
            fail!("blocked read after unmasking: {}", errname(e));
        }
        None => {
            unstick(&bell, reader);
            fail!("a blocked read did not return within 1 s of unmasking a pending vector");
        }
    }
    println!("# widening the mask woke a blocked poll and a blocked read");

    // (c) A reader waiting on vectors 0 and 1; vector 0 is masked while
    // it waits, then rung, then vector 1 is rung: only vector 1 may come.
    let reader = spawn_reader(&dev)?;
    wait_blocked(reader.tid, &[SYS_READ], "the reader")?;
    dev.set_vector_mask([1])?;
    dev.ring(me, 0)?;
    expect_events(&reference, &[(0, 1)], "vector 0, while masked")?;
    dev.ring(me, 1)?;
    expect_events(&reference, &[(1, 1)], "vector 1")?;
    match reader.result(5) {
        Some(Ok(evs)) => {
            reader.join();
            check!(
                summary(&evs) == [(1, 1)],
                "a read waiting while vector 0 was masked returned {evs:?}, want only vector 1"
            );
        }
        Some(Err(e)) => {
            reader.join();
            fail!("blocked read: {}", errname(e));
        }
        None => {
            unstick(&bell, reader);
            fail!("a blocked read did not return within 5 s of a ring on a selected vector");
        }
    }
    // The masked ring was kept.
    dev.set_vector_mask(0..2)?;
    expect_events(&dev, &[(0, 1)], "vector 0 after unmasking it")?;
    println!("# narrowing the mask was honoured by a waiting read");
    Ok(())
}

/// Two threads read one file: both sleep interruptibly (S, not D), a
/// signal gives EINTR, O_NONBLOCK gives EAGAIN at once, and each interrupt
/// is reported exactly once.
pub fn doorbell_two_readers() -> TestResult {
    let bell = open_bell()?;
    let me = bell.me;
    sigusr1_interrupts();
    let reference = Device::open(bell.index)?;
    let dev = Arc::new(Device::open(bell.index)?);

    let a = spawn_reader(&dev)?;
    let b = spawn_reader(&dev)?;
    let mut states = Vec::new();
    for (name, r) in [("A", &a), ("B", &b)] {
        let s = wait_blocked(r.tid, &[SYS_READ], &format!("reader {name}"))?;
        states.push(s);
        println!(
            "# reader {name} (task {}) blocked in read, state {s}",
            r.tid
        );
    }
    if states.iter().any(|s| *s != 'S') {
        unstick(&bell, a);
        unstick(&bell, b);
        fail!("readers of one file in states {states:?}, want S (interruptible) for both");
    }

    // A third read with O_NONBLOCK on the same file description.
    set_nonblock(&dev, true)?;
    let nb = spawn_reader(&dev)?;
    let t0 = Instant::now();
    let r = nb.result(1);
    set_nonblock(&dev, false)?;
    match r {
        Some(Err(e)) if e == libc::EAGAIN => nb.join(),
        Some(other) => {
            nb.join();
            fail!("O_NONBLOCK read with two readers waiting: {other:?}, want EAGAIN");
        }
        None => {
            unstick(&bell, nb);
            fail!("an O_NONBLOCK read blocked while two readers waited");
        }
    }
    println!("# O_NONBLOCK read: EAGAIN after {:?}", t0.elapsed());

    // A signal without SA_RESTART ends reader B's wait.
    // SAFETY: The `b.pthread` is the handle of reader B's thread, whose
    // JoinHandle is joined only after this, so the handle is valid; SIGUSR1's
    // handler (sigusr1_interrupts) does nothing.
    unsafe { libc::pthread_kill(b.pthread, libc::SIGUSR1) };
    match b.result(1) {
        Some(Err(e)) if e == libc::EINTR => b.join(),
        Some(other) => {
            b.join();
            fail!("reader B after SIGUSR1: {other:?}, want EINTR");
        }
        None => {
            unstick(&bell, b);
            fail!("reader B did not return within 1 s of SIGUSR1");
        }
    }
    println!("# SIGUSR1 to a blocked reader: EINTR");

    // Each interrupt goes to exactly one of two waiting readers: ring,
    // take the one result, start a new reader in its place, repeat. A
    // second result for the same ring would arrive in the next round, on
    // the wrong vector.
    // SAFETY: The `a.pthread` is the handle of reader A's thread, whose
    // JoinHandle is joined only after this, so the handle is valid; SIGUSR1's
    // handler (sigusr1_interrupts) does nothing.
    unsafe { libc::pthread_kill(a.pthread, libc::SIGUSR1) };
    let got = a.result(5);
    a.join();
    check!(
        got == Some(Err(libc::EINTR)),
        "reader A after SIGUSR1: {got:?}, want EINTR"
    );
    let (tx, results) = mpsc::channel::<ReadResult>();
    let mut waiting = vec![
        spawn_reader_to(&dev, tx.clone())?,
        spawn_reader_to(&dev, tx.clone())?,
    ];
    let rounds = 20u16;
    let mut failure = None;
    for i in 0..rounds {
        for (tid, ..) in &waiting {
            wait_blocked(*tid, &[SYS_READ], "a reader")?;
        }
        let v = i % 2;
        dev.ring(me, v)?;
        match results.recv_timeout(Duration::from_secs(10)) {
            Ok((tid, r)) => {
                let ok = matches!(&r, Ok(evs) if summary(evs) == [(v, 1)]);
                if !ok {
                    failure = Some(format!(
                        "round {i}, ring on vector {v}: task {tid} read {r:?}"
                    ));
                }
                if let Some(pos) = waiting.iter().position(|w| w.0 == tid) {
                    let (_, _, h) = waiting.remove(pos);
                    let _ = h.join();
                }
                if failure.is_some() {
                    break;
                }
                waiting.push(spawn_reader_to(&dev, tx.clone())?);
            }
            Err(_) => {
                failure = Some(format!(
                    "round {i}: no reader returned within 10 s of a ring on vector {v}"
                ));
                break;
            }
        }
    }
    // End the readers left waiting: each must get EINTR, not an event.
    for (tid, pthread, _) in &waiting {
        if failure.is_none() {
            wait_blocked(*tid, &[SYS_READ], "a reader")?;
        }
        // SAFETY: Each `pthread` belongs to a reader in `waiting`, whose
        // JoinHandle is joined only below: the thread may have finished but is
        // not joined, so its handle is still valid; SIGUSR1's handler does
        // nothing.
        unsafe { libc::pthread_kill(*pthread, libc::SIGUSR1) };
    }
    for _ in &waiting {
        match results.recv_timeout(Duration::from_secs(5)) {
            Ok((_, Err(e))) if e == libc::EINTR => {}
            got => {
                failure.get_or_insert(format!(
                    "a reader left waiting got {got:?}, want EINTR: an interrupt reported twice?"
                ));
            }
        }
    }
    if failure.is_some() {
        for v in 0..2 {
            let _ = dev.ring(me, v);
        }
    }
    for (_, _, h) in waiting {
        let _ = h.join();
    }
    if let Some(f) = failure {
        fail!("{f}");
    }
    let half = u32::from(rounds / 2);
    expect_events(
        &reference,
        &[(0, half), (1, half)],
        "every ring, in a file of its own",
    )?;
    println!("# {rounds} rings, each reported to exactly one of two waiting readers");
    Ok(())
}

/// Reads one event (a 16-byte buffer) from a file that has some pending.
fn read_one(dev: &Device) -> Result<Event, Failure> {
    let mut e = ivshmem::uapi::ivshmem_event::default();
    let size = std::mem::size_of_val(&e);
    // SAFETY: The buffer is `e`, a local ivshmem_event of exactly `size` bytes,
    // made of plain integers (any bytes are a valid value); the descriptor is
    // borrowed from `dev`, open for the call.
    let r = unsafe { libc::read(dev.as_fd().as_raw_fd(), (&raw mut e).cast(), size) };
    check!(
        r == size as isize,
        "read of one event: {r}, {}",
        errname(errno())
    );
    Ok(Event {
        vector: e.vector,
        count: e.count,
        timestamp_ns: e.timestamp_ns,
    })
}

/// A reader that takes one event at a time gets every pending vector in
/// turn, even while vector 0 is rung again before each read.
pub fn doorbell_fairness() -> TestResult {
    let bell = open_bell()?;
    let me = bell.me;
    let reference = Device::open(bell.index)?;
    let dev = Device::open(bell.index)?;
    check!(dev.info()?.vectors >= 2, "the test needs 2 vectors or more");
    dev.ring(me, 0)?;
    dev.ring(me, 1)?;
    expect_events(&reference, &[(0, 1), (1, 1)], "vectors 0 and 1")?;
    let mut order = Vec::new();
    for _ in 0..3 {
        // Vector 0 is pending again before every read.
        let e = read_one(&dev)?;
        order.push(e.vector);
        if e.vector == 0 {
            dev.ring(me, 0)?;
            expect_events(&reference, &[(0, 1)], "vector 0 again")?;
        }
    }
    println!("# one event per read, vector 0 kept busy: vectors {order:?}");
    check!(
        order.iter().take(2).any(|v| *v == 1),
        "vector 1 starved by a busy vector 0: reads returned {order:?}"
    );
    // Vector 0 is still pending; nothing was lost.
    let rest = dev.read_events()?;
    check!(
        summary(&rest) == [(0, 1)],
        "after the fairness reads: {rest:?}"
    );
    Ok(())
}

/// Maps `len` bytes of `dev` at 0 with `prot`, shared; returns the errno
/// (0 = mapped) and, if mapped, the first word.
fn map_with(dev: &Device, len: usize, prot: i32) -> (i32, Option<u32>) {
    match Map::new(dev.as_fd(), len, prot, libc::MAP_SHARED, 0) {
        Ok(map) => (0, Some(map.read_u32(0))),
        Err(e) => (e.raw_os_error().unwrap_or(0), None),
    }
}

/// An O_RDONLY file may look (INFO, read-only mmap, SET_MASK, read, poll)
/// but not act: RING, BIND_EVENTFD and SET_CACHE fail with EBADF.
pub fn readonly_open() -> TestResult {
    let _m = Loaded::load()?;
    let (bell, plain) = find()?;
    let Some(bell) = bell else {
        skip!("no ivshmem-doorbell device");
    };
    let efd = eventfd()?;
    for index in std::iter::once(bell).chain(plain) {
        let rw = Device::open(index)?;
        let ro = Device::open_read_only(index)?;
        let info = ro.info()?;
        check!(
            info == rw.info()?,
            "ivshmem{index}: INFO differs between read-only and read-write files"
        );
        let me = info.ivposition.unwrap_or(0);
        let what = |w: &str| format!("ivshmem{index} O_RDONLY: {w}");
        expect_err(&what("RING"), ro.ring(me, 0), libc::EBADF)?;
        expect_err(
            &what("BIND_EVENTFD"),
            ro.bind_eventfd(0, efd.as_fd()),
            libc::EBADF,
        )?;
        expect_err(
            &what("unbinding an eventfd"),
            ro.unbind_eventfd(0),
            libc::EBADF,
        )?;
        expect_err(
            &what("SET_CACHE"),
            ro.set_cache_mode(ivshmem::CacheMode::WriteCombining),
            libc::EBADF,
        )?;
        // Looking works.
        let map = rw.map(0, 4096, ivshmem::CacheMode::WriteBack)?;
        map.write_volatile(0, 0x0dd_f00du32 + index)?;
        let (e, v) = map_with(&ro, 4096, libc::PROT_READ);
        check!(
            e == 0 && v == Some(0x0dd_f00d + index),
            "{}: {} {v:?}",
            what("read-only mmap"),
            errname(e)
        );
        let (e, _) = map_with(&ro, 4096, libc::PROT_READ | libc::PROT_WRITE);
        check!(
            e == libc::EACCES,
            "{}: {}, want EACCES",
            what("writable mmap"),
            errname(e)
        );
        if !info.doorbell {
            continue;
        }
        ro.set_vector_mask([0, 1])?;
        set_nonblock(&ro, true)?;
        expect_err(
            &what("read, nothing pending"),
            ro.read_events(),
            libc::EAGAIN,
        )?;
        set_nonblock(&ro, false)?;
        rw.ring(me, 1)?;
        expect_events(&ro, &[(1, 1)], &what("a ring from a read-write file"))?;
        expect_events(&rw, &[(1, 1)], "the same ring, in the read-write file")?;
        // The refused eventfd binding was never made.
        check!(efd_count(&efd) == 0, "a refused eventfd was signalled");
        println!(
            "# ivshmem{index}: O_RDONLY refuses RING, BIND_EVENTFD, SET_CACHE with EBADF; reads work"
        );
    }
    Ok(())
}
