//! The command line of `ivshmem`, shared by the binary and by the man page
//! and completion generator (`host/ivshmem-docgen`).

use clap::{Parser, Subcommand, ValueEnum, ValueHint};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Exit status of any failure that is not a usage error.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of a usage error (clap's, as coreutils').
pub const EXIT_USAGE: u8 = 2;
/// Exit status of `wait` when the timeout passed with no doorbell, as
/// `timeout(1)`'s.
pub const EXIT_TIMEOUT: u8 = 124;

const AFTER_HELP: &str = "\
DEV is a device: its index N (for /dev/ivshmemN), or a path such as \
/dev/ivshmem0 or /dev/ivshmem/by-path/pci-0000:00:03.0.
OFFSET and LEN are bytes: decimal, 0x hexadecimal, or with a K, M or G \
suffix (powers of 1024); OFFSET + LEN must lie within the device.

Exit status: 0 on success; 1 on failure (the device, the system, a range \
outside the device); 2 on a usage error; 124 when `wait` timed out.";

/// Look at and poke ivshmem devices (/dev/ivshmemN)
///
/// Lists QEMU inter-VM shared memory devices, shows what each is, dumps and
/// writes its shared memory, rings peers and waits for doorbells, through
/// the ivshmem guest driver.
#[derive(Debug, Parser)]
#[command(name = "ivshmem", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every device: node, PCI address, size, IVPosition, vectors, cache mode
    ///
    /// Reads sysfs, so it needs no access to the device nodes. The cache
    /// mode is BAR2's memtype, from the PAT memtype list in debugfs ("wb",
    /// "wc", "uc-"): that of the device's current mappings or, when nothing
    /// maps it, the mode of the last ones (write-back after the driver
    /// binds; a first mapping in another mode replaces it). "none" when the
    /// driver holds no memtype for it, "?" when the list cannot be read (it
    /// needs root and debugfs).
    List {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show what a device is: the INFO ioctl, the PCI address and the cache mode
    ///
    /// Opens the device read-only: read permission on the node is enough,
    /// as for `wait`.
    Info {
        /// The device: N, /dev/ivshmemN or a /dev/ivshmem/by-path/ link
        #[arg(value_name = "DEV", value_hint = ValueHint::FilePath)]
        dev: String,
        /// Print a JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print LEN bytes of the shared memory at OFFSET, as `hexdump -C` does
    ///
    /// Offsets in the dump are the device's. Lines equal to the previous
    /// one are shown as a single "*", as hexdump does, unless -v is given.
    Dump {
        /// The device: N, /dev/ivshmemN or a /dev/ivshmem/by-path/ link
        #[arg(value_name = "DEV", value_hint = ValueHint::FilePath)]
        dev: String,
        /// Where to start, in bytes from the start of the shared memory
        #[arg(value_name = "OFFSET", value_parser = parse_num)]
        offset: u64,
        /// How many bytes
        #[arg(value_name = "LEN", value_parser = parse_num)]
        len: u64,
        /// Show every line, also those equal to the previous one
        #[arg(short = 'v', long = "no-squeeze")]
        no_squeeze: bool,
        /// Write the bytes themselves to standard output, not a hex dump
        #[arg(long, conflicts_with = "no_squeeze")]
        raw: bool,
        /// Cache mode of the mapping
        #[arg(long, value_enum, value_name = "MODE", default_value_t = Cache::Auto)]
        cache: Cache,
    },
    /// Write STRING, or standard input for "-", into the shared memory at OFFSET
    ///
    /// Writes the bytes as given, without a trailing newline. Nothing is
    /// written when they would not fit before the end of the device.
    Write {
        /// The device: N, /dev/ivshmemN or a /dev/ivshmem/by-path/ link
        #[arg(value_name = "DEV", value_hint = ValueHint::FilePath)]
        dev: String,
        /// Where to write, in bytes from the start of the shared memory
        #[arg(value_name = "OFFSET", value_parser = parse_num)]
        offset: u64,
        /// The bytes to write, or "-" to read them from standard input
        #[arg(value_name = "STRING|-", allow_hyphen_values = true)]
        data: OsString,
        /// Cache mode of the mapping
        #[arg(long, value_enum, value_name = "MODE", default_value_t = Cache::Auto)]
        cache: Cache,
    },
    /// Interrupt peer PEER on VECTOR (ivshmem-doorbell devices)
    ///
    /// QEMU silently drops a ring to a peer or vector that does not exist,
    /// so success means the doorbell was written, not that anyone heard it.
    Ring {
        /// The device: N, /dev/ivshmemN or a /dev/ivshmem/by-path/ link
        #[arg(value_name = "DEV", value_hint = ValueHint::FilePath)]
        dev: String,
        /// The peer's id (its IVPosition), 0 to 65535
        #[arg(value_name = "PEER")]
        peer: u16,
        /// The vector to raise at the peer, 0 to 255
        #[arg(value_name = "VECTOR", value_parser = clap::value_parser!(u16).range(0..256))]
        vector: u16,
    },
    /// Wait for a doorbell on this device and print what rang
    ///
    /// Returns once at least one doorbell rang after the device was opened,
    /// printing one line per vector that rang: "vector=V count=C
    /// timestamp_ns=T" (C: interrupts, which QEMU may merge; T: the
    /// CLOCK_MONOTONIC time of the latest). Exits 124 when the timeout
    /// passes first.
    Wait {
        /// The device: N, /dev/ivshmemN or a /dev/ivshmem/by-path/ link
        #[arg(value_name = "DEV", value_hint = ValueHint::FilePath)]
        dev: String,
        /// Only wake for this vector (repeatable); others stay pending
        #[arg(long, value_name = "V", value_parser = clap::value_parser!(u16).range(0..256))]
        vector: Vec<u16>,
        /// Give up after this many seconds (fractions allowed), exiting 124
        #[arg(long, value_name = "SECONDS", value_parser = parse_secs)]
        timeout: Option<Duration>,
        /// Print a JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

/// How `dump` and `write` map the shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cache {
    /// Write-back, or the mode of the device's current mappings (the CPU
    /// forbids mixing modes)
    Auto,
    /// Write-back
    Wb,
    /// Write-combining
    Wc,
    /// Uncached (UC-)
    Uc,
}

/// A byte count or offset (decimal or 0x hexadecimal, optionally K, M or
/// G): the one grammar of the ivshmem tools, from the library.
pub use ivshmem::parse_size as parse_num;

/// A number of seconds, fractions allowed.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// The device node a DEV argument names: `N` is `/dev/ivshmemN`, anything
/// else is a path.
pub fn node_path(dev: &str) -> PathBuf {
    if !dev.is_empty() && dev.bytes().all(|b| b.is_ascii_digit()) {
        PathBuf::from(format!("/dev/ivshmem{dev}"))
    } else {
        PathBuf::from(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_num("4096"), Ok(4096));
        assert_eq!(parse_num("0x1000"), Ok(4096));
        assert_eq!(parse_num("4K"), Ok(4096));
        assert_eq!(parse_num("2M"), Ok(2 << 20));
        assert_eq!(parse_num("0x10k"), Ok(16 << 10));
        assert!(parse_num("").is_err());
        assert!(parse_num("-1").is_err());
        assert!(parse_num("12x").is_err());
        assert!(parse_num("18446744073709551615").is_ok());
        assert!(parse_num("18446744073709551616").is_err());
        assert!(parse_num("0xffffffffffffffffK").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("inf").is_err());
    }

    #[test]
    fn device_arguments() {
        assert_eq!(node_path("3"), PathBuf::from("/dev/ivshmem3"));
        assert_eq!(node_path("/dev/ivshmem0"), PathBuf::from("/dev/ivshmem0"));
        assert_eq!(
            node_path("/dev/ivshmem/by-path/pci-0000:00:03.0"),
            PathBuf::from("/dev/ivshmem/by-path/pci-0000:00:03.0")
        );
        assert_eq!(node_path("ivshmem0"), PathBuf::from("ivshmem0"));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["ivshmem"][..],
            &["ivshmem", "ring", "0", "1", "256"],
            &["ivshmem", "ring", "0", "65536", "0"],
            &["ivshmem", "dump", "0", "0x", "16"],
            &["ivshmem", "wait", "0", "--timeout", "-1"],
            &["ivshmem", "frobnicate"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
        }
        let ok = Cli::try_parse_from(["ivshmem", "write", "0", "16", "-"]).unwrap();
        assert!(matches!(ok.command, Command::Write { ref data, .. } if data == "-"));
    }
}
