//! What the selftests share: loading the module, finding and opening
//! devices, raw mmap and ioctl calls that return the errno, eventfds,
//! expected errors and events, threads blocked in a call, child processes,
//! BAR2 and the driver's fault counts.
//!
//! Every area file (`module.rs`, `node.rs`, `mmap.rs`, ...) may use this
//! module and `guest_sys`; no area file uses another.

use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{self as sys, Loaded, Map, PciDev, errname, errno};
use ivshmem::{Device, Event, Info};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub(crate) const PAGE: usize = 4096;

pub(crate) fn load() -> Result<Loaded, Failure> {
    Ok(Loaded::load()?)
}

pub(crate) fn devices(min: usize) -> Result<Vec<PciDev>, Failure> {
    let d = sys::ivshmem_devices()?;
    if d.len() < min {
        skip!(
            "this guest has {} ivshmem devices, the test needs {min}",
            d.len()
        );
    }
    Ok(d)
}

/// Waits for a test's thread to end and returns what it returned; a
/// panic in it is a failure, "{what} panicked".
pub(crate) fn join<T>(thread: std::thread::JoinHandle<T>, what: &str) -> Result<T, Failure> {
    thread
        .join()
        .map_err(|_| Failure::Fail(format!("{what} panicked")))
}

/// Runs `f` in a child process and returns how it ended: `Ok(code)` for an
/// exit, `Err(signal)` for a signal.
pub(crate) fn in_child(f: impl FnOnce() -> i32) -> Result<Result<i32, i32>, Failure> {
    // SAFETY: The child only runs `f` (volatile accesses to a mapping the
    // parent keeps alive) and then `_exit`s, so it never returns into the
    // harness or touches a lock another thread held at the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail!("fork: {}", errname(errno()));
    }
    if pid == 0 {
        let code = f();
        // SAFETY: The `_exit` has no preconditions; in the child it ends the
        // process at once, without running atexit handlers or destructors that
        // belong to the parent.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: The `pid` is the child this function just forked and has not
    // reaped yet; `status` is a local int the call writes.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        fail!("waitpid: {}", errname(errno()));
    }
    Ok(if libc::WIFSIGNALED(status) {
        Err(libc::WTERMSIG(status))
    } else {
        Ok(libc::WEXITSTATUS(status))
    })
}

/// A child forked now that runs its function only when told to
/// ([`Forked::go`]): what it finds then is what a process that existed
/// before some event (a removal) sees after it.
pub(crate) struct Forked {
    pid: libc::pid_t,
    go: Option<OwnedFd>,
}

impl Forked {
    /// Forks a child that waits for [`Forked::go`] and then `_exit`s with
    /// what `f` returns; `f` makes raw system calls and memory accesses
    /// only (the child of a multi-threaded program may not allocate). If
    /// the parent drops this without `go`, the child exits with 100.
    pub(crate) fn start(f: impl FnOnce() -> i32) -> Result<Self, Failure> {
        let (r, w) = sys::pipe()?;
        let (rfd, wfd) = (r.as_raw_fd(), w.as_raw_fd());
        // SAFETY: The child only makes raw system calls, runs `f` (which the
        // caller keeps to raw calls and accesses) and `_exit`s: it never
        // returns into the harness or takes a lock another thread held.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            fail!("fork: {}", errname(errno()));
        }
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: In the child: the descriptors were inherited (closing
            // the write end's copy leaves no Rust owner behind: the child
            // never returns to drop it); `b` is a local byte.
            let told = unsafe {
                libc::close(wfd);
                libc::read(rfd, (&raw mut b).cast(), 1) == 1
            };
            let code = if told { f() } else { 100 };
            // SAFETY: `_exit` ends the child at once.
            unsafe { libc::_exit(code) };
        }
        Ok(Self { pid, go: Some(w) })
    }

    /// Lets the child run its function, and waits for it: its exit code,
    /// or the signal that ended it.
    pub(crate) fn go(mut self) -> Result<Result<i32, i32>, Failure> {
        if let Some(w) = self.go.take() {
            std::io::Write::write_all(&mut std::fs::File::from(w), b"g")?;
        }
        let mut status = 0;
        // SAFETY: `pid` is the child forked by `start`, not reaped yet;
        // `status` is a local int.
        if unsafe { libc::waitpid(self.pid, &mut status, 0) } != self.pid {
            fail!("waitpid: {}", errname(errno()));
        }
        Ok(if libc::WIFSIGNALED(status) {
            Err(libc::WTERMSIG(status))
        } else {
            Ok(libc::WEXITSTATUS(status))
        })
    }
}

