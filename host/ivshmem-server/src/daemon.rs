//! Daemonizing with a double fork, reporting success or failure of the
//! daemon's startup to the command that started it.
//!
//! The original process waits on a pipe until the daemon says it is ready
//! (socket bound, pid file written) or failed, and exits 0 or 1 with the
//! daemon's error message. So when `ivshmem-server` returns 0 the socket is
//! there for QEMU to connect to.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::exit;

use anyhow::{Context, Result, bail};
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, WaitOptions, chdir, setsid, waitpid};
use rustix::stdio::{dup2_stderr, dup2_stdin, dup2_stdout};

use crate::logger::{self, Sink};

/// The daemon's end of the startup pipe.
#[derive(Debug)]
pub struct Daemon {
    notify: File,
}

fn fork() -> Result<libc::pid_t> {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: The server has not started any thread (daemonizing happens before
    // the event loop, and the signal handlers, installed earlier, only write to
    // a socket and start no thread), so the child is a complete copy of a
    // single-threaded process and may run any code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("cannot fork: {}", std::io::Error::last_os_error());
    }
    Ok(pid)
}

/// Forks twice. Returns in the daemon: detached from the terminal's session,
/// in `/`, stdio still open until [`Daemon::ready`]. The starting process
/// does not return: it exits once the daemon reports.
pub fn daemonize() -> Result<Daemon> {
    let (r, w) = pipe_with(PipeFlags::CLOEXEC).context("cannot create a pipe")?;
    let child = fork()?;
    if child > 0 {
        drop(w);
        wait_for_daemon(r, child);
    }
    drop(r);
    let daemon = Daemon {
        notify: File::from(w),
    };
    if let Err(e) = setsid() {
        daemon.fail(&anyhow::anyhow!("setsid failed: {e}"));
    }
    // The second fork makes sure the daemon, no longer a session leader,
    // can never acquire a controlling terminal.
    match fork() {
        Ok(0) => {}
        // SAFETY: _exit ends the intermediate process at once, without running
        // atexit handlers or flushing buffers that belong to the daemon;
        // nothing in this process needs cleaning up.
        Ok(_) => unsafe { libc::_exit(0) },
        Err(e) => daemon.fail(&e),
    }
    if let Err(e) = chdir("/") {
        daemon.fail(&anyhow::anyhow!("cannot change directory to /: {e}"));
    }
    Ok(daemon)
}

fn wait_for_daemon(r: OwnedFd, child: libc::pid_t) -> ! {
    // Reap the intermediate process, which exits right away.
    if let Some(pid) = Pid::from_raw(child) {
        let _ = waitpid(Some(pid), WaitOptions::empty());
    }
    let mut buf = Vec::new();
    let _ = File::from(r).read_to_end(&mut buf);
    if buf == b"OK" {
        exit(0);
    }
    let msg = String::from_utf8_lossy(buf.strip_prefix(b"ERR ").unwrap_or(&buf));
    if msg.is_empty() {
        eprintln!("ivshmem-server: error: the daemon exited during startup");
    } else {
        eprintln!("ivshmem-server: error: {msg}");
    }
    exit(1);
}

impl Daemon {
    /// Startup failed: tell the starting process why, and exit.
    pub fn fail(mut self, err: &anyhow::Error) -> ! {
        let _ = write!(self.notify, "ERR {err:#}");
        exit(1);
    }

    /// Startup succeeded: log to `sink` from now on, detach stdio and let
    /// the starting process exit 0.
    pub fn ready(mut self, sink: Sink) -> Result<()> {
        logger::set_sink(sink);
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("cannot open /dev/null")?;
        dup2_stdin(&null).context("cannot redirect stdin")?;
        dup2_stdout(&null).context("cannot redirect stdout")?;
        dup2_stderr(&null).context("cannot redirect stderr")?;
        self.notify
            .write_all(b"OK")
            .context("cannot notify the starting process")?;
        Ok(())
    }
}
