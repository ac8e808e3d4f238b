//! Shared-memory patterns, the same the host writes and checks
//! (`host/vmrun/src/hostcheck.rs`).

/// Byte `off` of a region written with `seed`.
pub fn pattern(seed: u8, off: u64) -> u8 {
    ((off >> 12) as u8) ^ (off as u8).wrapping_mul(31) ^ seed
}

/// The first bytes hold text for the C example.
pub const TEXT_LEN: usize = 64;
/// Text the host leaves at offset 0.
pub const HOST_TEXT: &str = "hello from the host";
/// Text the C example writes back.
pub const GUEST_TEXT: &str = "hello from C";
/// Pattern seed of the host.
pub const HOST_SEED: u8 = 0x5a;
/// Pattern seed of the guest.
pub const GUEST_SEED: u8 = 0xa5;

/// Marker offsets for a region of `len` bytes (as `hostcheck::big_offsets`).
pub fn big_offsets(len: u64) -> Vec<u64> {
    let mut v = vec![0, len / 2, len - 4096];
    if len > 1 << 32 {
        v.push((1 << 32) - 16);
        v.push(1 << 32);
    }
    v
}

/// Where the host leaves text for the `ivshmem dump` test (the `cli`
/// scenario), and the text (as `hostcheck::CLI_HOST_*`).
pub const CLI_HOST_AT: u64 = 0x4000;
/// The host's text for `ivshmem dump`.
pub const CLI_HOST_TEXT: &[u8] = b"the host wrote this for ivshmem dump";
/// Where the `ivshmem write` test leaves its text for the host to check.
pub const CLI_GUEST_AT: u64 = 0x5000;
/// The text `ivshmem write` leaves.
pub const CLI_GUEST_TEXT: &[u8] = b"ivshmem write was here";
