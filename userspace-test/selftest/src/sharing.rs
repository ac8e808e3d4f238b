//! Selftests of what one user of a doorbell device cannot take from
//! another: eventfd slots (a per-user bound below the device's), and
//! wake-ups (a file's `SET_MASK` wakes only that file's waiters).
//!
//! The other users are forked children, with their own uids where the
//! test needs them. Hand-offs go through pipes (a child reports, then
//! holds what it took until the parent closes its end) and through the
//! children's blocked state in `/proc`.

use crate::fixture::*;
use crate::{Failure, TestResult, check, fail};
use guest_sys::{self as sys, errname, errno};
use ivshmem::Device;
use ivshmem::uapi::{
    IVSHMEM_IOCTL_BIND_EVENTFD, IVSHMEM_MAX_EVENTFDS, IVSHMEM_MAX_EVENTFDS_PER_USER,
    ivshmem_eventfd,
};
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

/// A forked child that reports once on a pipe and then waits for the
/// parent to close its end of another.
struct Child {
    pid: libc::pid_t,
    report: File,
    /// The parent's end of the hold pipe: dropping it lets the child go.
    _hold: OwnedFd,
}

impl Child {
    /// Forks a child that runs `f` (raw system calls only: the child of a
    /// multi-threaded program may not allocate), writes the `i32` it
    /// returns on the report pipe, waits until the parent lets go, and
    /// exits.
    fn start(f: impl FnOnce() -> i32) -> Result<Self, Failure> {
        let (report_r, report_w) = sys::pipe()?;
        let (hold_r, hold_w) = sys::pipe()?;
        let (rw, hr, hw) = (report_w.as_raw_fd(), hold_r.as_raw_fd(), hold_w.as_raw_fd());
        // SAFETY: The child runs `f` (raw system calls), writes and reads its
        // pipes and `_exit`s: it never returns into the harness or takes a
        // lock another thread held at the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            fail!("fork: {}", errname(errno()));
        }
        if pid == 0 {
            let v = f().to_ne_bytes();
            let mut b = 0u8;
            // SAFETY: In the child: the descriptors were inherited; `v` and `b`
            // are locals of the sizes given. The parent's end of the hold
            // pipe is closed here so that its close in the parent ends the
            // read (no Rust owner in the child drops it again: it `_exit`s).
            unsafe {
                libc::close(hw);
                libc::write(rw, v.as_ptr().cast(), v.len());
                libc::read(hr, (&raw mut b).cast(), 1);
                libc::_exit(0);
            }
        }
        Ok(Self {
            pid,
            report: File::from(report_r),
            _hold: hold_w,
        })
    }

    /// The child's report.
    fn report(&mut self) -> Result<i32, Failure> {
        let mut v = [0u8; 4];
        self.report
            .read_exact(&mut v)
            .map_err(|e| Failure::Fail(format!("child {}: no report ({e})", self.pid)))?;
        Ok(i32::from_ne_bytes(v))
    }

    /// Lets the children go and reaps them. All at once: a child forked
    /// later holds a copy of an earlier child's hold pipe, so the earlier
    /// one is let go only when the later one exits.
    fn finish(children: Vec<Child>) -> Result<(), Failure> {
        let pids: Vec<libc::pid_t> = children.into_iter().map(|c| c.pid).collect();
        for pid in pids {
            let mut status = 0;
            // SAFETY: `pid` is a child forked by `start`, not reaped yet;
            // `status` is a local int.
            if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
                fail!("waitpid: {}", errname(errno()));
            }
        }
        Ok(())
    }
}

/// In a child: becomes `uid` (all of its uids and gids, so no capability is
/// left), opens `node` `n` times and binds a new eventfd on vector 0 of
/// each. Returns how many bindings succeeded before the first failure,
/// times 1000, plus that failure's errno (0 if none failed). Raw system
/// calls only.
fn bind_as(uid: u32, node: &CString, n: usize) -> i32 {
    // SAFETY: Raw system calls in a forked child, on locals and on `node`, a
    // NUL-terminated string allocated before the fork; the descriptors
    // opened are left to the child's exit.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(uid, uid, uid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            return -errno();
        }
        for i in 0..n {
            let fd = libc::open(node.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            let efd = libc::eventfd(0, libc::EFD_CLOEXEC);
            if fd < 0 || efd < 0 {
                return -errno();
            }
            let mut req = ivshmem_eventfd {
                fd: efd,
                ..Default::default()
            };
            if libc::ioctl(fd, IVSHMEM_IOCTL_BIND_EVENTFD as _, &raw mut req) != 0 {
                return i as i32 * 1000 + errno();
            }
        }
        n as i32 * 1000
    }
}

