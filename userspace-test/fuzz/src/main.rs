//! `ivshmem-fuzz`: a seeded fuzzer of `/dev/ivshmemN`, run inside a guest
//! (see the library's documentation for what it calls).
//!
//! ```text
//! ivshmem-fuzz [--seed N] [--calls N] [--procs N] [--threads N] [--until-gone PATH] [DEVICE...]
//! ```
//!
//! Prints the seed first, so that a failing run can be repeated, and a
//! summary at the end; exits 0 when every process survived.

use ivshmem_fuzz::{Config, run};
use std::path::PathBuf;
use std::process::ExitCode;

fn usage(why: &str) -> ExitCode {
    eprintln!("ivshmem-fuzz: {why}");
    eprintln!(
        "usage: ivshmem-fuzz [--seed N] [--calls N] [--procs N] [--threads N] [--until-gone PATH] [DEVICE...]"
    );
    ExitCode::from(2)
}

fn number(flag: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("{flag}: not a number: {v:?}"))
}

fn main() -> ExitCode {
    let mut cfg = Config {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        calls: 100_000,
        procs: 2,
        threads: 4,
        devices: Vec::new(),
        until_gone: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let r = match a.as_str() {
            "--seed" => number(&a, args.next()).map(|n| cfg.seed = n),
            "--calls" => number(&a, args.next()).map(|n| cfg.calls = n),
            "--procs" => number(&a, args.next()).map(|n| cfg.procs = n as usize),
            "--threads" => number(&a, args.next()).map(|n| cfg.threads = n as usize),
            "--until-gone" => args
                .next()
                .map(|p| cfg.until_gone = Some(PathBuf::from(p)))
                .ok_or_else(|| format!("{a} needs a path")),
            "-h" | "--help" => return usage("a fuzzer of /dev/ivshmemN"),
            s if s.starts_with('-') => Err(format!("unknown option {s}")),
            s => {
                cfg.devices.push(PathBuf::from(s));
                Ok(())
            }
        };
        if let Err(e) = r {
            return usage(&e);
        }
    }
    if cfg.devices.is_empty() {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/dev")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("ivshmem"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        found.sort();
        if found.is_empty() {
            return usage("no /dev/ivshmemN and no DEVICE given");
        }
        cfg.devices = found;
    }
    println!(
        "ivshmem-fuzz: seed {:#x}, {} calls, {} process(es) x {} thread(s), on {:?}",
        cfg.seed, cfg.calls, cfg.procs, cfg.threads, cfg.devices
    );
    match run(&cfg) {
        Ok(r) => {
            let errors: u64 = r.errors.values().sum();
            println!(
                "ivshmem-fuzz: {} calls, {} failed as expected of fuzzing, {} SIGBUS mended, {} children forked",
                r.calls, errors, r.sigbus, r.forks
            );
            println!("ivshmem-fuzz: calls by kind: {:?}", r.ops);
            println!("ivshmem-fuzz: failures by errno: {:?}", r.errors);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ivshmem-fuzz: {e}; repeat with --seed {:#x}", cfg.seed);
            ExitCode::FAILURE
        }
    }
}
