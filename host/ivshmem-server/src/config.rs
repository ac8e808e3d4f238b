//! Defaults, limits and argument parsing helpers.

use std::path::PathBuf;

/// Default socket path, as QEMU's server.
pub const DEFAULT_SOCKET: &str = "/tmp/ivshmem_socket";
/// Default POSIX shared memory name, as QEMU's server.
pub const DEFAULT_SHM_NAME: &str = "ivshmem";
/// Default size, as QEMU's server: 4 MiB.
pub const DEFAULT_SIZE: u64 = 4 << 20;
/// Default pid file, as QEMU's server.
pub const DEFAULT_PIDFILE: &str = "/var/run/ivshmem-server.pid";
/// Default number of vectors per peer, as QEMU's server.
pub const DEFAULT_VECTORS: u32 = 1;
/// Most vectors per peer: QEMU's doorbell register carries the vector in its
/// low 8 bits, so a guest can ring at most 256 vectors of a peer.
pub const MAX_VECTORS: u32 = 256;
/// Largest region: 2^62 bytes, the largest power of two an `off_t` holds
/// with room to spare.
pub const MAX_SIZE: u64 = 1 << 62;
/// Default bound on the descriptors waiting for one client beyond its
/// handshake: a client this far behind is not reading and is dropped.
pub const DEFAULT_MAX_QUEUE: usize = 1 << 18;
/// Default bound on the number of peers connected at once: far more than
/// QEMU's server could serve (about 500, with `select()`). Each costs the
/// server a socket, one eventfd per vector and about 0.3 KiB (measured:
/// 4096 peers that read nothing after the shared memory, 3.7 MB of RSS in
/// all), plus up to about 48 KiB of kernel memory in its socket buffer.
pub const DEFAULT_MAX_PEERS: usize = 4096;

/// Where the shared memory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShmBacking {
    /// A POSIX shared memory object (`shm_open`), kept after exit.
    Posix(String),
    /// An unlinked file in this directory, e.g. a hugetlbfs mount.
    Dir(PathBuf),
}

/// What the server serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The listening socket's path.
    pub socket: PathBuf,
    /// Where the shared memory lives.
    pub backing: ShmBacking,
    /// Requested size in bytes, rounded up to a power of two (and to the
    /// huge page size on hugetlbfs).
    pub size: u64,
    /// Eventfds per peer, 1..=[`MAX_VECTORS`].
    pub vectors: u32,
    /// Bound on the descriptors waiting for a client beyond its handshake.
    pub max_queue: usize,
    /// Most peers connected at once, 1..=65536; more are refused.
    pub max_peers: usize,
}

impl Config {
    /// QEMU's defaults, with the socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            backing: ShmBacking::Posix(DEFAULT_SHM_NAME.into()),
            size: DEFAULT_SIZE,
            vectors: DEFAULT_VECTORS,
            max_queue: DEFAULT_MAX_QUEUE,
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

/// Parses a size like QEMU's `-l`: a decimal number (fractions allowed with
/// a unit) optionally followed by one of `B`, `K`, `M`, `G`, `T`, `P`, `E`
/// (any case, powers of 1024), or a `0x` hexadecimal number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty size".into());
    }
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16)
            .map_err(|_| format!("invalid size {s:?}: bad hexadecimal number"));
    }
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        "E" => 60,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use B, K, M, G, T, P or E)"
            ));
        }
    };
    let too_big = || format!("invalid size {s:?}: too large");
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "invalid size {s:?}: expected a number with an optional unit"
        ));
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_big())?
    };
    let mut value = int.checked_mul(1u128 << shift).ok_or_else(too_big)?;
    if !frac.is_empty() {
        let frac = &frac[..frac.len().min(18)];
        let f: u128 = frac.parse().map_err(|_| format!("invalid size {s:?}"))?;
        let part = (f << shift) / 10u128.pow(frac.len() as u32);
        if shift == 0 && f != 0 {
            return Err(format!("invalid size {s:?}: fractional bytes"));
        }
        value += part;
    }
    u64::try_from(value).map_err(|_| too_big())
}

/// Rounds a requested size up to a power of two, as QEMU's server does.
pub fn round_size(requested: u64) -> Result<u64, String> {
    if requested == 0 {
        return Err("size must not be 0".into());
    }
    if requested > MAX_SIZE {
        return Err(format!(
            "size {requested} is too large (at most {MAX_SIZE} bytes)"
        ));
    }
    Ok(requested.next_power_of_two())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("0.5G"), Ok(1 << 29));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size(" 2M "), Ok(2 << 20));
        for bad in [
            "",
            "M",
            "abc",
            "1X",
            "1MB",
            "-1",
            "1.5",
            "16E",
            "1..2M",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn rounding() {
        assert_eq!(round_size(3 << 20), Ok(4 << 20));
        assert_eq!(round_size(4 << 20), Ok(4 << 20));
        assert_eq!(round_size(1), Ok(1));
        assert_eq!(round_size(5 << 30), Ok(8 << 30));
        assert_eq!(round_size(MAX_SIZE), Ok(MAX_SIZE));
        assert!(round_size(0).is_err());
        assert!(round_size(MAX_SIZE + 1).is_err());
    }
}
