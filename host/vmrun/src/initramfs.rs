//! The guest's initramfs: busybox, the module, the selftest harness, the
//! `ivshmem` command, init.

use crate::cpio;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The guest's `/init`. It runs the selftests named by the kernel command
/// line (`ivt_tests=a,b`; none means the default set) with their KTAP on
/// ttyS1, apart from the kernel's console on ttyS0, then powers off.
/// `ivt_probe=1` only proves that the guest reached user space.
const INIT: &str = r##"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
out=/dev/ttyS1
if [ -n "$ivt_probe" ]; then
	echo ivt-probe-ok >$out
	poweroff -f
fi
echo "ivshmem-vmrun: guest $ivt_name up, $(uname -r), $(nproc) cpus, running: ${ivt_tests:-default set}" >/dev/console
/bin/ivshmem-selftest $(echo "$ivt_tests" | tr , ' ') >$out 2>/dev/console
echo "# ivshmem-selftest exit=$?" >$out
poweroff -f
"##;

/// `/init` of the Debian root: udev loads what the devices need, as on a
/// distribution (nothing here calls insmod or modprobe), then the named
/// selftests run as in the busybox root. Power-off is by sysrq, as the
/// root has no init system.
const DEBIAN_INIT: &str = r##"#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /run /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
out=/dev/ttyS1
# init must not exit (the kernel would panic): power off and wait for it.
off() {
	echo o >/proc/sysrq-trigger
	sleep 60
}
if [ -n "$ivt_probe" ]; then
	echo ivt-probe-ok >$out
	off
fi
echo "ivshmem-vmrun: guest $ivt_name up (Debian root), $(uname -r), $(nproc) cpus, running: $ivt_tests" >/dev/console
/usr/lib/systemd/systemd-udevd --daemon
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=120 || echo "ivshmem-vmrun: udevadm settle timed out" >/dev/console
/usr/local/bin/ivshmem-selftest $(echo "$ivt_tests" | tr , ' ') >$out 2>/dev/console
echo "# ivshmem-selftest exit=$?" >$out
off
"##;

/// Writes the Debian root's initramfs to `dest`: the root made by
/// `scripts/dkms-install.sh` (`base`, a cpio), followed by a second cpio
/// with its `/init` and the selftest harness. The kernel unpacks both.
pub fn build_debian(base: &Path, selftest: &Path, dest: &Path) -> Result<()> {
    let mut w = cpio::Writer::new(Vec::new());
    w.file("/init", 0o755, DEBIAN_INIT.as_bytes())?;
    w.dir("/usr/local/bin")?;
    w.file("/usr/local/bin/ivshmem-selftest", 0o755, &read(selftest)?)?;
    let mut bytes = read(base)?;
    // Each archive of a concatenation starts 4-byte aligned.
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes.extend_from_slice(&w.finish()?);
    fs::write(dest, bytes).with_context(|| format!("writing {}", dest.display()))
}

/// What goes into the initramfs.
#[derive(Debug, Clone)]
pub struct Contents {
    /// A statically linked busybox.
    pub busybox: PathBuf,
    /// The driver module.
    pub module: PathBuf,
    /// The statically linked selftest harness.
    pub selftest: PathBuf,
    /// The statically linked C example (ivshmem-info, with ivshmem-ring
    /// beside it), if built.
    pub c_example: Option<PathBuf>,
    /// The statically linked `ivshmem` command, if built: `/bin/ivshmem`.
    pub cli: Option<PathBuf>,
}

fn read(p: &Path) -> Result<Vec<u8>> {
    fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// Writes the initramfs to `dest`.
pub fn build(c: &Contents, dest: &Path) -> Result<()> {
    let mut w = cpio::Writer::new(Vec::new());
    for d in [
        "/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp", "/run", "/root", "/etc", "/lib",
    ] {
        w.dir(d)?;
    }
    w.dir("/lib/modules")?;
    w.chardev("/dev/console", 0o600, 5, 1)?;
    w.file("/init", 0o755, INIT.as_bytes())?;
    w.file("/bin/busybox", 0o755, &read(&c.busybox)?)?;
    w.symlink("/bin/sh", "busybox")?;
    w.file("/lib/modules/ivshmem.ko", 0o644, &read(&c.module)?)?;
    w.file("/bin/ivshmem-selftest", 0o755, &read(&c.selftest)?)?;
    if let Some(p) = &c.c_example {
        w.file("/bin/ivshmem-info", 0o755, &read(p)?)?;
        // Its sibling, built the same way.
        let ring = p.with_file_name("ivshmem-ring");
        if ring.is_file() {
            w.file("/bin/ivshmem-ring", 0o755, &read(&ring)?)?;
        }
    }
    if let Some(p) = &c.cli {
        w.file("/bin/ivshmem", 0o755, &read(p)?)?;
    }
    let bytes = w.finish()?;
    fs::write(dest, bytes).with_context(|| format!("writing {}", dest.display()))
}
