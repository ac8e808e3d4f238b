//! Doorbells between two guests on the scenario's ivshmem server: ring-to-
//! wake latency by ping-pong, waking through `read`, `poll`, and `epoll` on
//! a bound eventfd; the alternative, vfio-pci's MSI-X eventfd on the same
//! device rung through vfio's BAR0 mapping; the floor, two threads of one
//! guest waking each other through eventfds; and rings per second, one way
//! and ping-pong.
//!
//! For the vfio-pci chunk both guests close every file of our driver,
//! unbind it and hand the device to vfio-pci, meet in the shared memory
//! (now mapped through vfio), ping-pong, and then bind our driver again
//! and meet once more before the next method: a ring never reaches a
//! guest whose device is between drivers.
//!
//! Both guests follow the same schedule, so each knows what comes next
//! without asking: rounds of (a chunk of ping-pongs per wake method and
//! the floor in the pinger alone, in an order that rotates every round,
//! then a one-way stream). Every hand-off is a
//! doorbell or a sequence number in the shared memory; nothing sleeps to
//! wait for the other side, except while a device changes drivers around
//! the vfio-pci chunk (polling the shared memory, outside the timing).

use crate::sys::timed;
use crate::{BenchResult, Failure, contender, contender_unless, mapping, progress, samples, vfio};
use guest_sys::Map;
use guest_sys::eventfd;
use hdrhistogram::Histogram;
use ivshmem::Device;
use ktap::Outcome;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where each guest announces itself: 8 bytes per IVPosition.
const SLOTS: usize = 0x100;
/// The one-way stream's sequence number.
const STREAM: usize = 0x2000;
const READY: u64 = 0x4245_4e43_0000;
/// Where each guest says, before it announces itself, whether it can use
/// vfio-pci: 8 bytes per IVPosition.
const VFIO_CAPS: usize = 0x400;
const VFIO_CAN: u64 = 0x5646_494f_0001;
const VFIO_CANNOT: u64 = 0x5646_494f_0002;
/// Where each guest says how far it is in the vfio-pci hand-overs (a
/// number that only grows): 8 bytes per IVPosition.
const VFIO_SYNC: usize = 0x800;
/// BAR0's Doorbell register: `(peer << 16) | vector`.
const DOORBELL: usize = 12;
/// Where each guest says, before it announces itself, whether it can map
/// the doorbell page: 8 bytes per IVPosition.
const PAGE_CAPS: usize = 0xc00;
const PAGE_CAN: u64 = 0x5041_4745_0001;
const PAGE_CANNOT: u64 = 0x5041_4745_0002;

/// How the waiting side wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// Blocking `read()` of the device file.
    Read,
    /// The same, the peer rung with a store to the mapped doorbell page
    /// instead of the RING ioctl.
    Store,
    /// `poll()` of the device file, then `read()`.
    Poll,
    /// `epoll_wait()` on an eventfd bound to the vector, then `read()` of it.
    Epoll,
    /// Two threads of one guest, blocking `read()`s of two eventfds.
    Floor,
    /// The device bound to vfio-pci: blocking `read()` of the eventfd
    /// that MSI-X vector 0 signals, rung through vfio's BAR0 mapping.
    Vfio,
}

impl Method {
    fn contender(self) -> &'static str {
        match self {
            Method::Read => "ivshmem read()",
            Method::Store => "ivshmem read(), store ring",
            Method::Poll => "ivshmem poll()",
            Method::Epoll => "ivshmem epoll(eventfd)",
            Method::Floor => "eventfd, two threads",
            Method::Vfio => "vfio-pci read(eventfd)",
        }
    }
    /// The vector its doorbells use.
    fn vector(self) -> u16 {
        match self {
            Method::Read | Method::Store => 0,
            Method::Poll => 1,
            Method::Epoll => 2,
            Method::Floor => u16::MAX,
            Method::Vfio => 0,
        }
    }
}

const METHODS: [Method; 4] = [Method::Read, Method::Poll, Method::Epoll, Method::Floor];
/// The stream's vector; the receiver acknowledges its end on vector 0.
const STREAM_VECTOR: u16 = 3;

/// One blocking read of `fd` into a small buffer (device events or an
/// eventfd counter).
fn read_once(fd: BorrowedFd<'_>) -> Result<(), Failure> {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: The buffer is `buf`, a local 64-byte array, and the length
        // passed is its length; `fd` is borrowed, so the descriptor stays open
        // for the call.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r > 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Failure::Fail(format!("read: {e}")));
        }
    }
}

