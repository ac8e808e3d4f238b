//! What the host does for the guests while they run: their requests
//! (`# vmrun-request: ...` lines), such as hot-unplug and re-plug over QMP
//! or the host client's view of the server's peers.

use crate::qemu::Guest;
use crate::qmp::Qmp;
use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Backend objects added so far, to name new ones uniquely.
static PLUGS: AtomicUsize = AtomicUsize::new(0);

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