/// Checks, in a forked child, that reading `ptr`, the start of a mapping
/// whose device is gone, raises SIGBUS (`what` names the mapping).
pub(crate) fn expect_sigbus(ptr: *mut u8, what: &str) -> TestResult {
    let ended = in_child(|| {
        // SAFETY: This runs in a forked child: `ptr` is the start of a
        // mapping the parent keeps alive, so the address is still mapped
        // (the driver zapped its pages on removal: the read faults with
        // SIGBUS, which only ends the child). The read is aligned and 4
        // bytes.
        let v = unsafe { ptr.cast::<u32>().read_volatile() };
        // Reaching here means no SIGBUS: exit with a code that says so.
        10 + (v & 1) as i32
    })?;
    check!(
        ended == Err(libc::SIGBUS),
        "reading {what} after removal: {ended:?}, want SIGBUS"
    );
    Ok(())
}

/// Checks that rmmod is refused, and the module stays, while `what`
/// exists.
pub(crate) fn expect_rmmod_refused(what: &str) -> TestResult {
    let rm = std::process::Command::new("rmmod")
        .arg("ivshmem")
        .output()?;
    check!(
        !rm.status.success() && sys::module_loaded()?,
        "rmmod succeeded while {what}"
    );
    Ok(())
}

/// Calls ioctl with a raw command and argument, returning the errno.
pub(crate) fn raw_ioctl(fd: &impl AsFd, cmd: u32, arg: *mut libc::c_void) -> i32 {
    ioctl_value(fd, cmd, arg).err().unwrap_or(0)
}

/// Calls ioctl with a raw command and argument, returning its value (a
/// size, a new descriptor) or the errno.
pub(crate) fn ioctl_value(fd: &impl AsFd, cmd: u32, arg: *mut libc::c_void) -> Result<i32, i32> {
    // SAFETY: The descriptor is borrowed from `fd`, open for the call. `arg`
    // goes only to the kernel, which copies through it with
    // copy_from_user/copy_to_user: a bad or short pointer (the point of some
    // callers) gives EFAULT, never a write to memory of this process other than
    // what it points to; callers that pass real buffers pass ones as large as
    // `cmd`'s size.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), cmd as _, arg) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

/// Calls mmap with raw arguments; returns the errno (0 = mapped, and then
/// unmapped again).
pub(crate) fn raw_mmap(fd: &impl AsFd, len: usize, prot: i32, flags: i32, off: i64) -> i32 {
    match Map::new(fd.as_fd(), len, prot, flags, off) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(0),
    }
}

/// Checks an errno from [`raw_ioctl`] or [`raw_mmap`] (0 = success)
/// against the one expected, and prints it.
pub(crate) fn expect_errno(what: &str, got: i32, want: i32) -> TestResult {
    println!("# {what}: {}", errname(got));
    check!(
        got == want,
        "{what}: got {}, want {}",
        errname(got),
        errname(want)
    );
    Ok(())
}

/// Polls `fd` for `POLLIN` for up to `timeout_ms` milliseconds: poll's
/// return value and the `revents` it left.
pub(crate) fn poll_in(fd: &impl AsFd, timeout_ms: i32) -> (i32, i16) {
    let mut p = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: The `p` is one initialised, writable pollfd on this stack frame,
    // alive across the call, and nfds is 1; its descriptor is borrowed from
    // `fd`, so it stays open for the call.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    (r, p.revents)
}