/// Adds 1 to an eventfd.
fn signal(fd: BorrowedFd<'_>) -> Result<(), Failure> {
    let one = 1u64;
    // SAFETY: The 8 bytes written are those of `one`, a local u64 alive across
    // the call; `fd` is borrowed, so the descriptor stays open for the call.
    let r = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
    if r == 8 {
        Ok(())
    } else {
        Err(Failure::Fail(format!(
            "eventfd write: {}",
            std::io::Error::last_os_error()
        )))
    }
}

/// Blocks in poll() until `fd` is readable.
fn poll_in(fd: BorrowedFd<'_>) -> Result<(), Failure> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: The `p` is one initialised, writable pollfd on this stack
        // frame, alive across every call, and nfds is 1; its descriptor is
        // borrowed from `fd`, open for the call.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r == 1 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if r < 0 && e.raw_os_error() != Some(libc::EINTR) {
            return Err(Failure::Fail(format!("poll: {e}")));
        }
    }
}

/// The files a guest waits on, one per method, all opened before it
/// announces itself (an open file sees every interrupt after its opening).
struct Waiters {
    dev: Device,
    read: Device,
    poll: Device,
    /// Holds the eventfd binding of the epoll method's vector.
    _bound: Device,
    efd: OwnedFd,
    epfd: OwnedFd,
    stream: Device,
    /// The doorbell page, or why it cannot be mapped.
    page: Result<ivshmem::DoorbellPage, String>,
}

impl Waiters {
    fn open(index: u32) -> Result<Self, Failure> {
        let read = Device::open(index)?;
        read.set_vector_mask([Method::Read.vector()])?;
        let poll = Device::open(index)?;
        poll.set_vector_mask([Method::Poll.vector()])?;
        let stream = Device::open(index)?;
        stream.set_vector_mask([STREAM_VECTOR])?;
        let bound = Device::open(index)?;
        let efd = eventfd(libc::EFD_NONBLOCK)?;
        bound.bind_eventfd(Method::Epoll.vector(), efd.as_fd())?;
        // SAFETY: The epoll_create1 call takes no pointers; it only creates a
        // new descriptor, which is checked and then owned below.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(Failure::Fail("epoll_create1 failed".into()));
        }
        // SAFETY: The `ep` is the new, valid descriptor epoll_create1 just
        // returned; nothing else owns it, so the `OwnedFd` is its only owner.
        let epfd = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: Both descriptors are open: `epfd` and `efd` are owned here;
        // `ev` is a local epoll_event the kernel only reads, alive across the
        // call.
        let r = unsafe {
            libc::epoll_ctl(
                epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                efd.as_raw_fd(),
                &mut ev,
            )
        };
        if r != 0 {
            return Err(Failure::Fail("epoll_ctl failed".into()));
        }
        let dev = Device::open(index)?;
        let page = dev.map_doorbell().map_err(|e| e.to_string());
        Ok(Self {
            dev,
            read,
            poll,
            _bound: bound,
            efd,
            epfd,
            stream,
            page,
        })
    }

    /// Rings `vector` of `peer` the way `m` does: a store to the doorbell
    /// page for [`Method::Store`], the RING ioctl otherwise.
    fn ring(&self, m: Method, peer: u16, vector: u16) -> Result<(), Failure> {
        match (m, &self.page) {
            (Method::Store, Ok(page)) => {
                page.ring(peer, vector);
                Ok(())
            }
            (Method::Store, Err(why)) => Err(Failure::Fail(format!("doorbell page: {why}"))),
            _ => Ok(self.dev.ring(peer, vector)?),
        }
    }

    /// Waits for the next doorbell of `m`'s vector, the way `m` says.
    fn wait(&self, m: Method) -> Result<(), Failure> {
        match m {
            Method::Read | Method::Store => read_once(self.read.as_fd()),
            Method::Poll => {
                poll_in(self.poll.as_fd())?;
                read_once(self.poll.as_fd())
            }
            Method::Epoll => {
                let mut ev = libc::epoll_event { events: 0, u64: 0 };
                loop {
                    // SAFETY: The `ev` is one writable epoll_event on this
                    // stack frame and maxevents is 1, so the kernel writes at
                    // most it; `self.epfd` is owned by `self`, open for the
                    // call.
                    let r = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), &mut ev, 1, -1) };
                    if r == 1 {
                        break;
                    }
                    if r < 0 && sys_errno() != libc::EINTR {
                        return Err(Failure::Fail("epoll_wait failed".into()));
                    }
                }
                read_once(self.efd.as_fd())
            }
            Method::Floor | Method::Vfio => Err(Failure::Fail(format!(
                "{} is not ours to wait for",
                m.contender()
            ))),
        }
    }
}

