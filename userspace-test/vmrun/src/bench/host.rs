//! The host-only benchmarks: memcpy of a backing file, and our
//! ivshmem-server with many peers.

use super::MIB;
use super::stats::Set;
use crate::regions::ShmFile;
use anyhow::{Context, Result};
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Copies `bw` bytes of a `file_size` file in /dev/shm to and from a buffer
/// in RAM, as QEMU's backing file: the physical limit of the guests'
/// bandwidth.
pub(super) fn host_memcpy(file_size: u64, bw: u64, reps: u64, case: &str) -> Result<Vec<Set>> {
    let path = PathBuf::from(format!("/dev/shm/ivshmem-bench.{}", std::process::id()));
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let _rm = ShmFile::track(path.clone());
    f.set_len(file_size)?;
    let shm = ivshmem_proto::SharedMemory::map(&f, file_size)?;
    let len = bw as usize;
    let mut buf = vec![1u8; len];
    let rate = |ns: f64| bw as f64 / (1u64 << 30) as f64 / (ns / 1e9);
    // The first pass allocates the file's pages (as the guest's first
    // touch did): not measured.
    // SAFETY: The mapping `shm` holds all `file_size` >= `len` bytes and lives
    // until the end of this function; `buf` is a distinct allocation of `len`
    // bytes, so the ranges do not overlap; nobody else maps the file (its name
    // is this process's own).
    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), shm.as_ptr(), len) };
    let (mut r, mut w) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        // SAFETY: As for the first pass: `len` bytes of the live mapping `shm`
        // into the distinct `len`-byte buffer `buf`.
        unsafe { std::ptr::copy_nonoverlapping(shm.as_ptr(), buf.as_mut_ptr(), len) };
        std::hint::black_box(&buf);
        r.push(rate(t.elapsed().as_nanos() as f64));
        let t = Instant::now();
        // SAFETY: As for the first pass: `len` bytes of `buf` into the live
        // mapping `shm`, which holds at least `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), shm.as_ptr(), len) };
        w.push(rate(t.elapsed().as_nanos() as f64));
    }
    let set = |metric: &str, samples: Vec<f64>| Set {
        bench: "mapping".into(),
        case: case.into(),
        metric: metric.into(),
        unit: "GiB/s".into(),
        contender: "host memcpy of the backing file".into(),
        source: "host".into(),
        samples,
    };
    Ok(vec![set("sequential read", r), set("sequential write", w)])
}

/// A process's resident set size in KiB.
fn rss_kib(pid: u32) -> Option<f64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Our ivshmem-server with many peers: connects peers one after the other
/// (each with the protocol's handshake, 1 vector), and at each count of
/// `peers` records the server's RSS and the connect times of the last
/// peers to join.
pub(super) fn server_peers(peers: &[usize], dir: &Path) -> Result<Vec<Set>> {
    use ivshmem_proto::{Client, ConnectOptions, recv_msg};
    let max = peers.iter().copied().max().unwrap_or(0);
    // Our own end of every connection, and then some.
    let (_, hard) = {
        let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        (l.current, l.maximum)
    };
    let want = (max as u64 * 2 + 256).min(hard.unwrap_or(u64::MAX));
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(want),
            maximum: hard,
        },
    );
    fs::create_dir_all(dir)?;
    let sock = fs::canonicalize(dir)?.join("bench-server.sock");
    let name = format!("ivshmem-bench.{}", std::process::id());
    let _shm = ShmFile::track(Path::new("/dev/shm").join(&name));
    let mut cmd = Command::new(crate::server::tool("ivshmem-server"));
    cmd.args(["-F", "-S"])
        .arg(&sock)
        .args(["-M", &name, "-l", &(4 * MIB).to_string(), "-n", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("bench-server.log"))?);
    crate::qemu::die_with_runner(&mut cmd);
    let mut child = cmd.spawn().context("starting ivshmem-server")?;
    let pid = child.id();
    let result = (|| -> Result<Vec<Set>> {
        crate::server::wait_listening(&sock, &mut child, Duration::from_secs(10))
            .context("ivshmem-server did not come up")?;
        let opts = ConnectOptions {
            vectors: Some(1),
            timeout: Some(Duration::from_secs(60)),
            ..ConnectOptions::default()
        };
        let mut held: Vec<UnixStream> = Vec::new();
        let mut times = Vec::new();
        let mut sets = Vec::new();
        let set = |metric: &str, unit: &str, case: String, samples: Vec<f64>| Set {
            bench: "server".into(),
            case,
            metric: metric.into(),
            unit: unit.into(),
            contender: "our ivshmem-server".into(),
            source: "host".into(),
            samples,
        };
        let rss0 = rss_kib(pid).unwrap_or(0.0);
        sets.push(set("RSS", "KiB", "0 peers".into(), vec![rss0]));
        for k in 1..=max {
            let t = Instant::now();
            let c = Client::connect_with(&sock, &opts)
                .with_context(|| format!("connecting peer {k}"))?;
            times.push(t.elapsed().as_nanos() as f64);
            held.push(c.socket().try_clone()?);
            drop(c);
            // Every earlier peer is told of the new one (one message with
            // its vector): read it, as QEMU would, so no socket fills up.
            for h in &held[..held.len() - 1] {
                recv_msg(h).with_context(|| format!("announcement of peer {k}"))?;
            }
            if peers.contains(&k) {
                let last = times[k.saturating_sub(10)..].to_vec();
                println!(
                    "# bench: server: {k} peers connected, RSS {:.0} KiB",
                    rss_kib(pid).unwrap_or(0.0)
                );
                sets.push(set(
                    "connect time of the last 10 peers",
                    "ns",
                    format!("{k} peers"),
                    last,
                ));
                sets.push(set(
                    "RSS",
                    "KiB",
                    format!("{k} peers"),
                    vec![rss_kib(pid).unwrap_or(0.0)],
                ));
            } else if k % 256 == 0 {
                println!("# bench: server: {k}/{max} peers");
            }
        }
        Ok(sets)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
