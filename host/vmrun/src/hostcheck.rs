//! What the host does for and to the guests: carrying out their requests
//! (hot-unplug and re-plug over QMP) and writing and checking the shared
//! memory from the host's side of the backing files.

use crate::Regions;
use crate::qemu::Guest;
use crate::qmp::Qmp;
use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Backend objects added so far, to name new ones uniquely.
static PLUGS: AtomicUsize = AtomicUsize::new(0);
use std::time::Duration;

/// What the host keeps while carrying out a scenario's requests.
#[derive(Debug, Default)]
pub struct HostCtx {
    /// What the host client saw of the peers.
    pub peers: Peers,
    /// Each guest's name and QEMU pid.
    pub pids: Vec<(String, u32)>,
    /// Guests killed on request.
    pub killed: Vec<String>,
    /// Host clients waiting for a guest's ring, their output, and what
    /// they wait for.
    pub waiters: Vec<Waiter>,
}

/// An `ivshmem-client` command on the scenario's server.
fn client(srv: &crate::qemu::ServerLink) -> std::process::Command {
    let mut c = std::process::Command::new(crate::server::tool("ivshmem-client"));
    c.arg("-S").arg(&srv.socket);
    c
}

/// A host client waiting for a guest's ring.
#[derive(Debug)]
pub struct Waiter {
    /// The `ivshmem-client wait` process.
    pub child: std::process::Child,
    /// Its standard output, past the `id` line.
    pub out: std::io::BufReader<std::process::ChildStdout>,
    /// The vector it waits on.
    pub vector: String,
    /// What it waits for, for messages.
    pub what: String,
}

/// Where a guest finds the id of the host client waiting for its ring.
pub fn host_id_slot(guest_id: u16) -> u64 {
    0x3000 + 8 * u64::from(guest_id)
}

/// The marked value at [`host_id_slot`].
pub fn host_id_value(host: u16) -> u64 {
    0x4057_0000_0000 | u64::from(host)
}

