//! The scenario's ivshmem server: our `ivshmem-server`, in the foreground,
//! stopped (SIGTERM, then SIGKILL) when dropped.

use crate::qemu::ServerLink;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::os::unix::net::UnixStream;
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
}

impl Server {
    /// Starts a server for `spec`, its socket and log in `dir`.
    pub fn start(spec: &ServerSpec, dir: &Path, scenario: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("ivshmem.sock");
        let name = format!("ivshmem-vmrun.{}.{scenario}", std::process::id());
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
                shm: PathBuf::from("/dev/shm").join(&name),
            },
        };
        // QEMU reads the handshake when it starts: the server must be up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline || s.child.try_wait()?.is_some() {
                bail!(
                    "ivshmem-server did not come up; see {}",
                    dir.join("server.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    /// How guests reach it.
    pub fn link(&self) -> ServerLink {
        self.link.clone()
    }
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
