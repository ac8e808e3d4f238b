//! Running one scenario: booting its guests with their server and shared
//! memory, carrying out their requests, judging what they left, and
//! printing the scenario's KTAP result.

use crate::qemu::{self, Boot, Guest};
use crate::regions::Regions;
use crate::report::{self, GuestReport, Verdict};
use crate::scenarios::{self, Scenario};
use crate::{requests, server};
use anyhow::{Context, Result};
use ktap::Totals;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vmrun_protocol::Request;

/// What every scenario of a run shares.
#[derive(Debug)]
pub struct Ctx {
    pub boot: Boot,
    /// How long a guest may take to reach user space.
    pub boot_deadline: Duration,
    /// A server the runner did not start, if any.
    pub external_server: Option<qemu::ServerLink>,
    /// The kernel, as the reports name it.
    pub kernel_label: String,
    pub workdir: PathBuf,
    pub keep: bool,
    /// The command line that reruns one scenario, without its name.
    pub repro: String,
    /// The tests the guests' programs offer.
    pub lists: crate::testlist::Lists,
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
pub fn run_scenario(ctx: &Ctx, sc: &Scenario, number: usize) -> (bool, Totals) {
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
        let v = Verdict::skip(why);
        println!("{}", v.result(number, sc.name).line());
        return (true, v.totals());
    }
    let start = Instant::now();
    let repro = format!("{} {}", ctx.repro, sc.name);
    let mut attempt = 1;
    let mut retried_because = None;
    let verdict = loop {
        let result = boot_and_collect(ctx, sc, &dir);
        // A kernel fault before the module was loaded, with no frame of the
        // driver, is the kernel's (seen: Debian's stock kernel under TCG,
        // `Oops: int3` in sched_clock_cpu, about 1 boot in 17, and twice in
        // a row in one scenario of one CI run), not a result: retry, twice
        // at most, and say so. So is an `int3` trap outside the driver
        // after it loaded (seen once: in __timekeeping_advance, sid's
        // 7.2.13), the kernel's text patching met by the other vCPU (see
        // `report::fault_before_module`). A report with a driver frame, or
        // any other made after the module loaded, is never retried.
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
            if !early.is_empty() && !later && attempt <= 2 {
                let why = early.join("; ");
                println!(
                    "# {}: kernel fault that is not the driver's (before the module loaded, or a text-patching int3 outside it: {why}); retrying ({attempt} of 2)",
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
        // TCG; and with sid's 7.2.13 stock kernel in doorbell-server, two
        // guests booting at once, stuck after "hpet0: 3 comparators"),
        // not a result: neither the module nor a test ran. Say so (with
        // the stuck vCPUs' RIPs) and retry, twice at most; a third hang
        // fails.
        if let Ok((guests, _)) = &result {
            let hung: Vec<&str> = guests
                .iter()
                .filter(|g| !g.reached_user_space && g.splats.is_empty())
                .map(|g| g.name.as_str())
                .collect();
            if !hung.is_empty() && attempt <= 2 && sc.expect == scenarios::Expect::Pass {
                println!(
                    "# {}: guest(s) {hung:?} hung in early boot (not in user space after {} s, no kernel report); retrying ({attempt} of 2)",
                    sc.name,
                    ctx.boot_deadline.min(sc.timeout).as_secs()
                );
                retried_because = Some(format!(
                    "guest(s) {hung:?} hung in early boot, with no kernel report"
                ));
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
    let lines = report::scenario_lines(
        number,
        sc.name,
        &verdict,
        retried_because.as_deref(),
        start.elapsed(),
    );
    for l in lines {
        println!("{l}");
    }
    if verdict.ok && !ctx.keep {
        let _ = fs::remove_dir_all(&dir);
    }
    (verdict.ok, verdict.totals())
}

/// Boots the scenario's guests and waits for them. Returns their reports
/// and what went wrong on the host side (hooks, guest requests).
fn boot_and_collect(
    ctx: &Ctx,
    sc: &Scenario,
    dir: &Path,
) -> Result<(Vec<GuestReport>, Vec<String>)> {
    let regions = Regions::create(sc.name, &sc.guests)?;
    let mut host_errors = Vec::new();
    let server = match (&sc.server, &ctx.external_server) {
        (Some(spec), None) => Some(server::Server::start(spec, dir, sc.name)?),
        _ => None,
    };
    let link = match (&sc.server, &ctx.external_server) {
        (Some(_), Some(external)) => Some(external.clone()),
        _ => server.as_ref().map(server::Server::link),
    };
    let mut host = requests::HostCtx::default();
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
            let req = match req {
                Ok(Request::Progress(what)) => {
                    println!("# {}: guest '{}': {what}", sc.name, g.name);
                    return;
                }
                Ok(req) => req,
                Err(e) => {
                    println!("# {}: guest '{}': {e}", sc.name, g.name);
                    host_errors.push(format!("guest '{}': {e}", g.name));
                    return;
                }
            };
            let t = Instant::now();
            match requests::carry_out(g, &req, &mut host) {
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
        let spec = sc.guests.iter().find(|s| s.name == g.name);
        let planned = spec.map(|s| ctx.lists.planned(s)).unwrap_or_default();
        reports.push(GuestReport::collect(g, ending, sc.timeout, planned));
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
        let status = w.exited_within(Duration::from_secs(10));
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
        if let Err(e) = requests::distinct_peers(&host.peers, sc.guests.len()) {
            host_errors.push(format!("{e:#}"));
        }
    }
    drop(server);
    if let Some(after) = sc.after {
        // Only meaningful when the guests finished, and when some test of
        // theirs ran: when every one skipped (the kernel lacks what they
        // need), nothing was to write the memory, and the skips say why.
        let finished = reports.iter().all(|r| r.exit_code.is_some());
        let all_skipped = reports.iter().all(|r| {
            let t = r.ktap.totals();
            t.skip > 0 && t.pass + t.fail == 0
        });
        if finished && all_skipped {
            println!(
                "# {}: the host's check of the shared memory is not run: every guest test skipped",
                sc.name
            );
        } else if finished {
            if let Err(e) = after(&regions) {
                host_errors.push(format!(
                    "the host's check of the shared memory failed: {e:#}"
                ));
            }
        }
    }
    Ok((reports, host_errors))
}
