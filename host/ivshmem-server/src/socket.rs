//! The listening socket: refusing to steal a live server's socket, replacing
//! a stale one, and removing ours (only ours) at exit.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use log::{debug, warn};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType, connect, socket_with};

/// A bound, listening socket and the identity of its file.
#[derive(Debug)]
pub struct BoundSocket {
    /// The listener, non-blocking.
    pub listener: UnixListener,
    path: PathBuf,
    dev: u64,
    ino: u64,
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
    /// Binds and listens on `path`. Fails if a server answers there;
    /// replaces a stale socket left by a server that died.
    pub fn bind(path: &Path) -> Result<Self> {
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
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still the one this server bound (a
    /// later server may have replaced it).
    pub fn remove(&self) {
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