/// Sets or clears O_NONBLOCK on the open file description of `dev`.
pub(crate) fn set_nonblock(dev: &Device, on: bool) -> TestResult {
    let fd = dev.as_fd().as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL take no pointers; `fd` is borrowed from
    // `dev`, which keeps it open for both calls.
    let r = unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        let fl = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        libc::fcntl(fd, libc::F_SETFL, fl)
    };
    check!(r == 0, "fcntl(F_SETFL): {}", errname(errno()));
    Ok(())
}

/// Read and write, as the tests' mappings are.
pub(crate) const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

/// The first device and the size of its BAR2; skips the test when the
/// firmware left BAR2 unassigned.
pub(crate) fn bar_size() -> Result<(PciDev, usize), Failure> {
    let devs = devices(1)?;
    let (start, end) = devs[0].bar(2)?;
    if start == 0 {
        skip!("the firmware left BAR2 unassigned");
    }
    let dev = devs
        .into_iter()
        .next()
        .ok_or_else(|| Failure::Fail("no device".into()))?;
    Ok((dev, (end + 1 - start) as usize))
}

/// The memtype a write-back request for `dev`'s BAR2 gets: "write-back",
/// or "uncached-minus" where a variable MTRR marks it uncachable.
pub(crate) fn mtrr_wb_name(dev: &PciDev) -> Result<&'static str, Failure> {
    let (start, end) = dev.bar(2)?;
    Ok(if mtrr_uncachable(start, end)? {
        "uncached-minus"
    } else {
        "write-back"
    })
}

/// Whether a variable MTRR marks part of `[start, end]` uncachable
/// (`/proc/mtrr`). The kernel then turns a write-back memtype request into
/// uncached-minus (`pat_x_mtrr_type()`): that is the effective type anyway.
pub(crate) fn mtrr_uncachable(start: u64, end: u64) -> Result<bool, Failure> {
    let Ok(text) = fs::read_to_string("/proc/mtrr") else {
        return Ok(false);
    };
    for l in text.lines().filter(|l| l.ends_with("uncachable")) {
        // regNN: base=0x0c0000000 ( 3072MB), size= 1024MB, count=1: uncachable
        let field = |key: &str| l.split(key).nth(1).map(|r| r.trim_start());
        let base = field("base=0x")
            .and_then(|r| u64::from_str_radix(r.split_whitespace().next()?, 16).ok());
        let size = field("size=").and_then(|r| {
            let t = r.split(',').next()?.trim();
            let (n, unit) = t.split_at(t.len() - 2);
            let n: u64 = n.trim().parse().ok()?;
            Some(n << if unit == "MB" { 20 } else { 10 })
        });
        match (base, size) {
            (Some(b), Some(sz)) if b <= end && start < b + sz => return Ok(true),
            (Some(_), Some(_)) => {}
            _ => fail!("cannot parse /proc/mtrr line {l:?}"),
        }
    }
    Ok(false)
}

/// The driver's (4K, 2M, 1G) page-table entry counts of `/dev/ivshmem0`.
pub(crate) fn faults() -> Result<(u64, u64, u64), Failure> {
    let [pte, pmd, pud] = sys::driver_faults(0)?;
    Ok((pte, pmd, pud))
}

/// The first doorbell device and the first plain one, by index.
pub(crate) fn find() -> Result<(Option<u32>, Option<u32>), Failure> {
    let (mut bell, mut plain) = (None, None);
    for i in 0..sys::ivshmem_devices()?.len() as u32 {
        let info = Device::open(i)?.info()?;
        if info.doorbell {
            bell.get_or_insert(i);
        } else {
            plain.get_or_insert(i);
        }
    }
    Ok((bell, plain))
}

/// A new non-blocking eventfd.
pub(crate) fn eventfd() -> std::io::Result<OwnedFd> {
    sys::eventfd(libc::EFD_NONBLOCK)
}

pub(crate) use guest_sys::efd_count;

pub(crate) fn err_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| ivshmem::errno(&e))
}

pub(crate) fn expect_err<T>(what: &str, r: std::io::Result<T>, want: i32) -> TestResult {
    let got = err_of(r);
    println!(
        "# {what}: {}",
        got.map(errname).unwrap_or_else(|| "success".into())
    );
    check!(
        got == Some(want),
        "{what}: got {:?}, want {}",
        got.map(errname),
        errname(want)
    );
    Ok(())
}

pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: The `ts` is a local timespec, valid for the write clock_gettime
    // makes; CLOCK_MONOTONIC is always available.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Waits for exactly the given events (vector, count), within 10 s.
pub(crate) fn expect_events(
    dev: &Device,
    want: &[(u16, u32)],
    what: &str,
) -> Result<Vec<Event>, Failure> {
    let mut got: Vec<Event> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let total = |g: &[Event]| g.iter().map(|e| e.count).sum::<u32>();
    let want_total: u32 = want.iter().map(|w| w.1).sum();
    while total(&got) < want_total && std::time::Instant::now() < deadline {
        got.extend(dev.wait(Some(Duration::from_millis(500)))?);
    }
    let mut summary: Vec<(u16, u32)> = Vec::new();
    for e in &got {
        match summary.iter_mut().find(|s| s.0 == e.vector) {
            Some(s) => s.1 += e.count,
            None => summary.push((e.vector, e.count)),
        }
    }
    summary.sort();
    check!(summary == want, "{what}: got {summary:?}, want {want:?}");
    Ok(got)
}

/// Waits up to `limit` for some events.
pub(crate) fn expect_some(dev: &Device, limit: Duration) -> Result<Vec<Event>, Failure> {
    let got = dev.wait(Some(limit))?;
    check!(!got.is_empty(), "no event within {limit:?}");
    Ok(got)
}

/// The index of the first doorbell device (SKIP without).
pub(crate) fn find_bell() -> Result<u32, Failure> {
    let (Some(bell), _) = find()? else {
        skip!("no ivshmem-doorbell device");
    };
    Ok(bell)
}

/// This peer's IVPosition from a device's INFO (a failure without one).
pub(crate) fn ivposition(info: &Info) -> Result<u16, Failure> {
    info.ivposition.ok_or(Failure::Fail("no IVPosition".into()))
}

/// The module, loaded, and the first doorbell device, open.
///
/// Fields drop in order: the file closes before the module unloads.
pub(crate) struct Bell {
    pub(crate) index: u32,
    /// The first plain device, if any.
    pub(crate) plain: Option<u32>,
    pub(crate) dev: Device,
    /// The INFO of `dev`.
    pub(crate) info: Info,
    pub(crate) me: u16,
    pub(crate) _m: Loaded,
}

/// Loads the module and opens the first doorbell device (SKIP without).
pub(crate) fn open_bell() -> Result<Bell, Failure> {
    bell_with(Loaded::load()?)
}

/// Opens the first doorbell device (SKIP without), with the module `m`
/// already loaded.
pub(crate) fn bell_with(m: Loaded) -> Result<Bell, Failure> {
    let (Some(index), plain) = find()? else {
        skip!("no ivshmem-doorbell device");
    };
    let dev = Device::open(index)?;
    let info = dev.info()?;
    let me = ivposition(&info)?;
    Ok(Bell {
        _m: m,
        index,
        plain,
        dev,
        info,
        me,
    })
}

/// A new eventfd bound to each of the `n` vectors of `dev`, in order.
pub(crate) fn eventfd_per_vector(dev: &Device, n: u16) -> Result<Vec<OwnedFd>, Failure> {
    let efds: Vec<OwnedFd> = (0..n).map(|_| eventfd()).collect::<Result<_, _>>()?;
    for (v, fd) in efds.iter().enumerate() {
        dev.bind_eventfd(v as u16, fd.as_fd())?;
    }
    Ok(efds)
}

/// After a ring on vector `v`: the eventfd of `v` (from
/// [`eventfd_per_vector`]) counts exactly one, every other none. Reads
/// (and so clears) them all.
pub(crate) fn expect_only_eventfd(efds: &[OwnedFd], v: u16) -> TestResult {
    for (w, fd) in efds.iter().enumerate() {
        let c = efd_count(fd);
        check!(
            c == u64::from(w as u16 == v),
            "vector {v}: the eventfd of vector {w} counts {c}"
        );
    }
    Ok(())
}

