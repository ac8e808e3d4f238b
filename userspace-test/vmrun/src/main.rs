//! `ivshmem-vmrun`: boots QEMU guests with ivshmem devices, runs the
//! in-guest selftests, and reports their KTAP.
//!
//! Each scenario boots one or more guests from the same kernel and
//! initramfs, gives them ivshmem devices backed by files the host can read
//! and write, and collects each guest's KTAP from its second serial port.
//! The runner's own output is KTAP, with the guests' results nested; its
//! last line is `vmrun: N passed, N failed, N skipped`.
//!
//! Modules use only the modules below them in this list, so that none
//! depends on itself through another:
//!
//! - `catalog`: every scenario by name, and the commands that choose
//!   among them (`list`, `suite`, `run`, `demo`);
//! - `bench`: the benchmarks (`make bench`), on top of `session`;
//! - `stress`: the stress campaign (`make stress`), on top of `session`;
//! - `session`: a run of scenarios: the initramfs, the accelerator, the
//!   rerun command, the KTAP header and footer;
//! - `runner`: one scenario from boot to its KTAP result;
//! - `report`: judging what the guests left;
//! - `requests`: carrying out the guests' requests while they run;
//! - `scenarios`: which guests boot with which devices and tests;
//! - `hooks`: the host's writes and checks of the shared memory;
//! - `regions`: the backing files of the shared memory;
//! - `server`: the scenario's `ivshmem-server`;
//! - `qmp`, `qemu`, `initramfs`, `cpio`: talking to and booting QEMU.

mod bench;
mod catalog;
mod cpio;
mod hooks;
mod initramfs;
mod ptwalk;
mod qemu;
mod qmp;
mod regions;
mod report;
mod requests;
mod runner;
mod scenarios;
mod server;
mod session;
mod stress;
mod testlist;

use ivshmem_vmrun::cli::{Cli, Cmd};
use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, given) = Cli::parse_given();
    let result = regions::remove_on_signals().and_then(|()| match &cli.cmd {
        Cmd::List => catalog::list(&cli),
        Cmd::Suite { filter } => catalog::suite(&cli, &given, filter),
        Cmd::Run { scenarios } => catalog::run(&cli, &given, scenarios),
        Cmd::Demo => catalog::demo(&cli, &given),
        Cmd::Bench(o) => bench::run(&cli, &given, o),
        Cmd::Stress(o) => stress::run(&cli, &given, o),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ivshmem-vmrun: {e:#}");
            for l in report::run_error(&format!("{e:#}")) {
                println!("{l}");
            }
            ExitCode::FAILURE
        }
    }
}