fn sys_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Announces this guest and waits for the other one: its IVPosition.
fn find_peer(map: &ivshmem::Mapping, me: u16) -> Result<u16, Failure> {
    map.write_volatile(SLOTS + 8 * usize::from(me), READY | u64::from(me))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(p) = (0..64u16).filter(|id| *id != me).find(|id| {
            map.read_volatile::<u64>(SLOTS + 8 * usize::from(*id)).ok()
                == Some(READY | u64::from(*id))
        }) {
            return Ok(p);
        }
        if Instant::now() > deadline {
            return Err(Failure::Fail(
                "no other guest showed up in the shared memory".into(),
            ));
        }
        // Discovery only (the peer's QEMU may still be booting); every
        // measured hand-off below is a doorbell.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Says that this guest got to `token` (in `VFIO_SYNC`) and waits until
/// the peer has got there too; `read` and `write` reach the shared memory
/// through whichever mapping the guest has at that moment.
fn meet(
    read: impl Fn(usize) -> u64,
    write: impl Fn(usize, u64),
    me: u16,
    peer: u16,
    token: u64,
) -> Result<(), Failure> {
    write(VFIO_SYNC + 8 * usize::from(me), token);
    let deadline = Instant::now() + Duration::from_secs(120);
    while read(VFIO_SYNC + 8 * usize::from(peer)) < token {
        if Instant::now() > deadline {
            return Err(Failure::Fail(format!(
                "the peer did not get to vfio-pci hand-over step {token}"
            )));
        }
        // A hand-over between drivers, not measured: the peer may be
        // binding one.
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Reads what is pending on an eventfd without blocking, if anything.
fn drain(fd: BorrowedFd<'_>) -> Result<(), Failure> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: The `p` is one initialised, writable pollfd on this stack frame,
    // alive across the call, and nfds is 1; its descriptor is borrowed from
    // `fd`, open for the call.
    if unsafe { libc::poll(&mut p, 1, 0) } == 1 {
        read_once(fd)?;
    }
    Ok(())
}

/// `n` ping-pongs through vfio-pci, the device at `pci` already unbound
/// from our driver: bind it to vfio-pci, map BAR0 and BAR2, route MSI-X
/// vector 0 to an eventfd, meet the peer at `token`, ping-pong (the
/// pinger records half of each round trip), undo it all. Returns the
/// seconds the ping-pongs took.
#[allow(clippy::too_many_arguments)]
fn vfio_chunk(
    pci: &Path,
    me: u16,
    peer: u16,
    pinger: bool,
    n: u64,
    token: u64,
    hist: &mut Histogram<u64>,
    chunk: &mut Vec<u64>,
) -> Result<f64, Failure> {
    vfio::with_device(pci, |d| {
        let bar0 = d.region(vfio::BAR0)?;
        let bar2 = d.region(vfio::BAR2)?;
        let (_, regs): (f64, Map) = d.map(&bar0, 4096)?;
        let (_, shm) = d.map(
            &bar2,
            usize::try_from(bar2.size).map_err(|e| e.to_string())?,
        )?;
        let efd = guest_sys::eventfd(0).map_err(|e| e.to_string())?;
        d.bus_master()?;
        d.msix_eventfd(0, efd.as_fd())?;
        // Anything pending from before goes now; after the meeting every
        // wake-up is the peer's ring (draining after it could eat the
        // peer's first ping).
        drain(efd.as_fd()).map_err(Failure::why)?;
        meet(
            |o| shm.read_u64(o),
            |o, v| shm.write_u64(o, v),
            me,
            peer,
            token,
        )
        .map_err(Failure::why)?;
        let bell = u32::from(peer) << 16;
        let start = Instant::now();
        for _ in 0..n {
            if pinger {
                let (ns, r) = timed(|| {
                    regs.write_u32(DOORBELL, bell);
                    read_once(efd.as_fd())
                });
                r.map_err(Failure::why)?;
                let half = (ns / 2.0) as u64;
                hist.saturating_record(half);
                chunk.push(half);
            } else {
                read_once(efd.as_fd()).map_err(Failure::why)?;
                regs.write_u32(DOORBELL, bell);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        d.msix_off()?;
        Ok(secs)
    })
    .map_err(|e| Failure::Fail(format!("vfio-pci: {e}")))
}

/// The PCI function of `/dev/ivshmem<index>`.
fn pci_of(index: u32) -> Result<PathBuf, Failure> {
    let p = format!("/sys/class/misc/ivshmem{index}/device");
    std::fs::canonicalize(&p).map_err(|e| Failure::Fail(format!("{p}: {e}")))
}

/// Half the round trip of `n` ping-pongs between two threads of this guest
/// through two eventfds: the floor.
fn floor_chunk(n: u64, hist: &mut Histogram<u64>, chunk: &mut Vec<u64>) -> Result<f64, Failure> {
    let (ping, pong) = (eventfd(0)?, eventfd(0)?);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<(), Failure> {
        let other = s.spawn(|| -> Result<(), Failure> {
            for _ in 0..n {
                read_once(ping.as_fd())?;
                signal(pong.as_fd())?;
            }
            Ok(())
        });
        for _ in 0..n {
            let (ns, r) = timed(|| -> Result<(), Failure> {
                signal(ping.as_fd())?;
                read_once(pong.as_fd())
            });
            r?;
            let half = (ns / 2.0) as u64;
            hist.saturating_record(half);
            chunk.push(half);
        }
        other
            .join()
            .map_err(|_| Failure::Fail("the floor's thread panicked".into()))?
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// The floor of the one-way stream: one thread adds 1 to an eventfd `n`
/// times as fast as it can, another reads it (blocking) until it has
/// counted `n`. Returns the seconds until the last write, the seconds
/// until the reader had counted them all, and the reader's wake-ups.
fn floor_stream(n: u64) -> Result<(f64, f64, u64), Failure> {
    let efd = eventfd(0)?;
    let start = Instant::now();
    std::thread::scope(|sc| -> Result<(f64, f64, u64), Failure> {
        let reader = sc.spawn(|| -> Result<(f64, u64), Failure> {
            let (mut total, mut wakes) = (0u64, 0u64);
            while total < n {
                let mut v = 0u64;
                // SAFETY: The buffer is `v`, a local u64 valid for the 8 bytes
                // read; `efd` is owned by this function and outlives the scoped
                // thread, so the descriptor is open.
                let r = unsafe { libc::read(efd.as_raw_fd(), (&raw mut v).cast(), 8) };
                if r == 8 {
                    total += v;
                    wakes += 1;
                } else if sys_errno() != libc::EINTR {
                    return Err(Failure::Fail("eventfd read failed".into()));
                }
            }
            Ok((start.elapsed().as_secs_f64(), wakes))
        });
        for _ in 0..n {
            signal(efd.as_fd())?;
        }
        let sent = start.elapsed().as_secs_f64();
        let (done, wakes) = reader
            .join()
            .map_err(|_| Failure::Fail("the floor's reader panicked".into()))??;
        Ok((sent, done, wakes))
    })
}

/// Per round samples: (metric, unit, contender) to values.
type Rows = BTreeMap<(&'static str, &'static str, &'static str), Vec<f64>>;

/// Records the rates of a one-way stream of `n` rings by contender `c`:
/// all sent after `sent` seconds, all seen by the receiver after `done`.
fn stream_rates(out: &mut Rows, c: &'static str, n: u64, sent: f64, done: f64) {
    out.entry(("one way, rings sent", "rings/s", c))
        .or_default()
        .push(n as f64 / sent);
    out.entry(("one way, until the receiver saw the last", "rings/s", c))
        .or_default()
        .push(n as f64 / done);
}

/// The `q` quantile of a chunk's samples.
fn quantile(v: &mut [u64], q: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(0) as f64
}

/// The doorbell benchmark (two guests, each with one doorbell device of 4
/// vectors or more, on the same server).
pub fn run() -> BenchResult {
    guest_sys::load_module()?;
    let pings = guest_sys::setting_or("pings", 2000);
    let rounds = guest_sys::setting_or("rounds", 7);
    let stream = guest_sys::setting_or("stream", 10_000);
    let mut index = None;
    for i in 0..guest_sys::ivshmem_devices()?.len() as u32 {
        if Device::open(i)?.info()?.doorbell {
            index = Some(i);
            break;
        }
    }
    let Some(index) = index else {
        return Err(Failure::Skip("no ivshmem-doorbell device".into()));
    };
    // Whether vfio-pci can take the device here (tried once, our driver
    // bound again after); the peer says the same of its own before it
    // announces itself.
    let pci = pci_of(index)?;
    let vfio_here = vfio::prepare(&pci).and_then(|()| vfio::preflight(&pci, true));
    let index = mapping::index_of(&pci)?;
    let mut w = Waiters::open(index)?;
    let info = w.dev.info()?;
    if info.vectors < 4 {
        return Err(Failure::Fail(format!(
            "needs 4 vectors, has {}",
            info.vectors
        )));
    }
    let me = info
        .ivposition
        .ok_or(Failure::Fail("no IVPosition".into()))?;
    let mut map = w.dev.map_all()?;
    map.write_volatile(
        PAGE_CAPS + 8 * usize::from(me),
        if w.page.is_ok() {
            PAGE_CAN
        } else {
            PAGE_CANNOT
        },
    )?;
    map.write_volatile(
        VFIO_CAPS + 8 * usize::from(me),
        if vfio_here.is_ok() {
            VFIO_CAN
        } else {
            VFIO_CANNOT
        },
    )?;
    let peer = find_peer(&map, me)?;
    let pinger = me < peer;
    let vfio_ok = match (
        vfio_here,
        map.read_volatile::<u64>(VFIO_CAPS + 8 * usize::from(peer))?,
    ) {
        (Err(why), _) => Err(why),
        (Ok(()), VFIO_CAN) => Ok(()),
        (Ok(()), _) => Err(format!(
            "the peer guest (IVPosition {peer}) cannot use vfio-pci (its log says why)"
        )),
    };
    let page_ok = match (
        &w.page,
        map.read_volatile::<u64>(PAGE_CAPS + 8 * usize::from(peer))?,
    ) {
        (Err(why), _) => Err(format!("no doorbell page: {why}")),
        (Ok(_), PAGE_CAN) => Ok(()),
        (Ok(_), _) => Err(format!(
            "the peer guest (IVPosition {peer}) cannot map its doorbell page"
        )),
    };
    let mut methods = METHODS.to_vec();
    match &page_ok {
        Ok(()) => methods.push(Method::Store),
        Err(why) => println!("# store ring: skipped: {why}"),
    }
    match &vfio_ok {
        Ok(()) => methods.push(Method::Vfio),
        Err(why) => println!("# vfio-pci: skipped: {why}"),
    }
    println!(
        "# I am {me}, my peer is {peer}; {}; {rounds} rounds of {pings} ping-pongs per method, streams of {stream} rings",
        if pinger {
            "I ping and measure"
        } else {
            "I answer"
        }
    );

    let mut hists: BTreeMap<&str, Histogram<u64>> = BTreeMap::new();
    let mut out = Rows::new();
    // Round 0 warms up (a tenth of the pings, a tenth of the stream) and
    // is not recorded.
    for round in 0..=rounds {
        let n = if round == 0 {
            (pings / 10).max(1)
        } else {
            pings
        };
        // Each round starts one method further, so that none always runs
        // first (both guests rotate alike).
        let mut order = methods.clone();
        order.rotate_left(round as usize % methods.len());
        if pinger {
            progress(&format!(
                "doorbell: round {round}/{rounds} (0 warms up), {n} ping-pongs each: {}, then {s} rings one way",
                order
                    .iter()
                    .map(|m| m.contender())
                    .collect::<Vec<_>>()
                    .join("; "),
                s = if round == 0 {
                    (stream / 10).max(1)
                } else {
                    stream
                }
            ));
        }
        for m in order {
            let hist = hists.entry(m.contender()).or_insert_with(|| {
                Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds")
            });
            let mut chunk = Vec::with_capacity(n as usize);
            let secs = if m == Method::Floor {
                if !pinger {
                    continue;
                }
                floor_chunk(n, hist, &mut chunk)?
            } else if m == Method::Vfio {
                // Every file of our driver closed, the driver unbound; back
                // after the chunk, files open again, and the peer too.
                let token = 2 * (round + 1);
                drop(map);
                drop(w);
                guest_sys::unbind(&pci)?;
                let r = vfio_chunk(&pci, me, peer, pinger, n, token, hist, &mut chunk);
                guest_sys::bind(&pci)?;
                let secs = r?;
                w = Waiters::open(mapping::index_of(&pci)?)?;
                map = w.dev.map_all()?;
                meet(
                    |o| map.read_volatile(o).unwrap_or(0),
                    |o, v| {
                        let _ = map.write_volatile(o, v);
                    },
                    me,
                    peer,
                    token + 1,
                )?;
                if !pinger {
                    continue;
                }
                secs
            } else if pinger {
                let start = Instant::now();
                for _ in 0..n {
                    let (ns, r) = timed(|| -> Result<(), Failure> {
                        w.ring(m, peer, m.vector())?;
                        w.wait(m)
                    });
                    r?;
                    let half = (ns / 2.0) as u64;
                    hist.saturating_record(half);
                    chunk.push(half);
                }
                start.elapsed().as_secs_f64()
            } else {
                for _ in 0..n {
                    w.wait(m)?;
                    w.ring(m, peer, m.vector())?;
                }
                continue;
            };
            if round == 0 {
                hist.reset();
                continue;
            }
            let c = m.contender();
            for (metric, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
                let v = quantile(&mut chunk, q);
                out.entry((metric, "ns", c)).or_default().push(v);
            }
            out.entry(("ping-pong rate", "round trips/s", c))
                .or_default()
                .push(n as f64 / secs);
        }
        // One way: the pinger rings as fast as it can, the receiver wakes
        // until it sees the last sequence number, then acknowledges. Once
        // with the ioctl, once with stores to the doorbell page.
        let s = if round == 0 {
            (stream / 10).max(1)
        } else {
            stream
        };
        let mut kinds = vec![(Method::Read, "ivshmem ring ioctl")];
        if page_ok.is_ok() {
            kinds.push((Method::Store, "ivshmem ring store"));
        }
        for (k, (how, c)) in kinds.into_iter().enumerate() {
            let base = ((round + 1) << 32) + ((k as u64) << 28);
            if pinger {
                let start = Instant::now();
                for i in 1..=s {
                    map.write_volatile(STREAM, base + i)?;
                    w.ring(how, peer, STREAM_VECTOR)?;
                }
                let sent = start.elapsed().as_secs_f64();
                w.wait(Method::Read)?;
                let done = start.elapsed().as_secs_f64();
                if round > 0 {
                    stream_rates(&mut out, c, s, sent, done);
                }
            } else {
                let mut interrupts = 0u64;
                loop {
                    read_once(w.stream.as_fd())?;
                    interrupts += 1;
                    if map.read_volatile::<u64>(STREAM)? == base + s {
                        break;
                    }
                }
                w.ring(how, peer, Method::Read.vector())?;
                if round > 0 {
                    out.entry(("one way, receiver wake-ups per ring", "ratio", c))
                        .or_default()
                        .push(interrupts as f64 / s as f64);
                }
            }
        }
        if pinger {
            // The floor of the same stream, in this guest alone.
            let (f_sent, f_done, f_wakes) = floor_stream(s)?;
            if round > 0 {
                let c = Method::Floor.contender();
                stream_rates(&mut out, c, s, f_sent, f_done);
                out.entry(("one way, receiver wake-ups per ring", "ratio", c))
                    .or_default()
                    .push(f_wakes as f64 / s as f64);
            }
        }
    }
    for ((metric, unit, contender), v) in &out {
        let case = if *unit == "ns" {
            "ring-to-wake latency (half a round trip)"
        } else {
            "rates"
        };
        samples("doorbell", case, metric, unit, contender, v);
    }
    for (c, h) in &hists {
        if h.is_empty() {
            continue;
        }
        println!(
            "# {c}: {} samples, p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns (all rounds)",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
        let case = "ring-to-wake latency (half a round trip)";
        for (metric, v) in [
            ("p99.9 of all rounds", h.value_at_quantile(0.999)),
            ("max of all rounds", h.max()),
        ] {
            samples("doorbell", case, metric, "ns", c, &[v as f64]);
        }
        crate::emit(serde_json::json!({
            "histogram": c,
            "count": h.len(),
            "p50": h.value_at_quantile(0.5),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
        }));
    }
    for m in METHODS {
        if pinger || m != Method::Floor {
            contender(m.contender(), Outcome::Pass);
        }
    }
    contender_unless(Method::Store.contender(), page_ok);
    contender_unless(Method::Vfio.contender(), vfio_ok);
    Ok(())
}
