//! `ivshmem-server`: a drop-in replacement for QEMU's
//! `contrib/ivshmem-server`, with the same flags and defaults.

mod daemon;
mod logger;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgAction, Parser};
use ivshmem_server::config::{
    self, DEFAULT_MAX_QUEUE, DEFAULT_PIDFILE, DEFAULT_SHM_NAME, DEFAULT_SOCKET, MAX_VECTORS,
};
use ivshmem_server::{Config, ShmBacking};
use log::{debug, error, info, warn};
use rustix::process::{Resource, getrlimit, setrlimit};

use crate::logger::Sink;

/// Shares memory and interrupts between QEMU guests (ivshmem-doorbell) and
/// host programs.
#[derive(Debug, Parser)]
#[command(
    name = "ivshmem-server",
    version,
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = "Sizes take the suffixes K, M, G, T, P and E (powers of 1024), e.g. 1K means 1024; \
                  they are rounded up to a power of two (and to the huge page size on hugetlbfs).\n\
                  Without -F the server daemonizes once the socket is bound and logs to syslog \
                  (or to --log-file)."
)]
struct Args {
    /// Show this help
    #[arg(short = 'h', long = "help", action = ArgAction::Help)]
    help: Option<bool>,

    /// Verbose mode: also log every connection detail
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,

    /// Foreground mode (default is to daemonize)
    #[arg(short = 'F', long = "foreground")]
    foreground: bool,

    /// Path to the PID file [daemon mode default: /var/run/ivshmem-server.pid;
    /// in the foreground, written only if given]
    #[arg(short = 'p', long = "pidfile", value_name = "PIDFILE")]
    pidfile: Option<PathBuf>,

    /// Path to the unix socket to listen to
    #[arg(short = 'S', long = "socket", value_name = "SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,

    /// POSIX shared memory object to use [default: ivshmem]
    #[arg(
        short = 'M',
        long = "shm-name",
        value_name = "NAME",
        conflicts_with = "shm_dir"
    )]
    shm_name: Option<String>,

    /// Where to create the shared memory: an unlinked file in DIR, e.g. a
    /// hugetlbfs mount
    #[arg(short = 'm', long = "shm-dir", value_name = "DIR")]
    shm_dir: Option<PathBuf>,

    /// Size of the shared memory in bytes
    #[arg(short = 'l', long = "size", value_name = "SIZE", default_value = "4M",
          value_parser = config::parse_size)]
    size: u64,

    /// Number of vectors (eventfds) per peer, 1 to 256
    #[arg(short = 'n', long = "vectors", value_name = "VECTORS", default_value_t = config::DEFAULT_VECTORS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VECTORS)))]
    vectors: u32,

    /// Drop a client whose output queue grows this many messages beyond its
    /// handshake (a client that does not read its socket)
    #[arg(long = "max-queue", value_name = "MESSAGES", default_value_t = DEFAULT_MAX_QUEUE as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_queue: u64,

    /// In daemon mode, log to this file instead of syslog
    #[arg(long = "log-file", value_name = "PATH")]
    log_file: Option<PathBuf>,
}

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

    fn remove(&self) {
        match std::fs::read_to_string(&self.path) {
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
    };

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
        let (stop_r, stop_w) = UnixStream::pair().context("cannot create the signal pipe")?;
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::low_level::pipe::register(sig, stop_w.try_clone()?)
                .context("cannot install signal handlers")?;
        }
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
