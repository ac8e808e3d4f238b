//! In-guest selftests for the ivshmem driver.
//!
//! Runs inside a QEMU guest (normally from the VM runner's initramfs) and
//! prints KTAP on stdout, like a kernel selftest: `ivshmem-selftest` runs
//! the default set, `ivshmem-selftest NAME...` runs the named tests in that
//! order, `--list` lists them. Exit codes follow kselftest: 0 pass, 1 fail,
//! 4 all skipped, 2 usage error.

mod cli;
mod data;
mod distro;
mod dmabuf;
mod doorbell;
mod fixture;
mod importer;
mod ioctl;
mod kvmfr;
mod mmap;
mod module;
mod node;
mod ptables;
mod python;
mod readers;
mod removal;
mod scale;
mod sharing;
mod shmfile;
mod stress;
mod tests;

use ktap::{Outcome, Writer};
use std::io;
use std::process::ExitCode;

/// What a test returns: `Ok(())` passes; `Err` fails or skips.
pub type TestResult = Result<(), Failure>;

/// Why a test did not pass.
#[derive(Debug)]
pub enum Failure {
    /// The driver misbehaved.
    Fail(String),
    /// The test could not run here; the string says why.
    Skip(String),
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Fail(e.to_string())
    }
}

/// Fails the test with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($t:tt)*) => { return Err($crate::Failure::Fail(format!($($t)*))) };
}

/// Skips the test with a formatted reason.
#[macro_export]
macro_rules! skip {
    ($($t:tt)*) => { return Err($crate::Failure::Skip(format!($($t)*))) };
}

/// Fails the test unless the condition holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($t:tt)*) => { if !$cond { $crate::fail!($($t)*) } };
}

/// One selftest.
#[derive(Debug)]
pub struct Test {
    /// Its name, used to select it.
    pub name: &'static str,
    /// Whether it runs when no names are given.
    pub default: bool,
    /// One line on what it checks.
    pub about: &'static str,
    /// The test itself.
    pub run: fn() -> TestResult,
}

fn usage() -> ExitCode {
    eprintln!("usage: ivshmem-selftest [--list] [TEST...]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = tests::all();
    if args.iter().any(|a| a == "--list") {
        for t in &all {
            let tag = if t.default { "" } else { " (only when named)" };
            println!("{:24} {}{tag}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a.starts_with('-')) {
        return usage();
    }
    let selected: Vec<&Test> = if args.is_empty() {
        all.iter().filter(|t| t.default).collect()
    } else {
        let mut v = Vec::new();
        for a in &args {
            match all.iter().find(|t| t.name == a) {
                Some(t) => v.push(t),
                None => {
                    eprintln!("ivshmem-selftest: no test named '{a}' (see --list)");
                    return usage();
                }
            }
        }
        v
    };
    match run(&selected) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("ivshmem-selftest: cannot write results: {e}");
            ExitCode::from(ktap::exit::FAIL as u8)
        }
    }
}

fn run(selected: &[&Test]) -> io::Result<i32> {
    let mut w = Writer::new(io::stdout().lock(), selected.len())?;
    for t in selected {
        w.diag(&format!("{}: {}", t.name, t.about))?;
        let outcome = match (t.run)() {
            Ok(()) => Outcome::Pass,
            Err(Failure::Fail(why)) => Outcome::Fail(why),
            Err(Failure::Skip(why)) => Outcome::Skip(why),
        };
        w.result(t.name, &outcome)?;
    }
    Ok(w.finish()?.exit_code())
}
