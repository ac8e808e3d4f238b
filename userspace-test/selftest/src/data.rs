//! Shared-memory patterns, the same the host writes and checks: they live
//! in the runner's protocol crate (`userspace-test/vmrun-protocol`).

pub use vmrun_protocol::data::*;

use crate::{TestResult, check, fail};

/// Checks that `buf`, a copy of the whole shared memory read `through`
/// some path, holds what the host wrote before boot
/// (`hooks::host_writes`): its text, then its pattern.
pub fn check_host_wrote(buf: &[u8], through: &str) -> TestResult {
    check!(
        buf.starts_with(HOST_TEXT.as_bytes()),
        "offset 0 holds {:?}, not the host's text (through {through})",
        String::from_utf8_lossy(&buf[..TEXT_LEN.min(buf.len())])
    );
    if let Some(i) = (TEXT_LEN..buf.len()).find(|i| buf[*i] != pattern(HOST_SEED, *i as u64)) {
        fail!(
            "byte {i:#x} is {:#04x}, the host wrote {:#04x} (through {through})",
            buf[i],
            pattern(HOST_SEED, i as u64)
        );
    }
    Ok(())
}

/// Fills `buf`, the whole shared memory's size, with what the host checks
/// after the guest (`hooks::guest_wrote`): the guest's text, then its
/// pattern.
pub fn guest_data(buf: &mut [u8]) {
    let text = GUEST_TEXT.as_bytes();
    buf[..TEXT_LEN].fill(0);
    buf[..text.len()].copy_from_slice(text);
    for (i, b) in buf.iter_mut().enumerate().skip(TEXT_LEN) {
        *b = pattern(GUEST_SEED, i as u64);
    }
}
