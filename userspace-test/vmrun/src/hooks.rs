//! The host's side of the shared memory: what it writes into the backing
//! files before the guests boot, and what it checks there after them.

use crate::regions::Regions;
use anyhow::{Result, bail, ensure};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use vmrun_protocol::data::{
    self, CLI_GUEST_AT, CLI_GUEST_TEXT, CLI_HOST_AT, CLI_HOST_TEXT, GUEST_SEED, HOST_SEED,
    big_offsets, pattern,
};

/// The C example's text, as the host reads and writes it.
const TEXT_LEN: u64 = data::TEXT_LEN as u64;
const HOST_TEXT: &[u8] = data::HOST_TEXT.as_bytes();
const GUEST_TEXT: &[u8] = data::GUEST_TEXT.as_bytes();

fn fill(region: &Regions, name: &str, seed: u8) -> Result<()> {
    let path = region.path(name);
    let f = OpenOptions::new().write(true).open(&path)?;
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = buf.len().min((len - off) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(seed, off + i as u64);
        }
        f.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    let mut text = HOST_TEXT.to_vec();
    text.resize(TEXT_LEN as usize, 0);
    f.write_all_at(&text, 0)?;
    Ok(())
}

fn check(region: &Regions, name: &str, seed: u8) -> Result<()> {
    let path = region.path(name);
    let f = OpenOptions::new().read(true).open(&path)?;
    let len = f.metadata()?.len();
    let mut text = vec![0u8; TEXT_LEN as usize];
    f.read_exact_at(&mut text, 0)?;
    ensure!(
        text.starts_with(GUEST_TEXT) && text[GUEST_TEXT.len()] == 0,
        "the guest's C example did not leave {:?} at offset 0, found {:?}",
        String::from_utf8_lossy(GUEST_TEXT),
        String::from_utf8_lossy(&text)
    );
    let mut buf = vec![0u8; 1 << 20];
    let mut off = TEXT_LEN;
    while off < len {
        let n = buf.len().min((len - off) as usize);
        f.read_exact_at(&mut buf[..n], off)?;
        if let Some(i) = (0..n).find(|i| buf[*i] != pattern(seed, off + *i as u64)) {
            bail!(
                "byte {:#x}: the guest should have written {:#04x}, the host reads {:#04x}",
                off + i as u64,
                pattern(seed, off + i as u64),
                buf[i]
            );
        }
        off += n as u64;
    }
    Ok(())
}

/// Before boot: the host's pattern and text in region "shm".
pub fn host_writes(r: &Regions) -> Result<()> {
    fill(r, "shm", HOST_SEED)
}

/// After the guest: its pattern and text must be in region "shm".
pub fn guest_wrote(r: &Regions) -> Result<()> {
    check(r, "shm", GUEST_SEED)
}

/// Before boot: text in region "shm" for the guest's `ivshmem dump`.
pub fn cli_host_text(r: &Regions) -> Result<()> {
    let f = OpenOptions::new().write(true).open(r.path("shm"))?;
    f.write_all_at(CLI_HOST_TEXT, CLI_HOST_AT)?;
    Ok(())
}

/// After the guest: the text its `ivshmem write` put in region "shm",
/// with no newline after it.
pub fn cli_guest_text(r: &Regions) -> Result<()> {
    let f = OpenOptions::new().read(true).open(r.path("shm"))?;
    let mut got = vec![0u8; CLI_GUEST_TEXT.len() + 1];
    f.read_exact_at(&mut got, CLI_GUEST_AT)?;
    ensure!(
        got[..CLI_GUEST_TEXT.len()] == *CLI_GUEST_TEXT && got[CLI_GUEST_TEXT.len()] != b'\n',
        "the guest's `ivshmem write` did not leave {:?} at {CLI_GUEST_AT:#x}: the host reads {:?}",
        String::from_utf8_lossy(CLI_GUEST_TEXT),
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

/// Before boot, for the 4 GiB test: markers at the start, around the 4 GiB
/// line and at the end of region "big" (a sparse file: nothing else is
/// written).
pub fn big_markers(r: &Regions) -> Result<()> {
    let f = OpenOptions::new().write(true).open(r.path("big"))?;
    let len = f.metadata()?.len();
    for off in big_offsets(len) {
        f.write_all_at(&off.to_le_bytes(), off)?;
    }
    Ok(())
}

/// After the 4 GiB test: the guest wrote each marker's bitwise negation
/// right after it.
pub fn big_replies(r: &Regions) -> Result<()> {
    let f = OpenOptions::new().read(true).open(r.path("big"))?;
    let len = f.metadata()?.len();
    for off in big_offsets(len) {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, off + 8)?;
        ensure!(
            u64::from_le_bytes(b) == !off,
            "no reply from the guest at {:#x}",
            off + 8
        );
    }
    Ok(())
}
