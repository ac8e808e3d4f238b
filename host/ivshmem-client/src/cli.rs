//! The command line of `ivshmem-client`, shared by the binary and by the
//! man page and completion generator (`host/ivshmem-docgen`).

use clap::{Parser, Subcommand};
use ivshmem_proto::PeerId;
use std::path::PathBuf;
use std::time::Duration;

/// Exit status of `wait` when the timeout expires first.
pub const EXIT_TIMEOUT: u8 = 3;

/// A host peer of an ivshmem server: ring peers, wait for notifications,
/// read and write the shared memory.
#[derive(Debug, Parser)]
#[command(name = "ivshmem-client", version)]
pub struct Cli {
    /// Path to the server's unix socket
    #[arg(
        short = 'S',
        long = "socket",
        value_name = "SOCKET",
        default_value = "/tmp/ivshmem_socket"
    )]
    pub socket: PathBuf,

    /// Report every announcement (peers joining and leaving) on stderr
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Vectors per peer, if known; otherwise taken from the other peers, or
    /// when alone, from what arrives within 100 ms
    #[arg(short = 'n', long = "vectors", value_name = "N")]
    pub vectors: Option<usize>,

    /// Give up on the handshake after this many seconds (more than 0, at
    /// most 1000000000)
    #[arg(
        long = "connect-timeout",
        value_name = "SECONDS",
        default_value = "10",
        value_parser = positive_seconds,
        allow_negative_numbers = true
    )]
    pub connect_timeout: Duration,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A vector argument: a number or "all".
#[derive(Debug, Clone, Copy)]
pub enum VectorArg {
    /// One vector.
    One(usize),
    /// Every vector of the peer.
    All,
}

pub fn parse_vector(s: &str) -> Result<VectorArg, String> {
    if s == "all" {
        Ok(VectorArg::All)
    } else {
        s.parse()
            .map(VectorArg::One)
            .map_err(|_| format!("{s:?} is neither a vector number nor \"all\""))
    }
}

/// A byte count or offset (decimal or 0x hexadecimal, optionally K, M or
/// G): the one grammar of the ivshmem tools, from the library.
pub use ivshmem::parse_size as parse_num;

/// The longest timeout, in seconds (about 31 years): any longer is as
/// good as none, and could overflow a deadline on the clock.
pub const MAX_SECONDS: f64 = 1e9;

/// A number of seconds, 0 to [`MAX_SECONDS`], fractions allowed.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_nan() {
        Err(format!("{s:?} is not a number of seconds"))
    } else if v < 0.0 {
        Err(format!("{s} seconds is negative"))
    } else if v > MAX_SECONDS {
        Err(format!("{s} seconds is too long (at most {MAX_SECONDS})"))
    } else {
        Ok(Duration::from_secs_f64(v))
    }
}

/// A number of seconds, more than 0.
pub fn positive_seconds(s: &str) -> Result<Duration, String> {
    match seconds(s)? {
        Duration::ZERO => Err(format!("{s} seconds: must be more than 0")),
        d => Ok(d),
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this client's id, the shared memory size, its vectors and the peers
    Info {
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// List the other peers: "ID VECTORS" per line
    Peers {
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Dump this client and the peers with their vectors, as QEMU's client
    Dump,
    /// Ring a peer on one vector, or on all its vectors
    Ring {
        /// The peer's id
        peer: PeerId,
        /// A vector number, or "all"
        #[arg(value_parser = parse_vector)]
        vector: VectorArg,
    },
    /// Ring every vector of every other peer
    RingAll,
    /// Wait for notifications on this client's vectors and print them
    ///
    /// Prints "id ID" once connected, then "notify vector=V count=C" for each
    /// notification (C: rings since the previous line of that vector).
    Wait {
        /// Exit 0 once this many rings have arrived
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Exit 3 if they have not arrived after this many seconds (0 to
        /// 1000000000)
        #[arg(long, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
        timeout: Option<Duration>,
        /// Only count and print this vector
        #[arg(long, value_name = "V")]
        vector: Option<usize>,
    },
    /// Write LEN bytes of the shared memory at OFFSET to stdout (checked
    /// against the region's size first)
    Read {
        /// Offset in bytes (decimal, 0x hex, K/M/G suffixes)
        #[arg(value_parser = parse_num)]
        offset: u64,
        /// Length in bytes
        #[arg(value_parser = parse_num)]
        len: u64,
        /// As a hex dump instead of raw bytes
        #[arg(long)]
        hex: bool,
    },
    /// Write STRING into the shared memory at OFFSET
    Write {
        /// Offset in bytes (decimal, 0x hex, K/M/G suffixes)
        #[arg(value_parser = parse_num)]
        offset: u64,
        /// The bytes to write
        data: String,
    },
    /// Interactive: QEMU's client commands on stdin (the default)
    Shell,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_num("0"), Ok(0));
        assert_eq!(parse_num("4096"), Ok(4096));
        assert_eq!(parse_num("0x10"), Ok(16));
        assert_eq!(parse_num("4K"), Ok(4096));
        assert_eq!(parse_num("8G"), Ok(8 << 30));
        assert!(parse_num("x").is_err());
        assert!(parse_num("").is_err());
        assert!(parse_num("99999999999G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("1e9"), Ok(Duration::from_secs(1_000_000_000)));
        for bad in [
            "-1", "-0.5", "nan", "NaN", "inf", "-inf", "1e30", "1e20", "x", "",
        ] {
            assert!(seconds(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(positive_seconds("0").is_err());
        assert!(positive_seconds("0.001").is_ok());
    }

    #[test]
    fn vectors() {
        assert!(matches!(parse_vector("all"), Ok(VectorArg::All)));
        assert!(matches!(parse_vector("3"), Ok(VectorArg::One(3))));
        assert!(parse_vector("-1").is_err());
    }
}
