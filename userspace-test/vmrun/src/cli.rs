//! The command line of `ivshmem-vmrun`, shared by the binary and by the
//! man page and completion generator (`host/ivshmem-docgen`).

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

// The command line (its about is in the attribute).
#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "ivshmem-vmrun",
    version,
    about = "Boot QEMU guests with ivshmem devices and run the selftests"
)]
pub struct Cli {
    /// Guest kernel image (bzImage).
    #[arg(long, env = "IVSHMEM_KERNEL")]
    pub kernel: PathBuf,
    /// The driver module (ivshmem.ko).
    #[arg(long, env = "IVSHMEM_MODULE")]
    pub module: PathBuf,
    /// The statically linked in-guest harness (ivshmem-selftest).
    #[arg(long, env = "IVSHMEM_SELFTEST")]
    pub selftest: PathBuf,
    /// The statically linked C example (ivshmem-info), if built.
    #[arg(long, env = "IVSHMEM_C_EXAMPLE")]
    pub c_example: Option<PathBuf>,
    /// The statically linked `ivshmem` command, if built; the cli_* tests
    /// skip without it.
    #[arg(long, env = "IVSHMEM_CLI")]
    pub cli: Option<PathBuf>,
    /// The statically linked benchmarks (ivshmem-bench), for `bench`.
    #[arg(long = "bench", env = "IVSHMEM_BENCH")]
    pub bench_bin: Option<PathBuf>,
    /// Extra kernel modules for the guest kernel, for the benchmarks'
    /// vfio-pci contenders: a directory of uncompressed `.ko` files and a
    /// file `order` naming them in load order (scripts/dkms-install.sh
    /// makes it from the stock kernel's modules). The initramfs gets them
    /// in /lib/modules/extra; without them those contenders are skipped.
    #[arg(long, env = "IVSHMEM_GUEST_MODULES")]
    pub guest_modules: Option<PathBuf>,
    /// The suite's own test modules built for the guest kernel (the dma-buf
    /// importer of userspace-test/kmod, from build_test_modules in scripts/lib.sh):
    /// a directory whose `.ko` files the initramfs gets in
    /// /lib/modules/test; without it the tests that need them are skipped.
    #[arg(long, env = "IVSHMEM_TEST_MODULES")]
    pub test_modules: Option<PathBuf>,
    /// A statically linked busybox.
    #[arg(long, env = "IVSHMEM_BUSYBOX", default_value = "/bin/busybox")]
    pub busybox: PathBuf,
    /// The Debian guest root (a cpio from scripts/dkms-install.sh), for the
    /// scenarios that boot a distribution's user space; without it they
    /// are skipped.
    #[arg(long, env = "IVSHMEM_DEBIAN_ROOT")]
    pub debian_root: Option<PathBuf>,
    /// An ivshmem server already running (e.g. a packaged systemd unit's):
    /// scenarios that need a server use its socket instead of starting one.
    #[arg(long, env = "IVSHMEM_SERVER_SOCKET")]
    pub server_socket: Option<PathBuf>,
    /// That server's shared memory file (for the host's checks).
    #[arg(long, requires = "server_socket", default_value = "/dev/shm/ivshmem")]
    pub server_shm: PathBuf,
    /// The Debian guest root with CPython and pytest (a cpio from
    /// scripts/dkms-install.sh), for the Python package's scenario; without
    /// it that scenario is skipped.
    #[arg(long, env = "IVSHMEM_DEBIAN_PY_ROOT")]
    pub debian_py_root: Option<PathBuf>,
    /// The Python package's tree, copied into the Debian root with Python.
    #[arg(long, env = "IVSHMEM_PYTHON_PKG", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../userspace/python"))]
    pub python_pkg: PathBuf,
    /// What to call the kernel in the reports; the image's path by default.
    #[arg(long, env = "IVSHMEM_KERNEL_LABEL")]
    pub kernel_label: Option<String>,
    /// Accelerator: auto (KVM only where it boots a standard guest), kvm or tcg.
    #[arg(long, env = "IVSHMEM_ACCEL", default_value = "auto")]
    pub accel: String,
    /// Seconds a guest may take to reach user space; one that has not is
    /// taken for an emulator hang in early boot, and the scenario is
    /// stopped and retried once.
    #[arg(long, env = "IVSHMEM_BOOT_DEADLINE", default_value_t = 90)]
    pub boot_deadline: u64,
    /// Time a scenario may take, boots included, in seconds.
    #[arg(long, env = "IVSHMEM_TIMEOUT", default_value_t = 240)]
    pub timeout: u64,
    /// Where to put guest logs; a fresh directory under /tmp by default.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Keep the logs of passing scenarios too.
    #[arg(long)]
    pub keep: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// A global option as this run was given it, on the command line or in
/// the environment: what it takes to give it again (the rerun command a
/// failing scenario prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The option's id (the field's name).
    pub id: String,
    /// `--` and its long name.
    pub flag: String,
    /// Its values; none for a switch.
    pub values: Vec<OsString>,
    /// Whether its values are paths.
    pub is_path: bool,
}

impl Given {
    /// The arguments that give the option again, each value passed
    /// through `value` (e.g. to make a path absolute).
    pub fn args(&self, value: impl Fn(&OsStr) -> OsString) -> Vec<OsString> {
        if self.values.is_empty() {
            return vec![self.flag.clone().into()];
        }
        self.values
            .iter()
            .flat_map(|v| [self.flag.clone().into(), value(v)])
            .collect()
    }
}

