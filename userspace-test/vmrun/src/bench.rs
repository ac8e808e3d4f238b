//! `ivshmem-vmrun bench`: the benchmarks of `make bench`.
//!
//! Boots the bench scenarios (the guests run `ivshmem-bench`, which prints
//! raw samples as `# bench-json: {...}` KTAP diagnostics), runs the
//! host-only benchmarks (memcpy of a backing file, the ivshmem server with
//! many peers), then prints a Markdown table of medians, spreads and
//! ratios to each baseline, and writes a results directory: `samples.json`
//! (every raw sample and the machine), `table.md`, `machine.json`, SVG
//! plots, and the guests' logs under `logs/`.

use crate::qemu::{Accel, GuestSpec};
use crate::regions::ShmFile;
use crate::runner::Ctx;
use crate::scenarios::Scenario;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Options of `bench` (defined with the command line).
pub use ivshmem_vmrun::cli::BenchOpts as Opts;

/// The sizes and counts of one run.
struct Budget {
    reps: u64,
    /// BAR sizes of the mapping benchmark's devices.
    sizes: Vec<u64>,
    /// Bytes per bandwidth sample.
    bw: u64,
    /// The largest mapping touched whole (the host allocates what is touched).
    touch_max: u64,
    pings: u64,
    rounds: u64,
    stream: u64,
    /// Peer counts of the server benchmark.
    peers: Vec<usize>,
    /// BAR size of the fault benchmark's device (the mapping is 2 MiB less).
    faults: u64,
}

impl Budget {
    fn of(o: &Opts) -> Self {
        if o.quick {
            Self {
                reps: o.reps.unwrap_or(2),
                sizes: vec![4 * MIB, 8 * MIB],
                bw: MIB,
                touch_max: 8 * MIB,
                pings: 50,
                rounds: 1,
                stream: 200,
                peers: vec![10, 50],
                faults: 8 * MIB,
            }
        } else {
            Self {
                reps: o.reps.unwrap_or(11),
                sizes: vec![4 * MIB, 256 * MIB, 8 << 30],
                bw: 64 * MIB,
                touch_max: 256 * MIB,
                pings: 2000,
                rounds: 7,
                stream: 10_000,
                peers: vec![100, 1000, 4096],
                faults: 1 << 30,
            }
        }
    }
}

/// The bench scenarios.
pub fn scenarios(o: &Opts) -> Vec<Scenario> {
    let b = Budget::of(o);
    let mut mapping = GuestSpec::new("guest", &["mapping"])
        .env("prog", "bench")
        .env("reps", b.reps)
        .env("bw_mib", b.bw / MIB)
        .env("touch_max_mib", b.touch_max / MIB);
    for (i, s) in b.sizes.iter().enumerate() {
        mapping = mapping.plain(&format!("r{i}"), *s);
    }
    // Room for the bandwidth buffers and the sysfs mappings' page tables;
    // a vIOMMU for vfio-pci.
    mapping = mapping.mem_mib(1024).viommu();
    let bell = |name: &str| {
        GuestSpec::new(name, &["doorbell"])
            .env("prog", "bench")
            .env("pings", b.pings)
            .env("rounds", b.rounds)
            .env("stream", b.stream)
            .doorbell(4)
            .viommu()
    };
    let faults = GuestSpec::new("guest", &["faults"])
        .env("prog", "bench")
        .env("reps", b.reps.min(5))
        .env("fault_mib", b.faults / MIB)
        .plain("big", b.faults);
    let timeout = Duration::from_secs(if o.quick { 240 } else { 900 });
    vec![
        Scenario::new(
            "bench-mapping",
            "mmap setup, first touch, page tables and bandwidth: /dev/ivshmemN in each \
             cache mode vs sysfs resource2/resource2_wc and a vfio-pci region (vIOMMU)",
            timeout,
        )
        .guest(mapping)
        .not_in_suite(),
        Scenario::new(
            "bench-doorbell",
            "two guests ring each other: ring-to-wake latency (read, poll, epoll) \
             vs vfio-pci's MSI-X eventfd and eventfd between threads; rings per second",
            timeout,
        )
        .guest(bell("a"))
        .guest(bell("b"))
        .server(4)
        .not_in_suite(),
        Scenario::new(
            "bench-faults",
            "fault-heavy first touch: 1, NCPU and 4*NCPU threads touching one large \
             mapping with 4 KiB entries only",
            timeout,
        )
        .guest(faults)
        .not_in_suite(),
    ]
}