/// Peer discovery in the server's shared memory: one 8-byte slot per
/// IVPosition from here, where each guest writes [`READY`] | its position.
pub(crate) const SLOTS: usize = 0x100;

/// What a guest writes in its slot, ORed with its IVPosition.
pub(crate) const READY: u64 = 0x5245_4144_0000;

/// Announces this guest in its slot and waits for another's: returns the
/// other guest's IVPosition.
pub(crate) fn find_peer(map: &ivshmem::Mapping, me: u16) -> Result<u16, Failure> {
    map.write_volatile(SLOTS + 8 * usize::from(me), READY | u64::from(me))?;
    let mut peer = None;
    sys::wait_for(120, || {
        peer = (0..64u16).filter(|id| *id != me).find(|id| {
            map.read_volatile::<u64>(SLOTS + 8 * usize::from(*id)).ok()
                == Some(READY | u64::from(*id))
        });
        peer.is_some()
    });
    peer.ok_or_else(|| Failure::Fail("no other guest showed up in the shared memory".into()))
}

/// x86-64 system call numbers, as `/proc/TID/syscall` shows them.
pub(crate) const SYS_READ: i64 = 0;

pub(crate) const SYS_POLL: i64 = 7;

pub(crate) const SYS_PPOLL: i64 = 271;

/// The calling thread's id.
pub(crate) fn gettid() -> i32 {
    // SAFETY: The gettid call takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// A task's state letter (`R`, `S`, `D`...) from `/proc/TID/stat`: a
/// thread of this process or another process.
pub(crate) fn task_state(tid: i32) -> Result<char, Failure> {
    let stat = sys::read_trim(format!("/proc/{tid}/stat"))?;
    // The command may hold spaces and parentheses: the state follows the
    // last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .ok_or_else(|| Failure::Fail(format!("cannot parse task {tid}'s stat: {stat:?}")))
}

/// The system call a task is blocked in, if any.
pub(crate) fn task_syscall(tid: i32) -> Result<Option<i64>, Failure> {
    let s = sys::read_trim(format!("/proc/{tid}/syscall"))?;
    Ok(s.split_whitespace().next().and_then(|w| w.parse().ok()))
}

/// The times task `tid` gave up the CPU to wait
/// (`voluntary_ctxt_switches` in `/proc/TID/status`): each sleep that ended
/// in a wake-up counts one.
pub(crate) fn task_sleeps(tid: i32) -> Result<u64, Failure> {
    let status = sys::read_trim(format!("/proc/{tid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Failure::Fail(format!("no voluntary_ctxt_switches for task {tid}")))
}

/// Waits (up to 10 s) until task `tid` sleeps inside one of `calls`;
/// returns its state letter.
pub(crate) fn wait_blocked(tid: i32, calls: &[i64], what: &str) -> Result<char, Failure> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = task_state(tid)?;
        if state != 'R' && task_syscall(tid)?.is_some_and(|nr| calls.contains(&nr)) {
            // The syscall file is read with the task stopped in the call;
            // read the state again so that it matches.
            return task_state(tid);
        }
        if Instant::now() > deadline {
            fail!("{what} (task {tid}) did not block within 10 s: state {state}");
        }
        // Polls the thread's own state: the condition, not the time, ends
        // the wait.
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(5));
    }
}

extern "C" fn on_signal(_: libc::c_int) {}

/// Installs a SIGUSR1 handler that does nothing, without SA_RESTART, so
/// that a signal makes a blocked read fail with EINTR.
pub(crate) fn sigusr1_interrupts() {
    // SAFETY: The `sa` is a zeroed sigaction (a valid value: empty mask, no
    // flags) whose handler, `on_signal`, does nothing and so is
    // async-signal-safe; the old action is not asked for (null).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
}

/// An ioctl command number of the driver: direction, number, size.
pub(crate) fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (u32::from(ivshmem::uapi::IVSHMEM_IOCTL_MAGIC) << 8) | nr
}

pub(crate) const IOC_WRITE: u32 = 1;

pub(crate) const IOC_READ: u32 = 2;
