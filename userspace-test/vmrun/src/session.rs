//! A run of scenarios: what they share (the guests' initramfs, the
//! accelerator, the command that reruns one of them), and running them
//! one after the other between the runner's KTAP header and footer.

use crate::qemu::{self, Accel, Boot, Guest};
use crate::runner::{Ctx, run_scenario};
use crate::scenarios::Scenario;
use crate::{initramfs, report, testlist};
use anyhow::{Context, Result, bail};
use ivshmem_vmrun::cli::{Cli, Given};
use ktap::Totals;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runs `selected` with the runner's KTAP header and footer (`suite`,
/// `run`, `demo`, `stress`). Returns whether every scenario passed.
pub fn run(cli: &Cli, given: &[Given], selected: &[&Scenario]) -> Result<bool> {
    let workdir = cli.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ivshmem-vmrun.{}", std::process::id()))
    });
    let (ctx, why) = prepare(cli, given, selected, workdir, cli.keep)?;
    let notes = [
        format!("accelerator: {} ({why})", ctx.boot.accel),
        format!("kernel: {}", ctx.kernel_label),
        format!("logs: {}", ctx.workdir.display()),
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
        let _ = fs::remove_dir_all(&ctx.workdir);
    }
    for l in report::run_footer(totals) {
        println!("{l}");
    }
    Ok(all_ok)
}

/// Checks that `selected` can run (the files exist, every test they name
/// does), builds the guests' initramfs in `workdir` and chooses the
/// accelerator. Returns what the scenarios share, and why that
/// accelerator.
pub fn prepare(
    cli: &Cli,
    given: &[Given],
    selected: &[&Scenario],
    workdir: PathBuf,
    keep: bool,
) -> Result<(Ctx, String)> {
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
    lists.check(selected)?;

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
            test_modules: cli.test_modules.clone(),
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

    let probe_dir = workdir.join("kvm-probe");
    let kernel = absolute(&cli.kernel);
    let (accel, why) = qemu::choose_accel(&cli.accel, &|a| probe(a, &kernel, &initrd, &probe_dir))?;
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
        workdir,
        keep,
        repro: rerun_command(given, accel),
        lists,
    };
    Ok((ctx, why))
}

/// `p` made absolute, where it exists.
fn absolute(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The command that reruns one scenario alone, without its name: this
/// runner with the global options this run was given (paths made
/// absolute), the accelerator it chose, and `run`. Not `--workdir`: the
/// rerun must not replace the logs of the failure.
fn rerun_command(given: &[Given], accel: Accel) -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ivshmem-vmrun"));
    let mut words: Vec<OsString> = vec![exe.into()];
    for g in given
        .iter()
        .filter(|g| g.id != "workdir" && g.id != "accel")
    {
        words.extend(g.args(|v| match g.is_path {
            true => absolute(Path::new(v)).into(),
            false => v.to_os_string(),
        }));
    }
    words.extend(["--accel".into(), accel.to_string().into(), "run".into()]);
    words
        .iter()
        .map(|w| w.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_rerun_repeats_what_was_given_but_the_workdir() {
        let args = ["ivshmem-vmrun", "--kernel", "/k", "--module", "/m"]
            .into_iter()
            .chain(["--selftest", "/s", "--timeout", "9", "--workdir", "/w"])
            .chain(["--keep", "--accel", "auto", "list"]);
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let r = rerun_command(&Cli::given(&matches), Accel::Tcg);
        assert!(r.contains(" --kernel /k --module /m --selftest /s "), "{r}");
        assert!(r.contains(" --timeout 9 --keep --accel tcg run"), "{r}");
        assert!(!r.contains("--workdir") && !r.contains("auto"), "{r}");
    }
}
