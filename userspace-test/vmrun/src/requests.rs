//! What the host does for the guests while they run: their requests
//! (`# vmrun-request: ...` lines), such as hot-unplug and re-plug over QMP,
//! the host client's view of the server's peers, or a walk of a guest
//! process's page tables ([`crate::ptwalk`]).

use crate::qemu::{Guest, ServerLink};
use crate::qmp::Qmp;
use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vmrun_protocol::{Request, server_shm};

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
fn client(srv: &ServerLink) -> std::process::Command {
    let mut c = std::process::Command::new(crate::server::tool("ivshmem-client"));
    c.arg("-S").arg(&srv.socket);
    // A waiting client must not outlive an interrupted runner.
    crate::qemu::die_with_runner(&mut c);
    c
}

/// A host client waiting for a guest's ring.
#[derive(Debug)]
pub struct Waiter {
    /// The IVPosition of the guest whose ring it waits for.
    pub guest: u16,
    /// Its own id on the server.
    pub host: u16,
    /// The `ivshmem-client wait` process.
    pub child: std::process::Child,
    /// Its standard output, past the `id` line.
    pub out: std::io::BufReader<std::process::ChildStdout>,
    /// The vector it waits on.
    pub vector: String,
    /// What it waits for, for messages.
    pub what: String,
}

impl Waiter {
    /// Waits up to `limit` for the client to exit (it does once it got the
    /// ring, or timed out): its exit status, or `None` if it still runs.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return None,
            }
        }
    }
}

/// Carries out a guest's request (see [`Request`] for what each does).
/// `progress` is the caller's.
pub fn carry_out(g: &Guest, req: &Request, ctx: &mut HostCtx) -> Result<()> {
    let server = || {
        g.server
            .as_ref()
            .context("no ivshmem server in this scenario")
    };
    match req {
        Request::Kill { guest, peer } => {
            let (_, pid) = ctx
                .pids
                .iter()
                .find(|(n, _)| n == guest)
                .with_context(|| format!("no guest {guest}"))?;
            let pid = rustix::process::Pid::from_raw(*pid as i32).context("bad pid")?;
            rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
            ctx.killed.push(guest.clone());
            // Once the server has seen the peer go, say so in the shared
            // memory, for the guest to wait on.
            if let Some(peer) = *peer {
                let srv = server()?;
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                // Each look is a client joining and leaving the server in
                // front of the surviving guests: few, spaced out more and
                // more (20 ms, doubling up to 640 ms).
                let mut pause = Duration::from_millis(20);
                while peer_ids(srv)?.contains(&u64::from(peer)) {
                    ensure!(
                        std::time::Instant::now() < deadline,
                        "the server still lists peer {peer} 10 s after its guest was killed"
                    );
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(640));
                }
                write_u64(srv, server_shm::KILL_ACK, server_shm::ack(peer))?;
            }
            Ok(())
        }
        Request::HostRing { peer, vector } => {
            client_run(server()?, &["ring", &peer.to_string(), &vector.to_string()])?;
            Ok(())
        }
        Request::HostWait { guest, vector } => {
            let srv = server()?;
            let vector = vector.to_string();
            let mut child = client(srv)
                .args([
                    "wait",
                    "--count",
                    "1",
                    "--timeout",
                    "60",
                    "--vector",
                    &vector,
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
            write_u64(
                srv,
                server_shm::host_id_slot(*guest),
                server_shm::host_id_value(host),
            )?;
            ctx.waiters.push(Waiter {
                guest: *guest,
                host,
                child,
                out,
                what: format!("host client {host} waiting for guest {guest} on vector {vector}"),
                vector,
            });
            Ok(())
        }
        Request::HostGot(guest) => {
            let srv = server()?;
            let w = ctx
                .waiters
                .iter_mut()
                .rev()
                .find(|w| w.guest == *guest)
                .with_context(|| format!("no host client waits for guest {guest}"))?;
            // `wait --count 1` exits, successfully, once it has the ring.
            let got = w
                .exited_within(Duration::from_secs(1))
                .is_some_and(|s| s.success());
            write_u64(
                srv,
                server_shm::host_id_slot(*guest),
                server_shm::host_got_value(got, w.host),
            )
        }
        Request::Peers(id) => {
            let srv = server()?;
            let ids = peer_ids(srv)?;
            println!("# host: ivshmem-client peers: {ids:?}");
            ensure!(
                ids.contains(&u64::from(*id)),
                "peer {id} is not in the host client's list {ids:?}"
            );
            ctx.peers.confirmed.push(*id);
            ctx.peers.listings.push(ids);
            write_u64(srv, server_shm::peer_ack_slot(*id), server_shm::ack(*id))
        }
        Request::DeviceDel(id) => {
            let mut q = Qmp::connect(&g.qmp)?;
            // A plain device's memory backend, to delete with it: a re-plug
            // gets a new one (below), so each cycle would otherwise leave
            // one behind. A doorbell device has none (its memory comes from
            // the server) and is not plugged in again.
            let memdev = match q.device_type(id)?.as_str() {
                "ivshmem-doorbell" => None,
                _ => Some(q.memdev(id)?),
            };
            q.execute("device_del", json!({ "id": id }))?;
            // Completes only when the guest lets go (its ACPI eject).
            q.wait_event("DEVICE_DELETED", Duration::from_secs(60), |d| {
                d.get("device").and_then(|v| v.as_str()) == Some(id.as_str())
            })?;
            let Some(memdev) = memdev else {
                return Ok(());
            };
            // The device has unmapped it (ivshmem's unrealize), so QEMU
            // lets it go.
            let backend = memdev.rsplit('/').next().unwrap_or(&memdev);
            q.execute("object-del", json!({ "id": backend }))
                .with_context(|| format!("deleting {id}'s memory backend {memdev}"))
                .map(|_| ())
        }
        Request::DeviceAdd(id) => {
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
        Request::PtWalk(w) => {
            // pmemsave's output, next to the guest's logs.
            let scratch = g.qmp.with_file_name("ptwalk-table.bin");
            crate::ptwalk::carry_out(&g.qmp, &scratch, w)
        }
        Request::Progress(_) => bail!("progress is not the host's to carry out"),
    }
}

/// Writes `value` (little endian) at `offset` of the server's shared
/// memory, where a guest waits for it.
fn write_u64(srv: &ServerLink, offset: usize, value: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(&srv.shm)
        .with_context(|| format!("opening {}", srv.shm.display()))?;
    f.write_all_at(&value.to_le_bytes(), offset as u64)
        .with_context(|| format!("writing at {offset:#x} of {}", srv.shm.display()))
}

/// Runs `ivshmem-client ARGS` on the scenario's server to the end; its
/// standard output, or an error with its standard error.
fn client_run(srv: &ServerLink, args: &[&str]) -> Result<Vec<u8>> {
    let out = client(srv)
        .args(args)
        .output()
        .with_context(|| format!("running ivshmem-client {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "ivshmem-client {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// The peer ids the server lists (`ivshmem-client peers --json`).
fn peer_ids(srv: &ServerLink) -> Result<Vec<u64>> {
    let out = client_run(srv, &["peers", "--json"])?;
    let list: serde_json::Value = serde_json::from_slice(&out)?;
    Ok(list
        .as_array()
        .context("peers --json is not an array")?
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect())
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