/// A set of samples.
#[derive(Debug, Clone)]
struct Set {
    bench: String,
    case: String,
    metric: String,
    unit: String,
    contender: String,
    /// Where it was measured: a guest's name, or "host".
    source: String,
    samples: Vec<f64>,
}

impl Set {
    fn from_json(v: &Value, source: &str) -> Option<Self> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_string);
        Some(Self {
            bench: s("bench")?,
            case: s("case")?,
            metric: s("metric")?,
            unit: s("unit")?,
            contender: s("contender")?,
            source: source.to_string(),
            samples: v
                .get("samples")?
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect(),
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "bench": self.bench, "case": self.case, "metric": self.metric,
            "unit": self.unit, "contender": self.contender, "source": self.source,
            "samples": self.samples, "stats": Stats::of(&self.samples).map(|s| s.to_json()),
        })
    }
}

/// Median and spread of a set.
#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    median: f64,
    p10: f64,
    p90: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        // Linear interpolation between closest ranks.
        let q = |p: f64| {
            let x = p * (s.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (x - lo as f64)
        };
        Some(Self {
            n: s.len(),
            median: q(0.5),
            p10: q(0.1),
            p90: q(0.9),
            min: s[0],
            max: s[s.len() - 1],
        })
    }

    fn to_json(self) -> Value {
        json!({"n": self.n, "median": self.median, "p10": self.p10, "p90": self.p90,
               "min": self.min, "max": self.max})
    }
}

/// The raw records of a guest's KTAP log: sample sets and other facts.
fn guest_records(ktap: &Path, source: &str, sets: &mut Vec<Set>, facts: &mut Vec<Value>) {
    let text = fs::read_to_string(ktap).unwrap_or_default();
    for l in text.lines() {
        let Some(j) = l.trim().strip_prefix("# bench-json: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(j) else {
            continue;
        };
        match Set::from_json(&v, source) {
            Some(s) => sets.push(s),
            None => facts.push(json!({"source": source, "record": v})),
        }
    }
}

