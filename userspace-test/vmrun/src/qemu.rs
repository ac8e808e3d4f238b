//! Starting, watching and stopping QEMU guests.

use anyhow::{Context, Result, bail};
use std::fmt;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmrun_protocol::{ParseError, Request};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// What the kernel prints on the console when it starts init.
pub const INIT_LINE: &str = "Run /init as init process";

/// How QEMU executes the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// An ivshmem device given to a guest.
#[derive(Debug, Clone)]
pub enum Device {
    /// `ivshmem-plain` backed by a file under /dev/shm. Guests that name
    /// the same region share it.
    Plain {
        /// Name of the shared region.
        region: String,
        /// Size in bytes.
        size: u64,
    },
    /// `ivshmem-doorbell` on the scenario's ivshmem server.
    Doorbell {
        /// MSI-X vectors.
        vectors: u32,
    },
}

/// The scenario's ivshmem server, as the guests' QEMUs see it.
#[derive(Debug, Clone)]
pub struct ServerLink {
    /// Its socket.
    pub socket: PathBuf,
    /// The shared memory it hands out (a file under /dev/shm).
    pub shm: PathBuf,
}

/// What a guest's root file system is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// The runner's busybox initramfs: init insmods the module itself.
    Busybox,
    /// A small Debian system (the `debian` guest flavour) where an installed
    /// package put the module and its udev rule; udev loads the module.
    Debian,
    /// The same Debian system with Debian's CPython and pytest, and the
    /// Python package (`userspace/python`) in `/usr/local/lib/ivshmem-python`
    /// (the `debian-python` flavour).
    DebianPython,
}

/// The program a guest's init runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `ivshmem-selftest`, the default.
    Selftest,
    /// `ivshmem-bench` (the setting `prog=bench`).
    Bench,
}

/// One guest of a scenario.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// A short name, unique within the scenario.
    pub name: String,
    /// Its ivshmem devices, in PCI slot order.
    pub devices: Vec<Device>,
    /// The selftests to run; empty runs the default set.
    pub tests: Vec<String>,
    /// Virtual CPUs.
    pub smp: u32,
    /// Memory in MiB.
    pub mem_mib: u32,
    /// Settings for the tests, passed as `ivt_KEY=VALUE` on the kernel
    /// command line (the guest's init sees them as environment variables).
    pub env: Vec<(String, String)>,
    /// Put the first ivshmem device behind a `pcie-root-port` (id `shm0`,
    /// bus `rp0`) so QMP can hot-unplug and re-plug it.
    pub hotplug: bool,
    /// Its root file system.
    pub root: Root,
    /// Give it a virtual IOMMU (`intel-iommu`, with `intel_iommu=on
    /// iommu=pt` on its kernel command line), so that vfio-pci can take
    /// its ivshmem devices: Debian's kernel has no `VFIO_NOIOMMU`.
    pub viommu: bool,
    /// More kernel command line parameters (e.g. `pci=nomsi`).
    pub kernel_args: Vec<String>,
}

impl GuestSpec {
    /// A guest (two CPUs, 512 MiB) of the given name, running the given tests.
    pub fn new(name: &str, tests: &[&str]) -> Self {
        Self {
            name: name.into(),
            devices: Vec::new(),
            tests: tests.iter().map(|t| t.to_string()).collect(),
            smp: 2,
            mem_mib: 512,
            env: Vec::new(),
            hotplug: false,
            root: Root::Busybox,
            viommu: false,
            kernel_args: Vec::new(),
        }
    }

    /// Boots the guest on the Debian root instead of busybox (1 GiB of
    /// memory: the root lives in RAM).
    pub fn debian_root(mut self) -> Self {
        self.root = Root::Debian;
        self.mem_mib = self.mem_mib.max(1024);
        self
    }

    /// Boots the guest on the Debian root with CPython, pytest and the
    /// Python package (1.5 GiB of memory: the larger root lives in RAM).
    pub fn debian_python_root(mut self) -> Self {
        self.root = Root::DebianPython;
        self.mem_mib = self.mem_mib.max(1536);
        self
    }

    /// The program the guest's init runs.
    pub fn program(&self) -> Program {
        if self.env.iter().any(|(k, v)| k == "prog" && v == "bench") {
            Program::Bench
        } else {
            Program::Selftest
        }
    }

