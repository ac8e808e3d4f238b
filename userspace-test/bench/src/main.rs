//! `ivshmem-bench`: in-guest benchmarks of the ivshmem driver against what
//! users would use instead (sysfs `resource2`, vfio-pci, eventfds between
//! threads).
//!
//! Runs inside a QEMU guest booted by `ivshmem-vmrun bench` (the guest's
//! init runs it when the kernel command line says `ivt_prog=bench`). Prints
//! KTAP on stdout, one test per benchmark, and the raw samples as KTAP
//! diagnostic lines the runner collects:
//!
//! ```text
//! # bench-json: {"bench":"mmap","case":"256 MiB","metric":"first","unit":"ns","contender":"ivshmem-wb","samples":[...]}
//! ```
//!
//! A benchmark with contenders lists them as its subtests (a nested KTAP
//! document before its result): `ok` for those measured, `# SKIP` with the
//! reason for one that cannot run in this guest (vfio-pci without an
//! IOMMU, say); a skipped contender has no samples, so the table leaves
//! it out.
//!
//! Progress goes to the runner as `# vmrun-request: progress ...` lines.
//! Settings come from the kernel command line (`ivt_KEY=VALUE`): `reps`
//! (repetitions, interleaved across contenders), `bw_mib` (bytes copied
//! per bandwidth sample), `touch_max_mib` (largest mapping touched whole),
//! `pings` (ping-pongs per chunk), `rounds` (chunks per wake method),
//! `stream` (rings per one-way stream).

mod doorbell;
mod faults;
mod mapping;
mod ptwalk;
mod sys;
mod vfio;

use ktap::{Outcome, Writer};
use serde_json::{Value, json};
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Mutex;

/// Why a benchmark did not run to the end.
#[derive(Debug)]
pub enum Failure {
    /// Something failed.
    Fail(String),
    /// The benchmark cannot run in this guest; the string says why.
    Skip(String),
}

impl Failure {
    /// What went wrong, or why it was skipped.
    pub fn why(self) -> String {
        match self {
            Failure::Fail(w) | Failure::Skip(w) => w,
        }
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Fail(e.to_string())
    }
}

/// What a benchmark returns.
pub type BenchResult = Result<(), Failure>;

/// Prints one set of raw samples for the runner.
pub fn emit(record: Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "# bench-json: {record}");
    let _ = out.flush();
}

/// Prints a set of samples of `contender` for (`bench`, `case`, `metric`).
pub fn samples(bench: &str, case: &str, metric: &str, unit: &str, contender: &str, v: &[f64]) {
    emit(json!({
        "bench": bench,
        "case": case,
        "metric": metric,
        "unit": unit,
        "contender": contender,
        "samples": v,
    }));
}

/// The contenders of the running benchmark and how each fared.
static CONTENDERS: Mutex<Vec<(String, Outcome)>> = Mutex::new(Vec::new());

/// Records how a contender of the running benchmark fared: listed as a
/// subtest of the benchmark.
pub fn contender(name: &str, outcome: Outcome) {
    if let Ok(mut v) = CONTENDERS.lock() {
        v.push((name.to_string(), outcome));
    }
}

/// Records contender `name` as measured, or skipped for the reason `r`
/// gives.
pub fn contender_unless(name: &str, r: Result<(), String>) {
    contender(
        name,
        match r {
            Ok(()) => Outcome::Pass,
            Err(why) => Outcome::Skip(why),
        },
    );
}

/// Tells the runner how far this guest is.
pub fn progress(msg: &str) {
    let mut out = io::stdout().lock();
    let req = vmrun_protocol::Request::Progress(msg.to_string());
    let _ = writeln!(out, "{}", req.line());
    let _ = out.flush();
}

/// A benchmark.
struct Bench {
    name: &'static str,
    about: &'static str,
    run: fn() -> BenchResult,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "mapping",
        about: "mmap setup, first touch, page tables and bandwidth of /dev/ivshmemN (each cache mode) vs sysfs resource2/resource2_wc and a vfio-pci region, RAM as the ceiling",
        run: mapping::run,
    },
    Bench {
        name: "doorbell",
        about: "guest-to-guest ring-to-wake latency (read, poll, epoll on a bound eventfd) vs vfio-pci's MSI-X eventfd and two threads on eventfds; rings per second",
        run: doorbell::run,
    },
    Bench {
        name: "faults",
        about: "first touch of a large mapping, every page a 4 KiB fault, from 1, NCPU and 4*NCPU threads at once",
        run: faults::run,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for b in BENCHES {
            println!("{:10} {}", b.name, b.about);
        }
        return ExitCode::SUCCESS;
    }
    let mut selected = Vec::new();
    for a in &args {
        match BENCHES.iter().find(|b| b.name == a) {
            Some(b) => selected.push(b),
            None => {
                eprintln!("usage: ivshmem-bench [--list] [BENCH...] (no bench named '{a}')");
                return ExitCode::from(2);
            }
        }
    }
    if selected.is_empty() {
        selected = BENCHES.iter().collect();
    }
    match run(&selected) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("ivshmem-bench: cannot write results: {e}");
            ExitCode::from(ktap::exit::FAIL as u8)
        }
    }
}

fn run(selected: &[&Bench]) -> io::Result<i32> {
    let mut w = Writer::new(io::stdout(), selected.len())?;
    emit(json!({
        "guest": {
            "kernel": guest_sys::read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
            "cpu": sys::cpu_model(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }));
    for b in selected {
        w.diag(&format!("{}: {}", b.name, b.about))?;
        let outcome = match (b.run)() {
            Ok(()) => Outcome::Pass,
            Err(Failure::Fail(why)) => Outcome::Fail(why),
            Err(Failure::Skip(why)) => Outcome::Skip(why),
        };
        let contenders = std::mem::take(&mut *CONTENDERS.lock().unwrap_or_else(|e| e.into_inner()));
        if !contenders.is_empty() && outcome == Outcome::Pass {
            let mut sub = Writer::nested(io::stdout(), contenders.len(), 1)?;
            for (name, o) in &contenders {
                sub.result(name, o)?;
            }
        }
        w.result(b.name, &outcome)?;
    }
    Ok(w.finish()?.exit_code())
}