/// Binds a new eventfd on vector 0 of a new open file of device `index`,
/// as this (privileged) process; the file is pushed to `keep`.
fn bind_root(index: u32, keep: &mut Vec<(Device, OwnedFd)>) -> Result<(), i32> {
    let dev = Device::open(index).map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let efd = eventfd().map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let mut req = ivshmem_eventfd {
        fd: efd.as_raw_fd(),
        ..Default::default()
    };
    match raw_ioctl(&dev, IVSHMEM_IOCTL_BIND_EVENTFD, (&raw mut req).cast()) {
        0 => {
            keep.push((dev, efd));
            Ok(())
        }
        e => Err(e),
    }
}

/// Eventfd slots are bounded per user: a user holding its maximum
/// (`IVSHMEM_MAX_EVENTFDS_PER_USER` on a vector) gets `EDQUOT` for one
/// more, and does not stop another user from binding as many; a caller
/// with `CAP_SYS_RESOURCE` (root here) may bind up to the device's bound,
/// `IVSHMEM_MAX_EVENTFDS`, and gets `ENOSPC` beyond.
pub fn eventfd_per_user() -> TestResult {
    let bell = open_bell()?;
    let path = format!("/dev/ivshmem{}", bell.index);
    let mode = std::fs::metadata(&path)?.permissions().mode();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    let node = CString::new(path.clone()).map_err(|e| Failure::Fail(e.to_string()))?;
    let per_user = IVSHMEM_MAX_EVENTFDS_PER_USER;
    let result = (|| -> TestResult {
        let mut users = Vec::new();
        for uid in [1000, 1001] {
            let node = node.clone();
            let mut child = Child::start(move || bind_as(uid, &node, per_user + 1))?;
            let r = child.report()?;
            users.push(child);
            let (bound, err) = (r / 1000, r % 1000);
            println!(
                "# uid {uid}: {bound} eventfds bound on vector 0, then {}",
                errname(err)
            );
            check!(
                r >= 0 && bound as usize == per_user && err == libc::EDQUOT,
                "uid {uid} bound {bound} eventfds, then {} (report {r}); want {per_user}, \
                 then EDQUOT",
                errname(err)
            );
        }
        // Root, privileged: up to the device's bound.
        let mut keep = Vec::new();
        let room = IVSHMEM_MAX_EVENTFDS - 2 * per_user;
        for i in 0..room {
            if let Err(e) = bind_root(bell.index, &mut keep) {
                fail!("root's binding {} of {room}: {}", i + 1, errname(e));
            }
        }
        let full = bind_root(bell.index, &mut keep).err().unwrap_or(0);
        expect_errno(
            "one more eventfd on a vector with IVSHMEM_MAX_EVENTFDS",
            full,
            libc::ENOSPC,
        )?;
        // The users let go: their slots come back.
        Child::finish(users)?;
        drop(keep.pop());
        check!(
            bind_root(bell.index, &mut keep).is_ok() && bind_root(bell.index, &mut keep).is_ok(),
            "slots did not come back when their holders exited"
        );
        Ok(())
    })();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    result
}

/// A `SET_MASK` loop on one open file does not wake a reader blocked on
/// another open file of the device, in another process: its count of
/// sleeps stays put. A ring then wakes it.
pub fn set_mask_other_file() -> TestResult {
    const LOOPS: u64 = 10_000;
    let bell = open_bell()?;
    let node = CString::new(format!("/dev/ivshmem{}", bell.index))
        .map_err(|e| Failure::Fail(e.to_string()))?;
    let mut reader = Child::start(move || {
        let mut ev = [0u8; 64];
        // SAFETY: Raw system calls in a forked child on `node` (allocated
        // before the fork) and `ev`, a local buffer of the size given.
        unsafe {
            let fd = libc::open(node.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if fd < 0 {
                return -errno();
            }
            let n = libc::read(fd, ev.as_mut_ptr().cast(), ev.len());
            if n < 0 { -errno() } else { n as i32 }
        }
    })?;
    let pid = reader.pid;
    wait_blocked(pid, &[SYS_READ], "the reader in another process")?;
    let before = task_sleeps(pid)?;
    for i in 0..LOOPS {
        let mask: &[u16] = if i % 2 == 0 { &[0] } else { &[0, 1] };
        bell.dev.set_vector_mask(mask.iter().copied())?;
    }
    let after = task_sleeps(pid)?;
    let state = task_state(pid)?;
    println!(
        "# {LOOPS} SET_MASK calls on another file: the reader slept {} more time(s), state {state}",
        after - before
    );
    check!(
        after - before < LOOPS / 100,
        "{LOOPS} SET_MASK calls on another file woke the blocked reader {} times",
        after - before
    );
    bell.dev.set_vector_mask(0..bell.info.vectors as u16)?;
    bell.dev.ring(bell.me, 0)?;
    let n = reader.report()?;
    check!(
        n == 16,
        "the reader's read after a ring: {} (want one 16-byte event)",
        if n < 0 { errname(-n) } else { n.to_string() }
    );
    Child::finish(vec![reader])?;
    Ok(())
}