    /// Adds a setting for the tests.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.into(), value.to_string()));
        self
    }

    /// Gives the guest `n` virtual CPUs instead of two.
    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }

    /// Gives the guest `mib` MiB of memory instead of 512.
    pub fn mem_mib(mut self, mib: u32) -> Self {
        self.mem_mib = mib;
        self
    }

    /// Gives the guest a virtual IOMMU (see the field `viommu`).
    pub fn viommu(mut self) -> Self {
        self.viommu = true;
        self
    }

    /// Adds `arg` to the guest kernel's command line.
    pub fn kernel_arg(mut self, arg: &str) -> Self {
        self.kernel_args.push(arg.into());
        self
    }

    /// Makes the first device hot-pluggable.
    pub fn hotplug(mut self) -> Self {
        self.hotplug = true;
        self
    }

    /// Adds an `ivshmem-doorbell` device on the scenario's server.
    pub fn doorbell(mut self, vectors: u32) -> Self {
        self.devices.push(Device::Doorbell { vectors });
        self
    }

    /// Adds an `ivshmem-plain` device.
    pub fn plain(mut self, region: &str, size: u64) -> Self {
        self.devices.push(Device::Plain {
            region: region.into(),
            size,
        });
        self
    }
}

/// Makes a child process die with the runner, however the runner dies, so
/// that no QEMU or server outlives it.
pub fn die_with_runner(cmd: &mut Command) {
    // SAFETY: The closure runs in the child between fork and exec and only
    // makes one async-signal-safe system call (prctl); it allocates nothing and
    // takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
}

/// The `-device` argument of the `i`th ivshmem-plain device (id `shm<i>`,
/// memory `mem<i>`).
pub fn plain_device(i: usize) -> String {
    format!("ivshmem-plain,id=shm{i},memdev=mem{i}")
}

/// Files a guest boots from.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The Debian root's initramfs, if the run has one.
    pub debian_initrd: Option<PathBuf>,
    /// The Debian root with CPython's initramfs, if the run has one.
    pub debian_py_initrd: Option<PathBuf>,
    /// The accelerator.
    pub accel: Accel,
}

/// A running guest. Dropping it kills QEMU.
#[derive(Debug)]
pub struct Guest {
    /// Its name.
    pub name: String,
    child: Child,
    /// Serial console (ttyS0): kernel messages.
    pub console: PathBuf,
    /// Second serial port (ttyS1): the harness's KTAP.
    pub ktap: PathBuf,
    /// QEMU's own stderr.
    pub qemu_log: PathBuf,
    /// QEMU's QMP socket.
    pub qmp: PathBuf,
    /// Backing file and size of each ivshmem-plain device, by index.
    pub plain: Vec<(PathBuf, u64)>,
    /// The ivshmem server of the scenario, if any.
    pub server: Option<ServerLink>,
}

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself with this status.
    Exited(Option<i32>),
    /// The deadline passed; QEMU was killed.
    TimedOut,
}

