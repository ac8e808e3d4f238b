//! The command line of `ivshmem-server`, shared by the binary and by the
//! man page and completion generator (`host/ivshmem-docgen`).

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::config::{self, DEFAULT_MAX_PEERS, DEFAULT_MAX_QUEUE, DEFAULT_SOCKET, MAX_VECTORS};
use crate::ids::IdAllocator;

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
pub struct Args {
    /// Show this help
    #[arg(short = 'h', long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,

    /// Verbose mode: also log every connection detail
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Foreground mode (default is to daemonize)
    #[arg(short = 'F', long = "foreground")]
    pub foreground: bool,

    /// Path to the PID file [daemon mode default: /var/run/ivshmem-server.pid;
    /// in the foreground, written only if given]
    #[arg(short = 'p', long = "pidfile", value_name = "PIDFILE")]
    pub pidfile: Option<PathBuf>,

    /// Path to the unix socket to listen to
    #[arg(short = 'S', long = "socket", value_name = "SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// POSIX shared memory object to use [default: ivshmem]
    #[arg(
        short = 'M',
        long = "shm-name",
        value_name = "NAME",
        conflicts_with = "shm_dir"
    )]
    pub shm_name: Option<String>,

    /// Where to create the shared memory: an unlinked file in DIR, e.g. a
    /// hugetlbfs mount
    #[arg(short = 'm', long = "shm-dir", value_name = "DIR")]
    pub shm_dir: Option<PathBuf>,

    /// Size of the shared memory in bytes
    #[arg(short = 'l', long = "size", value_name = "SIZE", default_value = "4M",
          value_parser = config::parse_size)]
    pub size: u64,

    /// Number of vectors (eventfds) per peer, 1 to 256
    #[arg(short = 'n', long = "vectors", value_name = "VECTORS", default_value_t = config::DEFAULT_VECTORS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VECTORS)))]
    pub vectors: u32,

    /// Drop a client once this many descriptors beyond its handshake wait
    /// for it (a client that does not read its socket while peers join)
    #[arg(long = "max-queue", value_name = "DESCRIPTORS", default_value_t = DEFAULT_MAX_QUEUE as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queue: u64,

    /// Refuse connections beyond this many peers, 1 to 65536
    #[arg(long = "max-peers", value_name = "PEERS", default_value_t = DEFAULT_MAX_PEERS as u64,
          value_parser = clap::value_parser!(u64).range(1..=IdAllocator::CAPACITY as u64))]
    pub max_peers: u64,

    /// In daemon mode, log to this file instead of syslog
    #[arg(long = "log-file", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}
