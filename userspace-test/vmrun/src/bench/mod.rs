//! `ivshmem-vmrun bench`: the benchmarks of `make bench`.
//!
//! Boots the bench scenarios (the guests run `ivshmem-bench`, which prints
//! raw samples as `# bench-json: {...}` KTAP diagnostics), runs the
//! host-only benchmarks (memcpy of a backing file, the ivshmem server with
//! many peers), then prints a Markdown table of medians, spreads and
//! ratios to each baseline, and writes a results directory: `samples.json`
//! (every raw sample and the machine), `table.md`, `machine.json`, SVG
//! plots, and the guests' logs under `logs/`.

mod host;
mod plot;
mod scenarios;
mod stats;
mod table;

use crate::runner::Ctx;
use crate::scenarios::Scenario;
use crate::session;
use anyhow::{Context, Result, bail};
use ivshmem_vmrun::cli::{Cli, Given};
use scenarios::Budget;
use serde_json::{Value, json};
use stats::Set;
use std::fs;
use std::process::Command;

pub use scenarios::scenarios;

const MIB: u64 = 1 << 20;

/// Options of `bench` (defined with the command line).
pub use ivshmem_vmrun::cli::BenchOpts as Opts;

fn first_line(path: &str, prefix: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}

/// `bench`: runs the benchmarks and writes the results. Returns whether
/// every scenario ran to the end.
pub fn run(cli: &Cli, given: &[Given], o: &Opts) -> Result<bool> {
    if cli.bench_bin.as_ref().is_none_or(|p| !p.is_file()) {
        bail!(
            "bench needs the static ivshmem-bench (--bench or IVSHMEM_BENCH; \
             scripts/build-userspace.sh builds it)"
        );
    }
    let all = scenarios(o);
    let selected: Vec<&Scenario> = all.iter().collect();
    let workdir = cli.workdir.clone().unwrap_or_else(|| o.out.join("logs"));
    // The benchmarks' samples are read from the guests' logs: keep them.
    let (ctx, why) = session::prepare(cli, given, &selected, workdir, true)?;
    measure(&ctx, &selected, o, &why)
}

/// Runs the benchmarks in `selected` and on the host, and writes the
/// results. Returns whether every one ran to the end.
fn measure(ctx: &Ctx, selected: &[&Scenario], o: &Opts, why: &str) -> Result<bool> {
    let accel = ctx.boot.accel;
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
            stats::guest_records(
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
    match host::host_memcpy(bw_file, b.bw, b.reps, &bw_case) {
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
    match host::server_peers(&b.peers, &ctx.workdir) {
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
    let tbl = table::table(&sets);
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
    plot::plot_by_size(
        &sets,
        "mmap, first",
        "mmap() of the whole BAR, first mapping: median by size",
        &o.out.join("mmap-first.svg"),
    )?;
    plot::plot_by_size(
        &sets,
        "first touch, whole mapping",
        "first touch of the whole mapping: median by size",
        &o.out.join("first-touch.svg"),
    )?;
    plot::plot_latency(&sets, &o.out.join("doorbell-latency.svg"))?;
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
