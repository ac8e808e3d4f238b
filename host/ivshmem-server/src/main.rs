//! `ivshmem-server`: a drop-in replacement for QEMU's
//! `contrib/ivshmem-server`, with the same flags and defaults.

mod daemon;
mod logger;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ivshmem_server::cli::Args;
use ivshmem_server::config::{DEFAULT_PIDFILE, DEFAULT_SHM_NAME};
use ivshmem_server::{Config, ShmBacking};
use log::{debug, error, info, warn};
use rustix::process::{Resource, getrlimit, setrlimit};

use crate::logger::Sink;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // Exit status 1 on bad arguments, as QEMU's server; 0 for -h.
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    logger::init(args.verbose);
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard limit: every peer costs
/// the server a socket and one eventfd per vector.
fn raise_fd_limit() {
    let lim = getrlimit(Resource::Nofile);
    if lim.current == lim.maximum {
        return;
    }
    let new = rustix::process::Rlimit {
        current: lim.maximum,
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => debug!(
            "raised the open file limit from {:?} to {:?}",
            lim.current, lim.maximum
        ),
        Err(e) => warn!(
            "cannot raise the open file limit from {:?} to {:?}: {e}",
            lim.current, lim.maximum
        ),
    }
}

/// Descriptors the server needs besides its peers' (stdio, epoll, the
/// listening socket, the shared memory, the signal pipe, the log, the
/// reserve), with room to spare.
const BASE_FDS: u64 = 32;

/// Warns when the open file limit cannot hold `--max-peers` peers: each
/// costs a socket and one eventfd per vector. (Connections beyond what the
/// limit allows are refused and logged.)
fn check_fd_limit(config: &Config) {
    let Some(limit) = getrlimit(Resource::Nofile).current else {
        return;
    };
    let per_peer = 1 + u64::from(config.vectors);
    let need = BASE_FDS + config.max_peers as u64 * per_peer;
    if limit < need {
        warn!(
            "the open file limit ({limit}) allows about {} peers with {} vector(s), fewer than \
             --max-peers {}; raise the limit (ulimit -n, LimitNOFILE=) to {need}",
            limit.saturating_sub(BASE_FDS) / per_peer,
            config.vectors,
            config.max_peers
        );
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// The pid file, removed at exit if it still holds our pid.
struct PidFile {
    path: PathBuf,
    content: String,
}

impl PidFile {
    fn create(path: PathBuf) -> Result<Self> {
        let content = format!("{}\n", std::process::id());
        let mut f = std::fs::File::create(&path)
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
        f.write_all(content.as_bytes())
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
        Ok(Self { path, content })
    }

    /// Removes the file if it still holds our pid. It is read without
    /// blocking: a pid file that is not a regular file (a FIFO) must not
    /// hold the server at exit.
    fn remove(&self) {
        let read = || -> std::io::Result<String> {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path)?;
            let mut c = String::new();
            std::io::Read::read_to_string(&mut f, &mut c)?;
            Ok(c)
        };
        match read() {
            Ok(c) if c == self.content => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!("cannot remove pid file {}: {e}", self.path.display());
                }
            }
            Ok(_) => warn!(
                "pid file {} now belongs to another process; leaving it",
                self.path.display()
            ),
            Err(e) => warn!("cannot read pid file {}: {e}", self.path.display()),
        }
    }
}

fn serve(args: &Args) -> Result<()> {
    raise_fd_limit();
    let backing = match (&args.shm_name, &args.shm_dir) {
        (_, Some(dir)) => ShmBacking::Dir(dir.clone()),
        (Some(name), None) => ShmBacking::Posix(name.clone()),
        (None, None) => ShmBacking::Posix(DEFAULT_SHM_NAME.into()),
    };
    // Absolute paths: the daemon runs in /.
    let socket = absolute(&args.socket)?;
    let pidfile = match (&args.pidfile, args.foreground) {
        (Some(p), _) => Some(absolute(p)?),
        (None, false) => Some(PathBuf::from(DEFAULT_PIDFILE)),
        (None, true) => None,
    };
    let config = Config {
        socket,
        backing,
        size: args.size,
        vectors: args.vectors,
        max_queue: usize::try_from(args.max_queue).unwrap_or(usize::MAX),
        max_peers: usize::try_from(args.max_peers).unwrap_or(usize::MAX),
    };
    check_fd_limit(&config);

    // Before the socket exists: a SIGTERM or SIGINT from here on is kept in
    // the pipe and ends the server once it serves, which removes the
    // socket; without a handler the signal would kill the process and leave
    // the socket behind. (The handlers start no thread: daemonizing later
    // still forks a single-threaded process.)
    let (stop_r, stop_w) = UnixStream::pair().context("cannot create the signal pipe")?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(sig, stop_w.try_clone()?)
            .context("cannot install signal handlers")?;
    }

    let (mut server, sock, shm) = config.start()?;
    let shm_desc = match &config.backing {
        ShmBacking::Posix(name) => format!("POSIX shared memory {name:?}"),
        ShmBacking::Dir(dir) => match shm.huge_page_size {
            Some(p) => format!("a file in {} (hugetlbfs, {p}-byte pages)", dir.display()),
            None => format!("a file in {}", dir.display()),
        },
    };

    let mut daemon = None;
    if !args.foreground {
        let sink = match &args.log_file {
            Some(path) => Sink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open log file {}", path.display()))?,
            ),
            None => match logger::syslog() {
                Some(s) => Sink::Syslog(s),
                None => {
                    warn!(
                        "no syslog at /dev/log: the daemon's messages will be lost (use --log-file)"
                    );
                    Sink::Null
                }
            },
        };
        match daemon::daemonize() {
            Ok(d) => daemon = Some((d, sink)),
            Err(e) => {
                sock.remove();
                return Err(e);
            }
        }
    }

    // From here on: the daemon, or the foreground process.
    let result = (|| -> Result<()> {
        let pid = pidfile.map(PidFile::create).transpose()?;
        if let Some((d, sink)) = daemon.take() {
            // From now on, errors go to the log only.
            if let Err(e) = d.ready(sink) {
                if let Some(p) = &pid {
                    p.remove();
                }
                return Err(e);
            }
        }
        info!(
            "listening on {}{} (pid {}): {shm_desc}, {} bytes, {} vector(s) per peer",
            sock.path().display(),
            if sock.activated() {
                " (passed by the service manager)"
            } else {
                ""
            },
            std::process::id(),
            shm.size,
            config.vectors
        );
        let r = server.run(stop_r.as_fd());
        if r.is_ok() {
            info!("signal received, shutting down");
        }
        if let Some(p) = &pid {
            p.remove();
        }
        r
    })();
    sock.remove();
    match (result, daemon) {
        (Err(e), Some((d, _))) => d.fail(&e),
        (r, _) => r,
    }
}
