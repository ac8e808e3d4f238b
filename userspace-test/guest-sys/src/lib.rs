//! Guest-side helpers shared by the in-guest selftests (`ivshmem-selftest`),
//! the benchmarks (`ivshmem-bench`) and the fuzzer (`ivshmem-fuzz`): the
//! runner's settings, sysfs files, the driver module, ivshmem PCI
//! functions, errno values, eventfds and raw mappings.
//!
//! Every helper that can fail returns [`std::io::Result`]; the errors of
//! file helpers name the file.

mod map;
mod module;
mod pci;

pub use map::{Map, mmap};
pub use module::{Loaded, MODULE, load_module, module_loaded, module_path};
pub use pci::{
    PciDev, bind, driver_bound_devices, driver_faults, ivshmem_devices, node_exists, unbind,
};

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// A setting from the kernel command line (`ivt_KEY=VALUE`), which the
/// guest's init passes on as an environment variable.
pub fn setting(key: &str) -> Option<String> {
    std::env::var(format!("ivt_{key}")).ok()
}

/// A numeric setting (the first of a comma-separated list), or `default`
/// when it is absent or not a number.
pub fn setting_or(key: &str, default: u64) -> u64 {
    setting_u64s(key)
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(default)
}

/// A comma-separated list of numbers from a setting.
pub fn setting_u64s(key: &str) -> io::Result<Vec<u64>> {
    let Some(s) = setting(key) else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the runner gave no ivt_{key}"),
        ));
    };
    s.split(',')
        .map(|v| {
            v.parse().map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("ivt_{key}={s}: {e}"))
            })
        })
        .collect()
}

/// Reads a (sysfs or proc) file, trimmed; the error names the file.
pub fn read_trim(path: impl AsRef<Path>) -> io::Result<String> {
    let p = path.as_ref();
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", p.display())))
}

/// Writes a sysfs attribute; the error names the file and the value.
pub fn write_sysfs(path: impl AsRef<Path>, value: &str) -> io::Result<()> {
    let p = path.as_ref();
    fs::write(p, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", p.display()),
        )
    })
}

/// Polls `cond` every 50 ms for up to `secs` seconds.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// The errno of the last failed libc call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The name of an errno value, for messages.
pub fn errname(e: i32) -> String {
    let name = match e {
        0 => "success",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::EFAULT => "EFAULT",
        libc::ENODEV => "ENODEV",
        libc::EBUSY => "EBUSY",
        libc::E2BIG => "E2BIG",
        libc::EAGAIN => "EAGAIN",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EACCES => "EACCES",
        libc::ENXIO => "ENXIO",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EINTR => "EINTR",
        libc::EDQUOT => "EDQUOT",
        libc::ENOSPC => "ENOSPC",
        libc::EPERM => "EPERM",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// A new eventfd, close-on-exec, with `flags` (e.g. `EFD_NONBLOCK`) added;
/// the error says it was eventfd that failed.
pub fn eventfd(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: Eventfd(2) takes no pointers; it only creates a new
    // descriptor, which is checked and then owned below.
    let fd = unsafe { libc::eventfd(0, flags | libc::EFD_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("eventfd: {e}")));
    }
    // SAFETY: The `fd` is the new, valid descriptor eventfd(2) just returned;
    // nothing else owns it, so the `OwnedFd` is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new pipe, close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two descriptors into `fds`, a local array of
    // two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: The call succeeded: both are new descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads (and so resets) an eventfd's counter: 0 when nothing was
/// signalled (or the read failed).
pub fn efd_count(fd: &OwnedFd) -> u64 {
    let mut v = 0u64;
    // SAFETY: The `fd` is a descriptor owned by the caller and open for the
    // call; the buffer is `v`, a local `u64` valid for the 8 bytes written.
    let r = unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast(), 8) };
    if r == 8 { v } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errname_names_what_the_tests_expect() {
        assert_eq!(errname(0), "success");
        assert_eq!(errname(libc::EINVAL), "EINVAL");
        assert_eq!(errname(9999), "errno 9999");
    }

    #[test]
    fn eventfd_counts_writes() {
        let fd = eventfd(libc::EFD_NONBLOCK).unwrap();
        assert_eq!(efd_count(&fd), 0);
        let one = 1u64.to_ne_bytes();
        // SAFETY: The `fd` is the eventfd just made and owned here; the buffer
        // is the 8 bytes of `one`, alive across the call.
        let w = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) };
        assert_eq!(w, 8);
        assert_eq!(efd_count(&fd), 1);
    }

    #[test]
    fn file_errors_name_the_file() {
        let e = read_trim("/nonexistent/guest-sys").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading /nonexistent/guest-sys: ")
        );
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
