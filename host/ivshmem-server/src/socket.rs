//! The listening socket: refusing to steal a live server's socket, replacing
//! a stale one, and removing ours (only ours) at exit; or the one a service
//! manager passed (systemd socket activation), which stays its own.
//!
//! Probing, removing a stale socket and binding are one step for one server
//! at a time: each takes an exclusive `flock` on `SOCKET.lock` first and
//! holds it while it serves, so of two servers started at once on one path
//! exactly one binds; the other is refused as if the first already listened.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use log::{debug, warn};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SocketAddrAny, SocketAddrUnix, SocketFlags, SocketType, connect, getsockname,
    socket_with, sockopt,
};

/// A bound, listening socket and the identity of its file.
#[derive(Debug)]
pub struct BoundSocket {
    /// The listener, non-blocking.
    pub listener: UnixListener,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Passed by the service manager, which owns the file.
    activated: bool,
    /// The lock on the socket's path, held while serving (none when the
    /// service manager passed the socket); taken out by `remove`.
    lock: Mutex<Option<PathLock>>,
}

/// An exclusive `flock` on `SOCKET.lock`: whoever holds it owns the socket
/// path. The file is removed by its holder, while still locked, at exit; a
/// server that locked a file just removed (it opened it before the removal)
/// finds that the path no longer names what it locked and tries again.
#[derive(Debug)]
struct PathLock {
    fd: OwnedFd,
    path: PathBuf,
}

/// `SOCKET.lock`, next to the socket.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut name = OsString::from(socket.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

impl PathLock {
    fn take(socket: &Path) -> Result<Self> {
        use rustix::fs::{FlockOperation, Mode, OFlags, flock, fstat, open, stat};
        let path = lock_path(socket);
        let cannot = || {
            format!(
                "cannot bind socket {}: cannot use its lock file {}",
                socket.display(),
                path.display()
            )
        };
        loop {
            let fd = open(
                &path,
                OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o600),
            )
            .with_context(cannot)?;
            match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => bail!(
                    "another server is already listening on {} (or starting: it holds {}); \
                     not replacing its socket",
                    socket.display(),
                    path.display()
                ),
                Err(e) => return Err(e).with_context(cannot),
            }
            let ours = fstat(&fd).with_context(cannot)?;
            match stat(&path) {
                Ok(now) if now.st_dev == ours.st_dev && now.st_ino == ours.st_ino => {
                    return Ok(Self { fd, path });
                }
                // Removed or replaced by its last holder: try again.
                Ok(_) => {}
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e).with_context(cannot),
            }
        }
    }

    /// Removes the lock file, still holding the lock, and then lets go.
    fn release(self) {
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != ErrorKind::NotFound {
                warn!("cannot remove lock file {}: {e}", self.path.display());
            }
        }
        drop(self.fd);
    }
}

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The listening socket passed by a service manager, if any, under the
/// systemd socket activation protocol: `LISTEN_PID` is this process and
/// `LISTEN_FDS` is 1; the socket is descriptor 3. It must be a listening
/// Unix stream socket. The variables are removed so that children do not
/// see them.
pub fn from_service_manager() -> Result<Option<UnixListener>> {
    let (Some(pid), Some(fds)) = (
        std::env::var_os("LISTEN_PID"),
        std::env::var_os("LISTEN_FDS"),
    ) else {
        return Ok(None);
    };
    if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(None);
    }
    // SAFETY: The process is still single-threaded here (the server sets up its
    // socket before starting anything), so no other thread reads the
    // environment concurrently.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    match fds.to_str() {
        Some("1") => {}
        _ => bail!(
            "the service manager passed {:?} sockets (LISTEN_FDS); ivshmem-server takes exactly one",
            fds
        ),
    }
    // SAFETY: Under the socket activation protocol (LISTEN_FDS checked above),
    // descriptor 3 is open and passed to this process alone, and nothing else
    // in it has taken ownership of it: the `OwnedFd` is its only owner and
    // closes it once.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let kind = sockopt::socket_type(&fd)
        .context("descriptor 3 from the service manager is not a socket")?;
    let listening = sockopt::socket_acceptconn(&fd).context("cannot query descriptor 3")?;
    let unix =
        SocketAddrUnix::try_from(getsockname(&fd).context("cannot query descriptor 3")?).is_ok();
    if kind != SocketType::STREAM || !listening || !unix {
        bail!("descriptor 3 from the service manager is not a listening Unix stream socket");
    }
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
        .context("cannot set close-on-exec on the passed socket")?;
    Ok(Some(UnixListener::from(fd)))
}