impl Guest {
    /// Starts QEMU for `spec` in `dir`, with shared memory files from
    /// `region_path`.
    pub fn start(
        spec: &GuestSpec,
        boot: &Boot,
        dir: &Path,
        extra_append: &str,
        region_path: &dyn Fn(&str) -> PathBuf,
        server: Option<&ServerLink>,
    ) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let console = dir.join("console.log");
        let ktap = dir.join("ktap.log");
        let qemu_log = dir.join("qemu.log");
        let qmp = dir.join("qmp.sock");
        let initrd = match spec.root {
            Root::Busybox => boot.initrd.clone(),
            Root::Debian => boot
                .debian_initrd
                .clone()
                .context("this guest needs the Debian root (--debian-root)")?,
            Root::DebianPython => boot
                .debian_py_initrd
                .clone()
                .context("this guest needs the Debian root with Python (--debian-py-root)")?,
        };
        // no_timer_check: the IO-APIC timer check busy-waits for ticks and,
        // under TCG on a loaded host, misjudges the emulated timer and
        // panics ("IO-APIC + timer doesn't work!"), as virtual machine
        // images commonly avoid with this parameter.
        // hung_task_timeout_secs: a task stuck in D state is reported
        // (and fails the scenario) well before the scenario times out.
        let mut append = format!(
            "console=ttyS0 panic=-1 oops=panic printk.time=1 no_timer_check \
             sysctl.kernel.hung_task_timeout_secs=20 ivt_name={}",
            spec.name
        );
        if !spec.tests.is_empty() {
            append += &format!(" ivt_tests={}", spec.tests.join(","));
        }
        for (k, v) in &spec.env {
            append += &format!(" ivt_{k}={v}");
        }
        if spec.viommu {
            // The IOMMU on (Debian's default already, INTEL_IOMMU_DEFAULT_
            // ON_INTGPU_OFF, but not every kernel's), and the devices'
            // default domains identity-mapped (`pt`): vfio-pci still puts
            // a device it takes in a translated domain of its own (type1),
            // and nothing else pays for translation.
            append += " intel_iommu=on iommu=pt";
        }
        for a in &spec.kernel_args {
            append += " ";
            append += a;
        }
        if !extra_append.is_empty() {
            append += " ";
            append += extra_append;
        }
        let mut args: Vec<String> = vec![
            "-nodefaults".into(),
            "-no-reboot".into(),
            "-display".into(),
            "none".into(),
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            boot.accel.to_string(),
            "-cpu".into(),
            match boot.accel {
                Accel::Kvm => "host".into(),
                // TCG's `max` has 5-level paging, with which the 7.3.4 KASAN
                // kernel intermittently reported a wild-memory-access from an
                // early interrupt (during identify_cpu, before any module).
                Accel::Tcg => "max,la57=off".into(),
            },
            "-smp".into(),
            spec.smp.to_string(),
            "-m".into(),
            format!("{}M", spec.mem_mib),
            "-kernel".into(),
            boot.kernel.display().to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            append,
            "-chardev".into(),
            format!("file,id=con,path={}", console.display()),
            "-serial".into(),
            "chardev:con".into(),
            "-chardev".into(),
            format!("file,id=ktap,path={}", ktap.display()),
            "-serial".into(),
            "chardev:ktap".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp.display()),
        ];
        if spec.viommu {
            // Before any other PCI device. Its interrupt remapping is
            // QEMU's default (intremap=auto): on under TCG; under KVM
            // with the full in-kernel irqchip, which cannot serve it,
            // off (not tried here: no usable KVM).
            args.push("-device".into());
            args.push("intel-iommu".into());
        }
        if spec.hotplug {
            // ACPI PCI hot-plug of the root port (q35's default since QEMU
            // 6.1), not native PCIe hot-plug: 7.3.4's pciehp makes a
            // lockdep report on every hot-unplug, which switches lockdep
            // off for the rest of the boot.
            args.push("-device".into());
            args.push("pcie-root-port,id=rp0,chassis=1,slot=1".into());
        }
        for (i, d) in spec.devices.iter().enumerate() {
            match d {
                Device::Plain { region, size } => {
                    args.push("-object".into());
                    args.push(format!(
                        "memory-backend-file,id=mem{i},size={size},share=on,mem-path={}",
                        region_path(region).display()
                    ));
                    args.push("-device".into());
                    args.push(if spec.hotplug && i == 0 {
                        format!("{},bus=rp0", plain_device(i))
                    } else {
                        plain_device(i)
                    });
                }
                Device::Doorbell { vectors } => {
                    let Some(srv) = server else {
                        bail!("a doorbell device needs the scenario's ivshmem server");
                    };
                    args.push("-chardev".into());
                    args.push(format!("socket,path={},id=srv{i}", srv.socket.display()));
                    args.push("-device".into());
                    let device =
                        format!("ivshmem-doorbell,id=shm{i},chardev=srv{i},vectors={vectors}");
                    args.push(if spec.hotplug && i == 0 {
                        format!("{device},bus=rp0")
                    } else {
                        device
                    });
                }
            }
        }
        let stderr = File::create(&qemu_log)?;
        let mut cmd = Command::new(QEMU);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr);
        die_with_runner(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {QEMU} (is qemu-system-x86 installed?)"))?;
        // The exact command, for running this guest by hand.
        let quoted: Vec<String> = std::iter::once(QEMU.to_string())
            .chain(
                args.iter()
                    .map(|a| format!("'{}'", a.replace('\'', r"'\''"))),
            )
            .collect();
        fs::write(dir.join("qemu-cmdline.sh"), quoted.join(" ") + "\n")?;
        Ok(Self {
            name: spec.name.clone(),
            child,
            console,
            ktap,
            qemu_log,
            qmp,
            plain: spec
                .devices
                .iter()
                .filter_map(|d| match d {
                    Device::Plain { region, size } => Some((region_path(region), *size)),
                    Device::Doorbell { .. } => None,
                })
                .collect(),
            server: server.cloned(),
        })
    }

    /// Whether the kernel has started init (its console says so).
    pub fn reached_user_space(&self) -> bool {
        fs::read(&self.console)
            .map(|b| {
                b.windows(INIT_LINE.len())
                    .any(|w| w == INIT_LINE.as_bytes())
            })
            .unwrap_or(false)
    }

    /// Saves the registers of every vCPU (QMP `info registers -a`) next to
    /// the console, as `registers.txt`, and returns each vCPU's RIP: where
    /// a guest that hung is stuck (look the addresses up in the kernel's
    /// System.map). Best effort: QEMU may not answer.
    pub fn dump_registers(&self) -> Vec<String> {
        let Ok(mut qmp) = crate::qmp::Qmp::connect(&self.qmp) else {
            return Vec::new();
        };
        let args = serde_json::json!({ "command-line": "info registers -a" });
        let Ok(out) = qmp.execute("human-monitor-command", args) else {
            return Vec::new();
        };
        let text = out.as_str().unwrap_or_default();
        if let Some(dir) = self.console.parent() {
            let _ = fs::write(dir.join("registers.txt"), text);
        }
        text.split_whitespace()
            .filter(|w| w.starts_with("RIP="))
            .map(str::to_owned)
            .collect()
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns how the guest ended if it has.
    pub fn poll(&mut self) -> Result<Option<Ending>> {
        Ok(self.child.try_wait()?.map(|s| Ending::Exited(s.code())))
    }

    /// Kills QEMU and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Waits for every guest to end, or kills those still running at
/// `deadline`. Prints a heartbeat every 30 s while waiting, and carries
/// out the guests' requests (see [`Request`]) with `on_request`, which
/// also gets the requests it could not read.
pub fn wait_all(
    guests: &mut [Guest],
    deadline: Instant,
    boot_by: Option<Instant>,
    beat: &mut dyn FnMut(),
    on_request: &mut dyn FnMut(&Guest, Result<Request, ParseError>),
) -> Vec<Ending> {
    let mut seen = vec![0usize; guests.len()];
    let mut endings: Vec<Option<Ending>> = vec![None; guests.len()];
    let mut next_beat = Instant::now() + Duration::from_secs(30);
    let mut boot_checked = boot_by.is_none();
    loop {
        for (g, e) in guests.iter_mut().zip(endings.iter_mut()) {
            if e.is_none() {
                *e = g.poll().unwrap_or(Some(Ending::Exited(None)));
            }
        }
        if endings.iter().all(Option::is_some) {
            break;
        }
        if Instant::now() >= deadline {
            for (g, e) in guests.iter_mut().zip(endings.iter_mut()) {
                if e.is_none() {
                    g.kill();
                    *e = Some(Ending::TimedOut);
                }
            }
            break;
        }
        // A guest still short of user space by `boot_by` hung in early
        // boot (an emulator flake under TCG): stop the whole scenario now,
        // rather than at its deadline, so that the caller can retry it.
        if !boot_checked && boot_by.is_some_and(|b| Instant::now() >= b) {
            boot_checked = true;
            let hung = guests
                .iter()
                .zip(endings.iter())
                .any(|(g, e)| e.is_none() && !g.reached_user_space());
            if hung {
                for (g, e) in guests.iter_mut().zip(endings.iter_mut()) {
                    if e.is_none() && !g.reached_user_space() {
                        println!(
                            "# guest '{}' hung in early boot; its vCPUs: {}",
                            g.name,
                            g.dump_registers().join(" ")
                        );
                    }
                }
                for (g, e) in guests.iter_mut().zip(endings.iter_mut()) {
                    if e.is_none() {
                        g.kill();
                        *e = Some(Ending::TimedOut);
                    }
                }
                break;
            }
        }
        for (g, n) in guests.iter().zip(seen.iter_mut()) {
            for req in new_requests(&g.ktap, n) {
                on_request(g, req);
            }
        }
        if Instant::now() >= next_beat {
            beat();
            next_beat += Duration::from_secs(30);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    endings.into_iter().flatten().collect()
}

/// Returns the requests in `ktap` past byte `*seen` on complete lines, and
/// moves `*seen` past them.
fn new_requests(ktap: &Path, seen: &mut usize) -> Vec<Result<Request, ParseError>> {
    let Ok(bytes) = fs::read(ktap) else {
        return Vec::new();
    };
    let Some(fresh) = bytes.get(*seen..) else {
        return Vec::new();
    };
    let Some(last_nl) = fresh.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    *seen += last_nl + 1;
    String::from_utf8_lossy(&fresh[..=last_nl])
        .lines()
        .filter_map(Request::from_line)
        .collect()
}

/// Picks the accelerator. `requested` is "kvm", "tcg" or "auto". Returns
/// the choice and why it was made.
pub fn choose_accel(requested: &str, probe: &dyn Fn(Accel) -> bool) -> Result<(Accel, String)> {
    match requested {
        "kvm" => return Ok((Accel::Kvm, "requested".into())),
        "tcg" => return Ok((Accel::Tcg, "requested".into())),
        "auto" => {}
        other => bail!("unknown accelerator '{other}' (auto, kvm or tcg)"),
    }
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Ok((Accel::Tcg, "/dev/kvm cannot be opened".into()));
    }
    // A PVM host runs only PVM-aware guests: a standard kernel hangs before
    // its first console line, so don't even try.
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Ok((
            Accel::Tcg,
            "the host's KVM is PVM (kvm_pvm), which cannot run a standard guest".into(),
        ));
    }
    if probe(Accel::Kvm) {
        Ok((Accel::Kvm, "a probe guest booted under KVM".into()))
    } else {
        Ok((Accel::Tcg, "a probe guest did not boot under KVM".into()))
    }
}