/// Carries out a guest's request:
/// - `device_del shm0` / `device_add shm0`: QMP hot-unplug and re-plug;
/// - `peers ID`: is peer ID in the host client's peer list? If so the host
///   acknowledges in the shared memory, at 4096 + 8 * ID;
/// - `host-ring PEER VECTOR`: the host client rings a guest;
/// - `host-wait ID VECTOR`: a host client waits for one ring on VECTOR and
///   leaves its own id at [`host_id_slot`]`(ID)` for guest ID to ring;
/// - `kill NAME`: kill guest NAME's QEMU.
pub fn carry_out(g: &Guest, req: &str, ctx: &mut HostCtx) -> Result<()> {
    let words: Vec<&str> = req.split_whitespace().collect();
    let peers = &mut ctx.peers;
    match words.as_slice() {
        ["kill", name, rest @ ..] => {
            let (_, pid) = ctx
                .pids
                .iter()
                .find(|(n, _)| n == name)
                .with_context(|| format!("no guest {name}"))?;
            let pid = rustix::process::Pid::from_raw(*pid as i32).context("bad pid")?;
            rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
            ctx.killed.push((*name).to_string());
            // `kill NAME PEER`: once the server has seen peer PEER go, say
            // so in the shared memory at KILL_ACK, for the guest to wait on.
            if let [peer] = rest {
                let peer: u16 = peer.parse().context("bad peer id")?;
                let srv = g
                    .server
                    .as_ref()
                    .context("no ivshmem server in this scenario")?;
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while peer_ids(srv)?.contains(&u64::from(peer)) {
                    ensure!(
                        std::time::Instant::now() < deadline,
                        "the server still lists peer {peer} 10 s after its guest was killed"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                let f = OpenOptions::new().write(true).open(&srv.shm)?;
                f.write_all_at(&ack(peer).to_le_bytes(), KILL_ACK)?;
            }
            Ok(())
        }
        ["host-ring", peer, vector] => {
            let srv = g
                .server
                .as_ref()
                .context("no ivshmem server in this scenario")?;
            let out = client(srv)
                .args(["ring", peer, vector])
                .output()
                .context("running ivshmem-client ring")?;
            ensure!(
                out.status.success(),
                "ivshmem-client ring failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        }
        ["host-wait", id, vector] => {
            let id: u16 = id.parse().context("bad guest id")?;
            let srv = g
                .server
                .as_ref()
                .context("no ivshmem server in this scenario")?;
            let mut child = client(srv)
                .args([
                    "wait",
                    "--count",
                    "1",
                    "--timeout",
                    "60",
                    "--vector",
                    vector,
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("running ivshmem-client wait")?;
            let mut first = String::new();
            let mut out = std::io::BufReader::new(child.stdout.take().context("no stdout")?);
            std::io::BufRead::read_line(&mut out, &mut first)?;
            let host: u16 = first
                .trim()
                .strip_prefix("id ")
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("ivshmem-client wait said {first:?}"))?;
            let f = OpenOptions::new().write(true).open(&srv.shm)?;
            f.write_all_at(&host_id_value(host).to_le_bytes(), host_id_slot(id))?;
            ctx.waiters.push(Waiter {
                child,
                out,
                vector: (*vector).to_string(),
                what: format!("host client {host} waiting for guest {id} on vector {vector}"),
            });
            Ok(())
        }
        ["peers", id] => {
            let id: u16 = id.parse().context("bad peer id")?;
            let srv = g
                .server
                .as_ref()
                .context("no ivshmem server in this scenario")?;
            let ids = peer_ids(srv)?;
            println!("# host: ivshmem-client peers: {ids:?}");
            ensure!(
                ids.contains(&u64::from(id)),
                "peer {id} is not in the host client's list {ids:?}"
            );
            peers.confirmed.push(id);
            peers.listings.push(ids);
            let f = OpenOptions::new().write(true).open(&srv.shm)?;
            f.write_all_at(&ack(id).to_le_bytes(), 4096 + 8 * u64::from(id))?;
            Ok(())
        }
        ["device_del", id] => {
            let mut q = Qmp::connect(&g.qmp)?;
            q.execute("device_del", json!({ "id": id }))?;
            // Completes only when the guest lets go (pciehp takes ~5 s).
            q.wait_event("DEVICE_DELETED", Duration::from_secs(60), |d| {
                d.get("device").and_then(|v| v.as_str()) == Some(id)
            })
        }
        ["device_add", id] => {
            let i = id
                .strip_prefix("shm")
                .and_then(|n| n.parse::<usize>().ok())
                .with_context(|| format!("bad device id {id}"))?;
            let (path, size) = g.plain.get(i).with_context(|| format!("no device {id}"))?;
            let mut q = Qmp::connect(&g.qmp)?;
            // QEMU 7.2 asserts (qemu_ram_set_idstr) when a device is added
            // again on the memory backend of a deleted one, so each plug
            // gets a fresh backend object on the same file: same memory.
            let mem = format!("mem{i}-{}", PLUGS.fetch_add(1, Ordering::Relaxed));
            q.execute(
                "object-add",
                json!({ "qom-type": "memory-backend-file", "id": mem, "size": size,
                        "share": true, "mem-path": path }),
            )?;
            let mut args = json!({ "driver": "ivshmem-plain", "id": id, "memdev": mem });
            if i == 0 {
                args["bus"] = json!("rp0");
            }
            q.execute("device_add", args).map(|_| ())
        }
        _ => bail!("unknown request"),
    }
}

/// The host's acknowledgement for peer `id`.
/// Where the host acknowledges `kill NAME PEER` in the shared memory.
pub const KILL_ACK: u64 = 0x3800;

/// The peer ids the server lists (`ivshmem-client peers --json`).
fn peer_ids(srv: &crate::qemu::ServerLink) -> Result<Vec<u64>> {
    let out = client(srv)
        .args(["peers", "--json"])
        .output()
        .context("running ivshmem-client")?;
    ensure!(
        out.status.success(),
        "ivshmem-client peers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(list
        .as_array()
        .context("peers --json is not an array")?
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect())
}

pub fn ack(id: u16) -> u64 {
    0xacc0_0000 | u64::from(id)
}

/// What the host client saw of the peers during a doorbell scenario.
#[derive(Debug, Default)]
pub struct Peers {
    /// IVPositions the guests reported and the host confirmed.
    pub confirmed: Vec<u16>,
    /// Every peer list the host client printed.
    pub listings: Vec<Vec<u64>>,
}

/// Every guest reported a distinct IVPosition, and one listing of the host
/// client held them all at once.
pub fn distinct_peers(p: &Peers, guests: usize) -> Result<()> {
    let mut s = p.confirmed.clone();
    s.sort_unstable();
    s.dedup();
    ensure!(
        s.len() == p.confirmed.len() && s.len() == guests,
        "{guests} guests, but the host confirmed peers {:?}",
        p.confirmed
    );
    ensure!(
        p.listings
            .iter()
            .any(|l| s.iter().all(|id| l.contains(&u64::from(*id)))),
        "no peer list of the host client showed all of {s:?}: {:?}",
        p.listings
    );
    Ok(())
}

/// The test pattern: byte `off` of a region written with `seed`. The
/// in-guest tests compute the same (`userspace-test/selftest/src/data.rs`).
pub fn pattern(seed: u8, off: u64) -> u8 {
    ((off >> 12) as u8) ^ (off as u8).wrapping_mul(31) ^ seed
}

/// Where the text of the C example lives: the first 64 bytes.
pub const TEXT_LEN: u64 = 64;
/// What the host leaves there for the guest.
pub const HOST_TEXT: &[u8] = b"hello from the host";
/// What the guest's C example writes back.
pub const GUEST_TEXT: &[u8] = b"hello from C";
/// Pattern seed the host writes.
pub const HOST_SEED: u8 = 0x5a;
/// Pattern seed the guest writes.
pub const GUEST_SEED: u8 = 0xa5;

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

/// Where the host leaves text for the `ivshmem dump` test, and the text
/// (as the selftest's `data::CLI_HOST_*`).
const CLI_HOST_AT: u64 = 0x4000;
const CLI_HOST_TEXT: &[u8] = b"the host wrote this for ivshmem dump";
/// Where the guest's `ivshmem write` leaves its text (`data::CLI_GUEST_*`).
const CLI_GUEST_AT: u64 = 0x5000;
const CLI_GUEST_TEXT: &[u8] = b"ivshmem write was here";

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

/// The marker offsets of a region of `len` bytes (the guest uses the same).
pub fn big_offsets(len: u64) -> Vec<u64> {
    let mut v = vec![0, len / 2, len - 4096];
    if len > 1 << 32 {
        v.push((1 << 32) - 16);
        v.push(1 << 32);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_offsets_cross_4g() {
        let v = big_offsets(8 << 30);
        assert!(v.contains(&(1 << 32)));
        assert!(v.iter().all(|o| o + 16 <= 8 << 30));
    }

    #[test]
    fn pattern_varies() {
        let a: Vec<u8> = (0..4096).map(|o| pattern(1, o)).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]));
        assert_ne!(pattern(1, 0), pattern(2, 0));
        assert_ne!(pattern(1, 0), pattern(1, 4096));
    }
}