/// What is at a socket path.
#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Nothing,
    /// A socket no one listens on.
    Stale,
    /// A socket a process listens on.
    Alive,
}

/// Finds out whether a server listens on `path`, by connecting to it
/// without blocking (a live server with a full backlog also counts as
/// live). A connection that succeeds is closed at once.
pub fn probe(path: &Path) -> Result<Existing> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    let addr = SocketAddrUnix::new(path)
        .with_context(|| format!("invalid socket path {}", path.display()))?;
    let sock = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .context("cannot create a socket")?;
    match connect(&sock, &addr) {
        Ok(()) | Err(Errno::AGAIN) | Err(Errno::INPROGRESS) => Ok(Existing::Alive),
        Err(Errno::CONNREFUSED) => Ok(Existing::Stale),
        Err(e) => {
            Err(e).with_context(|| format!("cannot probe existing socket {}", path.display()))
        }
    }
}

impl BoundSocket {
    /// Binds and listens on `path`. Fails if a server answers there or
    /// holds its lock; replaces a stale socket left by a server that died.
    pub fn bind(path: &Path) -> Result<Self> {
        let lock = PathLock::take(path)?;
        match Self::bind_locked(path) {
            Ok(sock) => {
                *sock.lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
                Ok(sock)
            }
            Err(e) => {
                lock.release();
                Err(e)
            }
        }
    }

    /// [`BoundSocket::bind`] once the path's lock is held.
    fn bind_locked(path: &Path) -> Result<Self> {
        match probe(path)? {
            Existing::Nothing => {}
            Existing::Alive => bail!(
                "another server is already listening on {}; not replacing its socket",
                path.display()
            ),
            Existing::Stale => {
                warn!("removing stale socket {}", path.display());
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot remove stale socket {}", path.display())
                        });
                    }
                }
            }
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot bind socket {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("cannot make the listening socket non-blocking")?;
        let meta = fs::symlink_metadata(path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        debug!("listening socket {} bound", path.display());
        Ok(Self {
            listener,
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            activated: false,
            lock: Mutex::new(None),
        })
    }

    /// Adopts the listening socket a service manager passed; its file stays
    /// the manager's (never removed here).
    pub fn adopt(listener: UnixListener) -> Result<Self> {
        listener
            .set_nonblocking(true)
            .context("cannot make the listening socket non-blocking")?;
        let addr: SocketAddrAny =
            getsockname(&listener).context("cannot query the passed socket")?;
        let path = SocketAddrUnix::try_from(addr)
            .ok()
            .and_then(|a| {
                a.path()
                    .map(|p| PathBuf::from(p.to_string_lossy().into_owned()))
            })
            .unwrap_or_default();
        debug!(
            "listening socket {} passed by the service manager",
            path.display()
        );
        Ok(Self {
            listener,
            path,
            dev: 0,
            ino: 0,
            activated: true,
            lock: Mutex::new(None),
        })
    }

    /// Whether the service manager passed the socket.
    pub fn activated(&self) -> bool {
        self.activated
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still the one this server bound (a
    /// later server may have replaced it), then its lock file, and lets go
    /// of the lock.
    pub fn remove(&self) {
        self.remove_socket();
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(lock) = lock {
            lock.release();
        }
    }

    fn remove_socket(&self) {
        if self.activated {
            return;
        }
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = fs::remove_file(&self.path) {
                    warn!("cannot remove socket {}: {e}", self.path.display());
                }
            }
            Ok(_) => warn!(
                "socket {} was replaced by another; leaving it",
                self.path.display()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => warn!("cannot stat socket {}: {e}", self.path.display()),
        }
    }
}
