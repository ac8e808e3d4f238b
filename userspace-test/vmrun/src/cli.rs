//! The command line of `ivshmem-vmrun`, shared by the binary and by the
//! man page and completion generator (`host/ivshmem-docgen`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

// The command line (its about is in the attribute).
#[derive(Parser, Debug)]
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

// What to run.
#[derive(Subcommand, Debug)]
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
#[derive(clap::Args, Debug, Clone, Default)]
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
#[derive(clap::Args, Debug, Clone, Default)]
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
