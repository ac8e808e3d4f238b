//! `ivshmem-vmrun`: boots QEMU guests with ivshmem devices, runs the
//! in-guest selftests, and reports their KTAP.
//!
//! Each scenario boots one or more guests from the same kernel and
//! initramfs, gives them ivshmem devices backed by files the host can read
//! and write, and collects each guest's KTAP from its second serial port.
//! The runner's own output is KTAP, with the guests' results nested; its
//! last line is `vmrun: N passed, N failed, N skipped`.

mod bench;
mod cpio;
mod hostcheck;
mod initramfs;
mod qemu;
mod qmp;
mod report;
mod scenarios;
mod server;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ivshmem_vmrun::cli::{Cli, Cmd};
use ktap::Totals;
use qemu::{Accel, Boot, Device, Guest};
use report::{GuestReport, Verdict};
use scenarios::Scenario;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What every scenario of a run shares.
struct Ctx {
    boot: Boot,
    /// How long a guest may take to reach user space.
    boot_deadline: Duration,
    /// A server the runner did not start, if any.
    external_server: Option<qemu::ServerLink>,
    /// The kernel, as the reports name it.
    kernel_label: String,
    workdir: PathBuf,
    keep: bool,
    /// The command line that reruns one scenario, without its name.
    repro: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ivshmem-vmrun: {e:#}");
            println!("Bail out! {}", format!("{e:#}").replace('\n', " "));
            println!("vmrun: 0 passed, 1 failed, 0 skipped");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<bool> {
    let base = Duration::from_secs(cli.timeout);
    let all = scenarios::all(base);
    // The bench scenarios, also for `run` (e.g. the rerun command a
    // failing bench scenario prints), with the full budget there.
    let bench_all = match &cli.cmd {
        Cmd::Bench(o) => bench::scenarios(o),
        _ => bench::scenarios(&bench::Opts::default()),
    };
    let selected: Vec<&Scenario> = match &cli.cmd {
        Cmd::List => {
            for s in &all {
                let tag = if s.in_suite { "" } else { " (not in suite)" };
                println!("{:26} {}{tag}", s.name, s.about);
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
        "{} --kernel {} --module {} --selftest {} --busybox {}{}{}{}{}{} --accel {accel} --timeout {} --boot-deadline {} run",
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
    };
    if let Cmd::Bench(o) = &cli.cmd {
        return bench::run(&ctx, &selected, o, accel, &why);
    }

    println!("KTAP version 1");
    println!("1..{}", selected.len());
    println!("# accelerator: {accel} ({why})");
    println!("# kernel: {}", ctx.kernel_label);
    println!("# logs: {}", workdir.display());
    let mut totals = Totals::default();
    let mut all_ok = true;
    for (i, sc) in selected.iter().enumerate() {
        let (ok, t) = run_scenario(&ctx, sc, i + 1);
        all_ok &= ok;
        totals.merge(t);
    }
    println!(
        "# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:0",
        totals.pass, totals.fail, totals.skip
    );
    if all_ok && !cli.keep && cli.workdir.is_none() {
        let _ = fs::remove_dir_all(&workdir);
    }
    println!("vmrun: {totals}");
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

/// Shared memory files of a scenario, removed when dropped.
#[derive(Debug)]
pub struct Regions {
    paths: BTreeMap<String, PathBuf>,
}

impl Regions {
    fn create(sc: &Scenario) -> Result<Self> {
        let mut paths = BTreeMap::new();
        let mut r = Regions {
            paths: BTreeMap::new(),
        };
        for g in &sc.guests {
            for d in &g.devices {
                let Device::Plain { region, size } = d else {
                    continue;
                };
                if paths.contains_key(region) {
                    continue;
                }
                let p = PathBuf::from(format!(
                    "/dev/shm/ivshmem-vmrun.{}.{}.{region}",
                    std::process::id(),
                    sc.name
                ));
                let f =
                    fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?;
                f.set_len(*size)
                    .with_context(|| format!("sizing {} to {size} bytes", p.display()))?;
                paths.insert(region.clone(), p.clone());
                r.paths.insert(region.clone(), p);
            }
        }
        Ok(r)
    }

    /// The backing file of `region`.
    pub fn path(&self, region: &str) -> PathBuf {
        self.paths.get(region).cloned().unwrap_or_default()
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        for p in self.paths.values() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Why the scenario cannot run with this run's guest roots, if it cannot.
fn missing_root(boot: &Boot, sc: &Scenario) -> Option<&'static str> {
    sc.guests.iter().find_map(|g| match g.root {
        qemu::Root::Busybox => None,
        qemu::Root::Debian => boot.debian_initrd.is_none().then_some(
            "needs the Debian guest root (--debian-root, made by scripts/dkms-install.sh)",
        ),
        qemu::Root::DebianPython => boot.debian_py_initrd.is_none().then_some(
            "needs the Debian guest root with CPython (--debian-py-root, made by scripts/dkms-install.sh)",
        ),
    })
}

/// Runs one scenario and prints its KTAP result as test `number`. Returns
/// whether it passed and its leaf counts.
fn run_scenario(ctx: &Ctx, sc: &Scenario, number: usize) -> (bool, Totals) {
    let dir = ctx.workdir.join(sc.name);
    let _ = fs::remove_dir_all(&dir);
    println!(
        "# {}: {} ({} guest{}, {}, kernel: {})",
        sc.name,
        sc.about,
        sc.guests.len(),
        if sc.guests.len() == 1 { "" } else { "s" },
        ctx.boot.accel,
        ctx.kernel_label
    );
    if let Some(why) = missing_root(&ctx.boot, sc) {
        println!("ok {number} {} # SKIP {why}", sc.name);
        return (
            true,
            Totals {
                skip: 1,
                ..Totals::default()
            },
        );
    }
    let start = Instant::now();
    let repro = format!("{} {}", ctx.repro, sc.name);
    let mut attempt = 1;
    let mut retried_because = None;
    let verdict = loop {
        let result = boot_and_collect(ctx, sc, &dir);
        // A kernel fault before the module was loaded, with no frame of the
        // driver, is the kernel's (seen: Debian's stock kernel under TCG,
        // `Oops: int3` in sched_clock_cpu, about 1 boot in 17), not a
        // result: retry once and say so. A report with a driver frame, or
        // one made after the module loaded, is never retried.
        if let Ok((guests, _)) = &result {
            let early: Vec<String> = guests
                .iter()
                .filter_map(|g| {
                    g.fault_before_module
                        .as_ref()
                        .map(|f| format!("guest '{}': {f}", g.name))
                })
                .collect();
            let later = guests
                .iter()
                .any(|g| !g.splats.is_empty() && g.fault_before_module.is_none());
            // Whatever the scenario expects, this is not it.
            if !early.is_empty() && !later && attempt == 1 {
                let why = early.join("; ");
                println!(
                    "# {}: kernel fault before the module was loaded, not the driver's ({why}); retrying once",
                    sc.name
                );
                retried_because = Some(why);
                attempt += 1;
                let _ = fs::remove_dir_all(&dir);
                continue;
            }
        }
        // A guest that hung before user space, with no kernel report, is
        // a boot flake of the emulator (seen under heavy host load with
        // TCG), not a result: neither the module nor a test ran. Say so
        // and retry once; a second hang fails.
        if let Ok((guests, _)) = &result {
            let hung: Vec<&str> = guests
                .iter()
                .filter(|g| !g.reached_user_space && g.splats.is_empty())
                .map(|g| g.name.as_str())
                .collect();
            if !hung.is_empty() && attempt == 1 && sc.expect == scenarios::Expect::Pass {
                println!(
                    "# {}: guest(s) {hung:?} hung in early boot (not in user space after {} s, no kernel report); retrying once",
                    sc.name,
                    ctx.boot_deadline.min(sc.timeout).as_secs()
                );
                attempt += 1;
                let _ = fs::remove_dir_all(&dir);
                continue;
            }
        }
        break match result {
            Ok((guests, host_errors)) => {
                let mut v = report::judge(sc, &guests, &repro);
                if !host_errors.is_empty() {
                    v.fail_host(&host_errors, &repro);
                }
                v
            }
            Err(e) => Verdict::error(format!("{e:#}")),
        };
    };
    let elapsed = start.elapsed();
    if let Some(why) = &retried_because {
        println!(
            "  # retried: the first attempt hit a kernel fault before the module was loaded: {why}"
        );
    }
    for l in &verdict.lines {
        println!("  {l}");
    }
    println!("# {}: {:.1} s", sc.name, elapsed.as_secs_f64());
    println!("{}", verdict.result_line(number, sc.name));
    if verdict.ok && !ctx.keep {
        let _ = fs::remove_dir_all(&dir);
    }
    (verdict.ok, verdict.totals)
}

/// Boots the scenario's guests and waits for them. Returns their reports
/// and what went wrong on the host side (hooks, guest requests).
fn boot_and_collect(
    ctx: &Ctx,
    sc: &Scenario,
    dir: &Path,
) -> Result<(Vec<GuestReport>, Vec<String>)> {
    let regions = Regions::create(sc)?;
    let mut host_errors = Vec::new();
    let server = match (&sc.server, &ctx.external_server) {
        (Some(spec), None) => Some(server::Server::start(spec, dir, sc.name)?),
        _ => None,
    };
    let link = match (&sc.server, &ctx.external_server) {
        (Some(_), Some(external)) => Some(external.clone()),
        _ => server.as_ref().map(server::Server::link),
    };
    let mut host = hostcheck::HostCtx::default();
    if let Some(before) = sc.before {
        before(&regions).context("the host's preparation of the shared memory failed")?;
    }
    let mut guests = Vec::new();
    for spec in &sc.guests {
        guests.push(Guest::start(
            spec,
            &ctx.boot,
            &dir.join(&spec.name),
            "",
            &|r| regions.path(r),
            link.as_ref(),
        )?);
    }
    host.pids = guests.iter().map(|g| (g.name.clone(), g.pid())).collect();
    let start = Instant::now();
    let endings = qemu::wait_all(
        &mut guests,
        start + sc.timeout,
        Some(start + ctx.boot_deadline.min(sc.timeout)),
        &mut || {
            println!(
                "# {}: still running after {} s",
                sc.name,
                start.elapsed().as_secs()
            );
        },
        &mut |g, req| {
            if let Some(what) = req.strip_prefix("progress ") {
                println!("# {}: guest '{}': {what}", sc.name, g.name);
                return;
            }
            let t = Instant::now();
            match hostcheck::carry_out(g, req, &mut host) {
                Ok(()) => println!(
                    "# {}: guest '{}' asked for `{req}`: done in {:.1} s",
                    sc.name,
                    g.name,
                    t.elapsed().as_secs_f64()
                ),
                Err(e) => {
                    println!("# {}: guest '{}' asked for `{req}`: {e:#}", sc.name, g.name);
                    host_errors.push(format!("`{req}` for guest '{}' failed: {e:#}", g.name));
                }
            }
        },
    );
    let mut reports = Vec::new();
    for (g, ending) in guests.iter().zip(endings) {
        reports.push(GuestReport::collect(g, ending, sc.timeout));
    }
    // Every QEMU must be gone before the next scenario.
    for g in &mut guests {
        g.kill();
    }
    for (g, r) in guests.iter().zip(reports.iter_mut()) {
        r.reaped = !Path::new(&format!("/proc/{}", g.pid())).exists();
    }
    for r in reports.iter_mut() {
        r.killed = host.killed.contains(&r.name);
    }
    // The host clients that waited for guests' rings must have got them.
    for mut w in host.waiters.drain(..) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match w.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                _ if Instant::now() > deadline => break None,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut w.out, &mut rest);
        let what = &w.what;
        let notified = rest.contains(&format!("notify vector={} count=", w.vector));
        match status {
            Some(s) if s.success() && notified => println!("# {}: {what}: got it", sc.name),
            other => {
                let _ = w.child.kill();
                let _ = w.child.wait();
                host_errors.push(format!(
                    "{what}: did not get it ({other:?}, printed {rest:?})"
                ));
            }
        }
    }
    // Only for scenarios whose guests asked the host about the peers.
    if !host.peers.confirmed.is_empty() {
        if let Err(e) = hostcheck::distinct_peers(&host.peers, sc.guests.len()) {
            host_errors.push(format!("{e:#}"));
        }
    }
    drop(server);
    if let Some(after) = sc.after {
        // Only meaningful when the guests finished.
        if reports.iter().all(|r| r.exit_code.is_some()) {
            if let Err(e) = after(&regions) {
                host_errors.push(format!(
                    "the host's check of the shared memory failed: {e:#}"
                ));
            }
        }
    }
    Ok((reports, host_errors))
}