/// Copies `bw` bytes of a `file_size` file in /dev/shm to and from a buffer
/// in RAM, as QEMU's backing file: the physical limit of the guests'
/// bandwidth.
fn host_memcpy(file_size: u64, bw: u64, reps: u64, case: &str) -> Result<Vec<Set>> {
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
fn server_peers(peers: &[usize], dir: &Path) -> Result<Vec<Set>> {
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

/// Baselines of each benchmark, in the order of the ratio columns.
fn baselines(bench: &str) -> &'static [&'static str] {
    match bench {
        "mapping" => &[
            "resource2",
            "resource2_wc",
            "vfio-pci",
            "guest RAM memcpy",
            "host memcpy of the backing file",
        ],
        "doorbell" => &["eventfd, two threads", "vfio-pci read(eventfd)"],
        "faults" => &["1 thread"],
        _ => &[],
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ns" if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        "ns" if v >= 1e3 => format!("{:.1} µs", v / 1e3),
        "ns" => format!("{v:.0} ns"),
        "GiB/s" => format!("{v:.2} GiB/s"),
        "KiB" if v < 1024.0 => format!("{v:.0} KiB"),
        "KiB" => format!("{:.1} MiB", v / 1024.0),
        "count" => format!("{v:.0}"),
        "ratio" => format!("{v:.3}"),
        _ if v >= 1e4 => format!("{v:.0} {unit}"),
        _ => format!("{v:.1} {unit}"),
    }
}

/// The Markdown tables: per benchmark, one line per contender of each
/// (case, metric): median, spread (p10–p90), n, and its ratio to each
/// baseline's median.
fn table(sets: &[Set]) -> String {
    let mut out = String::new();
    let mut benches: Vec<&str> = Vec::new();
    for s in sets {
        if !benches.contains(&s.bench.as_str()) {
            benches.push(&s.bench);
        }
    }
    for b in benches {
        let bases: Vec<&str> = baselines(b)
            .iter()
            .copied()
            .filter(|x| sets.iter().any(|s| s.bench == b && s.contender == *x))
            .collect();
        let _ = writeln!(out, "\n### {b}\n");
        let mut head = "| case | metric | contender | median | p10–p90 | n |".to_string();
        let mut rule = "|---|---|---|--:|--:|--:|".to_string();
        for x in &bases {
            let _ = write!(head, " ÷ {x} |");
            rule += "--:|";
        }
        let _ = writeln!(out, "{head}\n{rule}");
        // Rows grouped by metric, then by size or count.
        let mut keys: Vec<(&str, &str)> = Vec::new();
        for s in sets.iter().filter(|s| s.bench == b) {
            if !keys.contains(&(s.case.as_str(), s.metric.as_str())) {
                keys.push((&s.case, &s.metric));
            }
        }
        keys.sort_by_key(|(case, metric)| (rank(METRICS, metric), case_num(case)));
        for (case, metric) in keys {
            let mut row: Vec<&Set> = sets
                .iter()
                .filter(|s| s.bench == b && s.case == case && s.metric == metric)
                .collect();
            row.sort_by_key(|s| rank(CONTENDERS, &s.contender));
            let median_of = |c: &str| {
                row.iter()
                    .find(|s| s.contender == c)
                    .and_then(|s| Stats::of(&s.samples))
                    .map(|st| st.median)
            };
            for s in &row {
                let Some(st) = Stats::of(&s.samples) else {
                    continue;
                };
                let mut line = format!(
                    "| {case} | {metric} | {} | {} | {} – {} | {} |",
                    s.contender,
                    fmt_value(st.median, &s.unit),
                    fmt_value(st.p10, &s.unit),
                    fmt_value(st.p90, &s.unit),
                    st.n
                );
                for x in &bases {
                    let cell = match median_of(x) {
                        _ if s.unit == "count" => "".into(),
                        _ if s.contender == *x => "1".into(),
                        Some(m) if m > 0.0 => format!("{:.2}", st.median / m),
                        _ => "".into(),
                    };
                    let _ = write!(line, " {cell} |");
                }
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

/// The order of the rows.
const METRICS: &[&str] = &[
    "mmap, first",
    "mmap, while mapped",
    "mmap, again after unmapping",
    "first touch, whole mapping",
    "entries inserted, 4K",
    "entries inserted, 2M",
    "entries inserted, 1G",
    "page-table entries, 4K",
    "page-table entries, 2M",
    "page-table entries, 1G",
    "page-table memory (VmPTE)",
    "sequential read",
    "sequential write",
    "p50",
    "p99",
    "p99.9",
    "p99.9 of all rounds",
    "max of all rounds",
    "ping-pong rate",
    "one way, rings sent",
    "one way, until the receiver saw the last",
    "one way, receiver wake-ups per ring",
    "connect time of the last 10 peers",
    "RSS",
];

/// The order of the contenders within a row.
const CONTENDERS: &[&str] = &[
    "ivshmem-wb",
    "ivshmem-wc",
    "ivshmem-uc",
    "resource2",
    "resource2_wc",
    "vfio-pci",
    "guest RAM memcpy",
    "host memcpy of the backing file",
    "ivshmem read()",
    "ivshmem read(), store ring",
    "ivshmem poll()",
    "ivshmem epoll(eventfd)",
    "vfio-pci read(eventfd)",
    "ivshmem ring ioctl",
    "ivshmem ring store",
    "eventfd, two threads",
];

fn rank(list: &[&str], x: &str) -> usize {
    list.iter().position(|m| *m == x).unwrap_or(list.len())
}

/// The number a case starts with, in bytes when it names a size.
fn case_num(case: &str) -> u64 {
    case_bytes(case).unwrap_or_else(|| {
        case.split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0)
    })
}

/// The size in bytes a case like "256 MiB" names.
fn case_bytes(case: &str) -> Option<u64> {
    let mut w = case.split_whitespace();
    let n: u64 = w.next()?.parse().ok()?;
    match w.next()? {
        "KiB" => Some(n << 10),
        "MiB" => Some(n << 20),
        "GiB" => Some(n << 30),
        _ => None,
    }
}

/// A log-log line chart of a mapping metric's medians against the size,
/// one line per contender.
fn plot_by_size(sets: &[Set], metric: &str, title: &str, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for s in sets
        .iter()
        .filter(|s| s.bench == "mapping" && s.metric == metric)
    {
        if let (Some(b), Some(st)) = (case_bytes(&s.case), Stats::of(&s.samples)) {
            series
                .entry(&s.contender)
                .or_default()
                .push((b as f64 / MIB as f64, st.median / 1e3));
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    let pts = || series.values().flatten();
    let (x0, x1) = pts().fold((f64::MAX, 0f64), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (y0, y1) = pts().fold((f64::MAX, 0f64), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("mapping size (MiB)")
        .y_desc("median (µs)")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, (name, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// A bar chart of the doorbell latency percentiles, per contender.
fn plot_latency(sets: &[Set], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let metrics = ["p50", "p99", "p99.9"];
    let mut contenders: Vec<&str> = Vec::new();
    let mut bars = Vec::new();
    for s in sets
        .iter()
        .filter(|s| s.bench == "doorbell" && s.unit == "ns")
    {
        let Some(mi) = metrics.iter().position(|m| *m == s.metric) else {
            continue;
        };
        let ci = match contenders.iter().position(|c| *c == s.contender) {
            Some(i) => i,
            None => {
                contenders.push(&s.contender);
                contenders.len() - 1
            }
        };
        if let Some(st) = Stats::of(&s.samples) {
            bars.push((ci, mi, st.median / 1e3));
        }
    }
    if bars.is_empty() {
        return Ok(());
    }
    let ymax = bars.iter().map(|b| b.2).fold(0.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = contenders.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ring-to-wake latency (half a round trip), median over rounds",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..ymax)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let names = contenders.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(contenders.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.26 {
                names.get(i).map(|s| s.to_string()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("µs")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (mi, m) in metrics.iter().enumerate() {
        let color = Palette99::pick(mi).to_rgba();
        chart
            .draw_series(bars.iter().filter(|b| b.1 == mi).map(|&(ci, _, v)| {
                let x = ci as f64 + 0.1 + 0.27 * mi as f64;
                Rectangle::new([(x, 0.0), (x + 0.25, v)], color.filled())
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(*m)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn first_line(path: &str, prefix: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}

/// Runs the benchmarks and writes the results. Returns whether every
/// scenario ran to the end.
pub fn run(ctx: &Ctx, selected: &[&Scenario], o: &Opts, accel: Accel, why: &str) -> Result<bool> {
    let b = Budget::of(o);
    fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let steps = selected.len() + 2;
    println!("KTAP version 1");
    println!("1..{steps}");
    println!("# accelerator: {accel} ({why})");
    println!("# kernel: {}", ctx.kernel_label);
    println!("# results: {}", o.out.display());
    let mut sets = Vec::new();
    let mut facts = Vec::new();
    let mut all_ok = true;
    for (i, sc) in selected.iter().enumerate() {
        println!("# bench: [{}/{steps}] {}: {}", i + 1, sc.name, sc.about);
        let (ok, _) = crate::runner::run_scenario(ctx, sc, i + 1);
        all_ok &= ok;
        for g in &sc.guests {
            let ktap = ctx.workdir.join(sc.name).join(&g.name).join("ktap.log");
            guest_records(
                &ktap,
                &format!("{}/{}", sc.name, g.name),
                &mut sets,
                &mut facts,
            );
        }
    }

    let n = selected.len() + 1;
    println!("# bench: [{n}/{steps}] host memcpy of a backing file");
    let bw_file = b
        .sizes
        .iter()
        .copied()
        .filter(|s| *s <= b.touch_max && *s >= b.bw)
        .max()
        .unwrap_or(b.bw);
    let bw_case = format!("{} MiB through a {} MiB mapping", b.bw / MIB, bw_file / MIB);
    match host_memcpy(bw_file, b.bw, b.reps, &bw_case) {
        Ok(s) => {
            sets.extend(s);
            println!("ok {n} host-memcpy");
        }
        Err(e) => {
            all_ok = false;
            println!("not ok {n} host-memcpy # {e:#}");
        }
    }
    let n = n + 1;
    println!(
        "# bench: [{n}/{steps}] our ivshmem-server with {:?} peers",
        b.peers
    );
    match server_peers(&b.peers, &ctx.workdir) {
        Ok(s) => {
            sets.extend(s);
            println!("ok {n} server-peers");
        }
        Err(e) => {
            all_ok = false;
            println!("not ok {n} server-peers # {e:#}");
        }
    }

    let qemu = Command::new(crate::qemu::QEMU)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let guest = facts
        .iter()
        .find_map(|f| f["record"].get("guest").cloned())
        .unwrap_or(Value::Null);
    let machine = json!({
        "accelerator": accel.to_string(),
        "accelerator_why": why,
        "host_cpu": first_line("/proc/cpuinfo", "model name"),
        "host_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "host_kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "guest_kernel": ctx.kernel_label,
        "guest": guest,
        "qemu": qemu,
        "quick": o.quick,
        "repetitions": b.reps,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    let tbl = table(&sets);
    let md = format!(
        "## ivshmem benchmarks\n\n\
         accelerator: {accel} ({why}); host CPU: {}; host kernel: {}; guest kernel: {}; {}\n\n\
         Medians of interleaved repetitions, p10–p90 spread, n samples. \
         A ratio is this contender's median divided by the baseline's: \
         for times (ns, µs, ms) above 1 is slower, for rates (GiB/s, rings/s) above 1 is faster.\n{tbl}",
        machine["host_cpu"].as_str().unwrap_or(""),
        machine["host_kernel"].as_str().unwrap_or(""),
        ctx.kernel_label,
        qemu
    );
    fs::write(o.out.join("table.md"), &md)?;
    fs::write(
        o.out.join("machine.json"),
        serde_json::to_string_pretty(&machine)?,
    )?;
    let all = json!({
        "machine": machine,
        "sets": sets.iter().map(Set::to_json).collect::<Vec<_>>(),
        "other": facts,
    });
    fs::write(
        o.out.join("samples.json"),
        serde_json::to_string_pretty(&all)?,
    )?;
    plot_by_size(
        &sets,
        "mmap, first",
        "mmap() of the whole BAR, first mapping: median by size",
        &o.out.join("mmap-first.svg"),
    )?;
    plot_by_size(
        &sets,
        "first touch, whole mapping",
        "first touch of the whole mapping: median by size",
        &o.out.join("first-touch.svg"),
    )?;
    plot_latency(&sets, &o.out.join("doorbell-latency.svg"))?;
    println!("{md}");
    println!(
        "# bench: results in {} (table.md, samples.json, machine.json, *.svg, logs/)",
        o.out.display()
    );
    if !all_ok {
        println!("# bench: some benchmarks did not run to the end; see above");
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(contender: &str, unit: &str, samples: &[f64]) -> Set {
        Set {
            bench: "mapping".into(),
            case: "4 MiB".into(),
            metric: "mmap, first".into(),
            unit: unit.into(),
            contender: contender.into(),
            source: "guest".into(),
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn stats_median_and_spread() {
        let s = Stats::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (5, 3.0, 1.0, 5.0));
        assert!((s.p10 - 1.4).abs() < 1e-9 && (s.p90 - 4.6).abs() < 1e-9);
        assert_eq!(Stats::of(&[2.0, 4.0]).unwrap().median, 3.0);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn cases_order_by_size_and_count() {
        assert_eq!(case_bytes("256 MiB"), Some(256 << 20));
        assert_eq!(case_bytes("8 GiB"), Some(8 << 30));
        assert_eq!(case_num("1000 peers"), 1000);
        assert!(case_num("4 MiB") < case_num("8 GiB"));
    }

    #[test]
    fn table_divides_medians_by_each_baseline() {
        let t = table(&[
            set("ivshmem-wb", "ns", &[100.0, 300.0, 200.0]),
            set("resource2", "ns", &[400.0]),
            set("resource2_wc", "ns", &[800.0]),
        ]);
        let row = t.lines().find(|l| l.contains("ivshmem-wb")).unwrap();
        assert!(row.ends_with("| 0.50 | 0.25 |"), "{row}");
        assert!(t.contains("÷ resource2 | ÷ resource2_wc |"), "{t}");
        let base = t.lines().find(|l| l.contains("| resource2 |")).unwrap();
        assert!(base.ends_with("| 1 | 0.50 |"), "{base}");
    }

    #[test]
    fn guest_lines_become_sets_and_facts() {
        let dir = std::env::temp_dir().join(format!("bench-test.{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ktap.log");
        fs::write(
            &p,
            "KTAP version 1\n  # bench-json: {\"bench\":\"doorbell\",\"case\":\"c\",\"metric\":\"p50\",\"unit\":\"ns\",\"contender\":\"x\",\"samples\":[1,2]}\n# bench-json: {\"guest\":{\"kernel\":\"k\"}}\n# other\n",
        )
        .unwrap();
        let (mut sets, mut facts) = (Vec::new(), Vec::new());
        guest_records(&p, "sc/g", &mut sets, &mut facts);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].samples, vec![1.0, 2.0]);
        assert_eq!(sets[0].source, "sc/g");
        assert_eq!(facts.len(), 1);
    }
}
