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
//! - `bench`: the benchmarks (`make bench`), on top of `runner`;
//! - `runner`: one scenario from boot to its KTAP result;
//! - `report`: judging what the guests left;
//! - `requests`: carrying out the guests' requests while they run;
//! - `scenarios`: which guests boot with which devices and tests;
//! - `hooks`: the host's writes and checks of the shared memory;
//! - `regions`: the backing files of the shared memory;
//! - `server`: the scenario's `ivshmem-server`;
//! - `qmp`, `qemu`, `initramfs`, `cpio`: talking to and booting QEMU.

mod bench;
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
mod stress;
mod testlist;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ivshmem_vmrun::cli::{Cli, Cmd};
use ktap::Totals;
use qemu::{Accel, Boot, Guest};
use runner::{Ctx, run_scenario};
use scenarios::Scenario;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
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

fn real_main(cli: Cli) -> Result<bool> {
    regions::remove_on_signals()?;
    let base = Duration::from_secs(cli.timeout);
    let all = scenarios::all(base);
    // The bench scenarios, also for `run` (e.g. the rerun command a
    // failing bench scenario prints), with the full budget there.
    let bench_all = match &cli.cmd {
        Cmd::Bench(o) => bench::scenarios(o),
        _ => bench::scenarios(&bench::Opts::default()),
    };
    // The stress scenarios, also for `run`, with the full budget there.
    let stress_all = match &cli.cmd {
        Cmd::Stress(o) => stress::scenarios(o),
        _ => stress::scenarios(&Default::default()),
    };
    let selected: Vec<&Scenario> = match &cli.cmd {
        Cmd::List => {
            for s in &all {
                let tag = if s.in_suite { "" } else { " (not in suite)" };
                println!("{:26} {}{tag}", s.name, s.about);
            }
            for (s, tag) in bench_all
                .iter()
                .map(|s| (s, "bench"))
                .chain(stress_all.iter().map(|s| (s, "stress")))
            {
                println!("{:26} {} ({tag})", s.name, s.about);
            }
            return Ok(true);
        }
        Cmd::Suite { filter } => all
            .iter()
            .filter(|s| s.in_suite)
            .filter(|s| filter.is_empty() || filter.iter().any(|f| s.name.contains(f.as_str())))
            .collect(),
        Cmd::Run { scenarios } => scenarios
            .iter()
            .map(|n| {
                all.iter()
                    .chain(&bench_all)
                    .chain(&stress_all)
                    .find(|s| s.name == n)
                    .with_context(|| format!("no scenario named '{n}' (see `list`)"))
            })
            .collect::<Result<_>>()?,
        Cmd::Demo => all.iter().filter(|s| s.name == "demo").collect(),
        Cmd::Bench(_) => {
            if cli.bench_bin.as_ref().is_none_or(|p| !p.is_file()) {
                bail!(
                    "bench needs the static ivshmem-bench (--bench or IVSHMEM_BENCH; \
                     scripts/build-userspace.sh builds it)"
                );
            }
            bench_all.iter().collect()
        }
        Cmd::Stress(_) => stress_all.iter().collect(),
    };
    if selected.is_empty() {
        bail!("no scenario matches");
    }
    for (what, p) in [
        ("kernel", &cli.kernel),
        ("module", &cli.module),
        ("selftest", &cli.selftest),
        ("busybox", &cli.busybox),
    ] {
        if !p.is_file() {
            bail!(
                "{what} {} does not exist (build with `make`, or run `make check`)",
                p.display()
            );
        }
    }
    // Every test the scenarios name must exist, before anything boots.
    let lists = testlist::Lists {
        selftest: testlist::TestList::of(&cli.selftest)?,
        bench: cli
            .bench_bin
            .as_deref()
            .filter(|p| p.is_file())
            .map(testlist::TestList::of)
            .transpose()?,
    };
    lists.check(&selected)?;

    let workdir = match (&cli.workdir, &cli.cmd) {
        (Some(d), _) => d.clone(),
        (None, Cmd::Bench(o)) => o.out.join("logs"),
        (None, _) => std::env::temp_dir().join(format!("ivshmem-vmrun.{}", std::process::id())),
    };
    fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let initrd = workdir.join("initramfs.cpio");
    initramfs::build(
        &initramfs::Contents {
            busybox: cli.busybox.clone(),
            module: cli.module.clone(),
            selftest: cli.selftest.clone(),
            c_example: cli.c_example.clone(),
            bench: cli.bench_bin.clone(),
            cli: cli.cli.clone(),
            extra_modules: cli.guest_modules.clone(),
        },
        &initrd,
    )?;

    let debian_initrd = match &cli.debian_root {
        Some(base) => {
            let dest = workdir.join("debian-initramfs.cpio");
            initramfs::build_debian(base, &cli.selftest, None, &dest)?;
            Some(dest)
        }
        None => None,
    };
    let debian_py_initrd = match &cli.debian_py_root {
        Some(base) => {
            let dest = workdir.join("debian-python-initramfs.cpio");
            initramfs::build_debian(base, &cli.selftest, Some(&cli.python_pkg), &dest)?;
            Some(dest)
        }
        None => None,
    };

    let abs = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let probe_dir = workdir.join("kvm-probe");
    let kernel = abs(&cli.kernel);
    let (accel, why) = qemu::choose_accel(&cli.accel, &|a| probe(a, &kernel, &initrd, &probe_dir))?;

    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ivshmem-vmrun"));
    let repro = format!(
        "{} --kernel {} --module {} --selftest {} --busybox {}{}{}{}{}{}{} --accel {accel} --timeout {} --boot-deadline {} run",
        exe.display(),
        kernel.display(),
        abs(&cli.module).display(),
        abs(&cli.selftest).display(),
        abs(&cli.busybox).display(),
        cli.c_example
            .as_ref()
            .map(|p| format!(" --c-example {}", abs(p).display()))
            .unwrap_or_default(),
        cli.cli
            .as_ref()
            .map(|p| format!(" --cli {}", abs(p).display()))
            .unwrap_or_default(),
        cli.debian_root
            .as_ref()
            .map(|p| format!(" --debian-root {}", abs(p).display()))
            .unwrap_or_default(),
        cli.debian_py_root
            .as_ref()
            .map(|p| format!(
                " --debian-py-root {} --python-pkg {}",
                abs(p).display(),
                abs(&cli.python_pkg).display()
            ))
            .unwrap_or_default(),
        cli.bench_bin
            .as_ref()
            .map(|p| format!(" --bench {}", abs(p).display()))
            .unwrap_or_default(),
        cli.guest_modules
            .as_ref()
            .map(|p| format!(" --guest-modules {}", abs(p).display()))
            .unwrap_or_default(),
        cli.timeout,
        cli.boot_deadline
    );
    let ctx = Ctx {
        boot_deadline: Duration::from_secs(cli.boot_deadline),
        external_server: cli.server_socket.as_ref().map(|s| qemu::ServerLink {
            socket: s.clone(),
            shm: cli.server_shm.clone(),
        }),
        kernel_label: cli
            .kernel_label
            .clone()
            .unwrap_or_else(|| kernel.display().to_string()),
        boot: Boot {
            kernel,
            initrd,
            debian_initrd,
            debian_py_initrd,
            accel,
        },
        workdir: workdir.clone(),
        // The benchmarks' samples are read from the guests' logs.
        keep: cli.keep || matches!(cli.cmd, Cmd::Bench(_)),
        repro,
        lists,
    };
    if let Cmd::Bench(o) = &cli.cmd {
        return bench::run(&ctx, &selected, o, accel, &why);
    }

    let notes = [
        format!("accelerator: {accel} ({why})"),
        format!("kernel: {}", ctx.kernel_label),
        format!("logs: {}", workdir.display()),
    ];
    for l in report::run_header(selected.len(), &notes) {
        println!("{l}");
    }
    let mut totals = Totals::default();
    let mut all_ok = true;
    for (i, sc) in selected.iter().enumerate() {
        let (ok, t) = run_scenario(&ctx, sc, i + 1);
        all_ok &= ok;
        totals.merge(t);
    }
    if all_ok && !cli.keep && cli.workdir.is_none() {
        let _ = fs::remove_dir_all(&workdir);
    }
    for l in report::run_footer(totals) {
        println!("{l}");
    }
    Ok(all_ok)
}

/// Boots a guest that only reaches user space, to see whether `accel`
/// works here.
fn probe(accel: Accel, kernel: &Path, initrd: &Path, dir: &Path) -> bool {
    let spec = qemu::GuestSpec::new("probe", &[]);
    let boot = Boot {
        kernel: kernel.to_path_buf(),
        initrd: initrd.to_path_buf(),
        debian_initrd: None,
        debian_py_initrd: None,
        accel,
    };
    let Ok(mut g) = Guest::start(&spec, &boot, dir, "ivt_probe=1", &|_| PathBuf::new(), None)
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    qemu::wait_all(
        std::slice::from_mut(&mut g),
        deadline,
        None,
        &mut || {},
        &mut |_, _| {},
    );
    fs::read_to_string(&g.ktap)
        .map(|s| s.contains("ivt-probe-ok"))
        .unwrap_or(false)
}
