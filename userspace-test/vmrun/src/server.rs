//! The scenario's ivshmem server: our `ivshmem-server`, in the foreground,
//! stopped (SIGTERM, then SIGKILL) when dropped.

use crate::qemu::ServerLink;
use crate::regions::ShmFile;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the host tools are: beside this runner.
pub fn tool(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// An ivshmem server for a scenario (our `ivshmem-server`).
#[derive(Debug, Clone, Copy)]
pub struct ServerSpec {
    /// Vectors per peer (`-n`).
    pub vectors: u32,
    /// Shared memory size (`-l`).
    pub size: u64,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    child: Child,
    link: ServerLink,
    /// Its shared memory, removed once it is stopped: the server leaves
    /// it behind, as QEMU's does.
    _shm: ShmFile,
}

impl Server {
    /// Starts a server for `spec`, its socket and log in `dir`.
    pub fn start(spec: &ServerSpec, dir: &Path, scenario: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        // The path the server binds, as /proc/net/unix will show it.
        let dir = std::fs::canonicalize(dir)?;
        let socket = dir.join("ivshmem.sock");
        let name = format!("ivshmem-vmrun.{}.{scenario}", std::process::id());
        let shm = ShmFile::track(PathBuf::from("/dev/shm").join(&name));
        let log = File::create(dir.join("server.log"))?;
        let mut cmd = Command::new(tool("ivshmem-server"));
        cmd.args(["-F", "-v", "-S"])
            .arg(&socket)
            .args([
                "-M",
                &name,
                "-l",
                &spec.size.to_string(),
                "-n",
                &spec.vectors.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        crate::qemu::die_with_runner(&mut cmd);
        let child = cmd
            .spawn()
            .context("starting ivshmem-server (built with the workspace)")?;
        let mut s = Self {
            child,
            link: ServerLink {
                socket: socket.clone(),
                shm: shm.path().to_path_buf(),
            },
            _shm: shm,
        };
        // QEMU reads the handshake when it starts: the server must be up.
        wait_listening(&socket, &mut s.child, Duration::from_secs(10)).with_context(|| {
            format!(
                "ivshmem-server did not come up; see {}",
                dir.join("server.log").display()
            )
        })?;
        Ok(s)
    }

    /// How guests reach it.
    pub fn link(&self) -> ServerLink {
        self.link.clone()
    }
}

/// Waits until `child` listens on `socket`, for at most `timeout`. Fails
/// if the child exits first.
///
/// It looks at the socket table (`/proc/net/unix`) and never connects: a
/// connection would make the runner a peer of the server, taking a peer
/// id (0 on a fresh server) and making the server announce a join and a
/// leave, under the guests' eyes.
pub fn wait_listening(socket: &Path, child: &mut Child, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if listening(socket)? {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("it exited ({status})");
        }
        if Instant::now() > deadline {
            bail!(
                "it is not listening on {} after {} s",
                socket.display(),
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a stream socket bound to `path` listens, by the socket table.
pub fn listening(path: &Path) -> Result<bool> {
    let table = std::fs::read_to_string("/proc/net/unix").context("reading /proc/net/unix")?;
    Ok(listening_in(&table, path))
}

/// Whether `table` (as /proc/net/unix) has a listening stream socket bound
/// to `path`.
fn listening_in(table: &str, path: &Path) -> bool {
    /// `__SO_ACCEPTCON` in the Flags column: the socket listens.
    const ACCEPTCON: u32 = 0x1_0000;
    /// `SOCK_STREAM` in the Type column.
    const STREAM: u32 = 1;
    let want = path.as_os_str().to_string_lossy();
    table.lines().skip(1).any(|l| {
        // Num RefCount Protocol Flags Type St Inode Path: the inode is
        // padded with spaces, the path is the rest of the line.
        let mut rest = l;
        let mut fields = [""; 7];
        for f in &mut fields {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            *f = &rest[..end];
            rest = &rest[end..];
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        rest.strip_prefix(' ') == Some(want.as_ref())
            && hex(fields[3]).is_some_and(|f| f & ACCEPTCON != 0)
            && hex(fields[4]) == Some(STREAM)
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixDatagram, UnixListener};
    use std::process::Command;

    const TABLE: &str = "\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 23717 /run/listening.sock
0000000000000000: 00000003 00000000 00000000 0001 03  1677 /run/connected.sock
0000000000000000: 00000002 00000000 00000000 0002 01 31337 /run/datagram.sock
0000000000000000: 00000002 00000000 00010000 0001 01 40000 /run/with space.sock
0000000000000000: 00000002 00000000 00010000 0001 01 40001 @abstract
0000000000000000: 00000003 00000000 00000000 0001 03  1678
";

    #[test]
    fn the_socket_table_says_who_listens() {
        let l = |p: &str| listening_in(TABLE, Path::new(p));
        assert!(l("/run/listening.sock"));
        assert!(l("/run/with space.sock"));
        assert!(!l("/run/connected.sock"));
        assert!(!l("/run/datagram.sock"));
        assert!(!l("/run/listening"));
        assert!(!l("/run/other.sock"));
        assert!(!l(""));
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmrun-server.{}.{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_listener_is_seen_without_being_connected_to() {
        let d = tmp("listener");
        let sock = d.join("s.sock");
        assert!(!listening(&sock).unwrap());
        let dgram = UnixDatagram::bind(&sock).unwrap();
        assert!(
            !listening(&sock).unwrap(),
            "a bound datagram socket does not listen"
        );
        drop(dgram);
        std::fs::remove_file(&sock).unwrap();
        let listener = UnixListener::bind(&sock).unwrap();
        assert!(listening(&sock).unwrap());
        // Nobody connected to find out.
        listener.set_nonblocking(true).unwrap();
        let e = listener.accept().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn waiting_ends_when_the_child_exits() {
        let d = tmp("exits");
        let mut child = Command::new("true").spawn().unwrap();
        let e =
            wait_listening(&d.join("never.sock"), &mut child, Duration::from_secs(60)).unwrap_err();
        assert!(e.to_string().contains("exited"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