impl Cli {
    /// Parses the process's arguments, as `Cli::parse` does, and returns
    /// the global options as given (see [`Cli::given`]).
    pub fn parse_given() -> (Self, Vec<Given>) {
        let matches = Self::command().get_matches();
        let cli = Self::from_arg_matches(&matches)
            .map_err(|e| e.format(&mut Self::command()))
            .unwrap_or_else(|e| e.exit());
        (cli, Self::given(&matches))
    }

    /// The global options `matches` holds that were given on the command
    /// line or in the environment, in the order of their definition, read
    /// from the command line's definition so that none is left out.
    /// Defaults are not given: they apply again.
    pub fn given(matches: &ArgMatches) -> Vec<Given> {
        let cmd = Self::command();
        let mut given = Vec::new();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            let (Some(long), Some(source)) = (arg.get_long(), matches.value_source(id)) else {
                continue;
            };
            if source == ValueSource::DefaultValue {
                continue;
            }
            let values = match arg.get_action() {
                ArgAction::SetTrue if matches.get_flag(id) => Vec::new(),
                ArgAction::Set | ArgAction::Append => matches
                    .get_raw(id)
                    .into_iter()
                    .flatten()
                    .map(OsStr::to_os_string)
                    .collect(),
                _ => continue,
            };
            given.push(Given {
                id: id.to_string(),
                flag: format!("--{long}"),
                values,
                is_path: arg.get_value_parser().type_id() == std::any::TypeId::of::<PathBuf>(),
            });
        }
        given
    }
}

// What to run.
#[derive(Subcommand, Debug, PartialEq)]
pub enum Cmd {
    /// Run every suite scenario, or those whose names contain a filter.
    Suite {
        /// Substrings of scenario names.
        filter: Vec<String>,
    },
    /// Run the named scenarios.
    Run {
        /// Scenario names.
        #[arg(required = true)]
        scenarios: Vec<String>,
    },
    /// List the scenarios.
    List,
    /// Run the demo.
    Demo,
    /// Run the benchmarks (`make bench`): print a table of ratios and
    /// write a results directory.
    Bench(BenchOpts),
    /// Run the stress campaign (`make stress`): the fuzzer, unbind/bind,
    /// hot-unplug and insmod/rmmod cycles, two guests ringing at full speed.
    Stress(StressOpts),
}

/// Options of `stress`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct StressOpts {
    /// The short slice `make check` runs (about 2 minutes), only so that
    /// the campaign cannot rot.
    #[arg(long)]
    pub quick: bool,
    /// The fuzzer's seed (printed by every run); the default is fixed.
    #[arg(long, value_parser = parse_seed)]
    pub seed: Option<u64>,
}

/// A seed, decimal or `0x` hexadecimal (as the runs print it).
fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))
}

/// Options of `bench`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct BenchOpts {
    /// Tiny sizes and few repetitions, only to prove that the benchmarks
    /// run (for `make check`); the figures mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// The results directory (`make bench`: build/bench/<UTC time>).
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Repetitions of the mapping and host benchmarks (interleaved across
    /// contenders), instead of the default (11; 2 with --quick).
    #[arg(long)]
    pub reps: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args`, renders its global options, and parses them again.
    fn round_trip(args: &[OsString]) -> (Cli, Cli, Vec<Given>) {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let first = Cli::from_arg_matches(&matches).unwrap();
        let given = Cli::given(&matches);
        let mut again: Vec<OsString> = vec!["ivshmem-vmrun".into()];
        again.extend(given.iter().flat_map(|g| g.args(OsStr::to_os_string)));
        again.push("list".into());
        (first, Cli::try_parse_from(again).unwrap(), given)
    }

    #[test]
    fn every_global_option_round_trips() {
        let cmd = Cli::command();
        let mut args: Vec<OsString> = vec!["ivshmem-vmrun".into()];
        let mut options = 0;
        for arg in cmd.get_arguments() {
            let long = format!("--{}", arg.get_long().unwrap());
            match arg.get_action() {
                ArgAction::SetTrue => args.push(long.into()),
                ArgAction::Set | ArgAction::Append => args.extend([long.into(), "7".into()]),
                ArgAction::Help | ArgAction::Version => continue,
                a => panic!("{long}: Cli::given does not render {a:?}"),
            }
            options += 1;
        }
        args.push("list".into());
        let (first, second, given) = round_trip(&args);
        assert_eq!(first, second);
        assert_eq!(given.len(), options, "{given:?}");
        assert!(first.keep && first.timeout == 7 && first.kernel_label.as_deref() == Some("7"));
        let kernel = given.iter().find(|g| g.id == "kernel").unwrap();
        assert!(kernel.is_path && kernel.flag == "--kernel");
        assert!(!given.iter().find(|g| g.id == "timeout").unwrap().is_path);
    }

    #[test]
    fn defaults_are_not_given_and_apply_again() {
        let args: Vec<OsString> = ["ivshmem-vmrun", "--kernel", "k", "--module", "m"]
            .into_iter()
            .chain(["--selftest", "s", "list"])
            .map(OsString::from)
            .collect();
        // `--server-shm` has a default but needs `--server-socket`: given
        // alone it would not parse.
        let (first, second, given) = round_trip(&args);
        assert_eq!(first, second);
        assert!(given.iter().all(|g| g.id != "server_shm" && g.id != "keep"));
    }
}
