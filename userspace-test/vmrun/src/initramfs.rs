//! The guest's initramfs: busybox, the module, the selftest harness, the
//! `ivshmem` command, init.

use crate::cpio;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The guest's `/init`. It runs the selftests named by the kernel command
/// line (`ivt_tests=a,b`; none means the default set) with their KTAP on
/// ttyS1, apart from the kernel's console on ttyS0, then powers off.
/// `ivt_prog=bench` runs the benchmarks (`ivshmem-bench`) instead.
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
prog=ivshmem-selftest
[ "$ivt_prog" = bench ] && prog=ivshmem-bench
echo "ivshmem-vmrun: guest $ivt_name up, $(uname -r), $(nproc) cpus, running $prog: ${ivt_tests:-default set}" >/dev/console
/bin/$prog $(echo "$ivt_tests" | tr , ' ') >$out 2>/dev/console
# The runner reads the exit code from this line, whichever program ran.
echo "# ivshmem-selftest exit=$?" >$out
# Lockdep switches itself off at its first report: on a kernel that has
# it, say whether it is still on (the runner fails the guest if not).
[ -r /proc/lockdep_stats ] && echo "ivshmem-vmrun: lockdep debug_locks=$(sed -n 's/^ *debug_locks: *//p' /proc/lockdep_stats)" >/dev/console
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
[ -r /proc/lockdep_stats ] && echo "ivshmem-vmrun: lockdep debug_locks=$(sed -n 's/^ *debug_locks: *//p' /proc/lockdep_stats)" >/dev/console
off
"##;

/// Where the Python package's tree goes in the Debian root with Python.
pub const PYTHON_DIR: &str = "/usr/local/lib/ivshmem-python";

/// What of the Python package's tree goes into the guest (not what a local
/// `pip install` or a test run left there: build/, *.egg-info, caches).
const PYTHON_PARTS: &[&str] = &[
    "src",
    "tests",
    "tools",
    "examples",
    "pyproject.toml",
    "README.md",
];

/// Adds the Python package's tree (`userspace/python`: [`PYTHON_PARTS`])
/// under `dest`.
fn add_python(w: &mut cpio::Writer<Vec<u8>>, src: &Path, dest: &str) -> Result<()> {
    w.dir(dest)?;
    for part in PYTHON_PARTS {
        let path = src.join(part);
        let to = format!("{dest}/{part}");
        if path.is_dir() {
            add_tree(w, &path, &to)?;
        } else {
            w.file(&to, 0o644, &read(&path)?)?;
        }
    }
    Ok(())
}

/// Adds the directory `src` as `dest`, recursively, leaving out hidden
/// files, Python caches and egg-info.
fn add_tree(w: &mut cpio::Writer<Vec<u8>>, src: &Path, dest: &str) -> Result<()> {
    w.dir(dest)?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", src.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            || name == "__pycache__"
            || name.ends_with(".pyc")
            || name.ends_with(".egg-info")
        {
            continue;
        }
        let path = e.path();
        let to = format!("{dest}/{name}");
        let ty = e.file_type()?;
        if ty.is_dir() {
            add_tree(w, &path, &to)?;
        } else if ty.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = e.metadata()?.permissions().mode() & 0o755;
            w.file(&to, mode | 0o644, &read(&path)?)?;
        }
    }
    Ok(())
}

/// Writes the Debian root's initramfs to `dest`: the root made by
/// `scripts/dkms-install.sh` (`base`, a cpio), followed by a second cpio
/// with its `/init`, the selftest harness and, for the root with Python,
/// the Python package's tree (`python`) in [`PYTHON_DIR`]. The kernel
/// unpacks both.
pub fn build_debian(
    base: &Path,
    selftest: &Path,
    python: Option<&Path>,
    dest: &Path,
) -> Result<()> {
    let mut w = cpio::Writer::new(Vec::new());
    w.file("/init", 0o755, DEBIAN_INIT.as_bytes())?;
    w.dir("/usr/local/bin")?;
    w.file("/usr/local/bin/ivshmem-selftest", 0o755, &read(selftest)?)?;
    if let Some(py) = python {
        w.dir("/usr/local/lib")?;
        add_python(&mut w, py, PYTHON_DIR)?;
    }
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
    /// The statically linked benchmarks (ivshmem-bench), if built.
    pub bench: Option<PathBuf>,
    /// The statically linked `ivshmem` command, if built: `/bin/ivshmem`.
    pub cli: Option<PathBuf>,
    /// Extra modules for the guest kernel, if given: a directory with the
    /// `.ko` files and `order`, the file that names them in load order
    /// (see [`add_extra_modules`]).
    pub extra_modules: Option<PathBuf>,
    /// The suite's test modules, if given: a directory of `.ko` files, all
    /// of which go to [`TEST_MODULES`].
    pub test_modules: Option<PathBuf>,
}

/// Where the suite's test modules go in the initramfs.
pub const TEST_MODULES: &str = "/lib/modules/test";

/// Adds every `.ko` file of `dir` under [`TEST_MODULES`]; a directory
/// without any is an error (a build that made nothing).
fn add_test_modules(w: &mut cpio::Writer<Vec<u8>>, dir: &Path) -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ko"))
        .collect();
    names.sort();
    anyhow::ensure!(!names.is_empty(), "{} has no .ko file", dir.display());
    w.dir(TEST_MODULES)?;
    for name in names {
        w.file(
            &format!("{TEST_MODULES}/{name}"),
            0o644,
            &read(&dir.join(&name))?,
        )?;
    }
    Ok(())
}

/// Where the extra modules go in the initramfs: their files and `order`.
pub const EXTRA_MODULES: &str = "/lib/modules/extra";

/// Adds the modules that `dir/order` names (one file name a line, in load
/// order; each an uncompressed `.ko` in `dir`) and `order` itself under
/// [`EXTRA_MODULES`]. Whoever uses them loads them in that order.
fn add_extra_modules(w: &mut cpio::Writer<Vec<u8>>, dir: &Path) -> Result<()> {
    let order = dir.join("order");
    let text =
        fs::read_to_string(&order).with_context(|| format!("reading {}", order.display()))?;
    w.dir(EXTRA_MODULES)?;
    let mut names = Vec::new();
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        anyhow::ensure!(
            name.ends_with(".ko") && !name.contains('/'),
            "{}: {name:?} is not the file name of an uncompressed module",
            order.display()
        );
        w.file(
            &format!("{EXTRA_MODULES}/{name}"),
            0o644,
            &read(&dir.join(name))?,
        )?;
        names.push(name);
    }
    anyhow::ensure!(!names.is_empty(), "{} names no module", order.display());
    w.file(
        &format!("{EXTRA_MODULES}/order"),
        0o644,
        (names.join("\n") + "\n").as_bytes(),
    )?;
    Ok(())
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
    if let Some(p) = &c.bench {
        w.file("/bin/ivshmem-bench", 0o755, &read(p)?)?;
    }
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
    if let Some(d) = &c.extra_modules {
        add_extra_modules(&mut w, d)?;
    }
    if let Some(d) = &c.test_modules {
        add_test_modules(&mut w, d)?;
    }
    let bytes = w.finish()?;
    fs::write(dest, bytes).with_context(|| format!("writing {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_modules_go_in_with_their_order() {
        let d = std::env::temp_dir().join(format!("ivshmem-extra-mods-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("vfio.ko"), b"ELF-vfio").unwrap();
        fs::write(d.join("vfio-pci.ko"), b"ELF-vfio-pci").unwrap();
        fs::write(d.join("unlisted.ko"), b"ELF-unlisted").unwrap();
        fs::write(d.join("order"), "vfio.ko\nvfio-pci.ko\n").unwrap();
        let mut w = cpio::Writer::new(Vec::new());
        add_extra_modules(&mut w, &d).unwrap();
        let text = String::from_utf8_lossy(&w.finish().unwrap()).into_owned();
        assert!(text.contains("lib/modules/extra/vfio.ko"));
        assert!(text.contains("lib/modules/extra/vfio-pci.ko"));
        assert!(text.contains("lib/modules/extra/order"));
        assert!(text.contains("vfio.ko\nvfio-pci.ko\n"));
        assert!(!text.contains("unlisted"));

        // A compressed or missing module is an error, not a silent gap.
        fs::write(d.join("order"), "vfio.ko.xz\n").unwrap();
        assert!(add_extra_modules(&mut cpio::Writer::new(Vec::new()), &d).is_err());
        fs::write(d.join("order"), "gone.ko\n").unwrap();
        assert!(add_extra_modules(&mut cpio::Writer::new(Vec::new()), &d).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn test_modules_go_in_and_an_empty_directory_is_an_error() {
        let d = std::env::temp_dir().join(format!("ivshmem-test-mods-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        assert!(add_test_modules(&mut cpio::Writer::new(Vec::new()), &d).is_err());
        fs::write(d.join("ivshmem_test_importer.ko"), b"ELF-importer").unwrap();
        fs::write(d.join("ivshmem_test_importer.o"), b"ELF-object").unwrap();
        let mut w = cpio::Writer::new(Vec::new());
        add_test_modules(&mut w, &d).unwrap();
        let text = String::from_utf8_lossy(&w.finish().unwrap()).into_owned();
        assert!(text.contains("lib/modules/test/ivshmem_test_importer.ko"));
        assert!(text.contains("ELF-importer"));
        assert!(!text.contains("ELF-object"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn debian_python_root_gets_the_package_and_not_local_leftovers() {
        let d = std::env::temp_dir().join(format!("ivshmem-initramfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let py = d.join("python");
        for (f, text) in [
            ("src/ivshmem/__init__.py", "pkg"),
            ("src/ivshmem/__pycache__/device.cpython-313.pyc", "cache"),
            ("src/ivshmem.egg-info/PKG-INFO", "egg"),
            ("build/lib/ivshmem/__init__.py", "stale"),
            ("tests/test_plain.py", "t"),
            ("tools/wait_latency.py", "w"),
            ("examples/info.py", "e"),
            ("pyproject.toml", "p"),
            ("README.md", "r"),
            (".pytest_cache/x", "c"),
        ] {
            let p = py.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        let base = d.join("base.cpio");
        let mut w = cpio::Writer::new(Vec::new());
        w.dir("/etc").unwrap();
        fs::write(&base, w.finish().unwrap()).unwrap();
        let selftest = d.join("selftest");
        fs::write(&selftest, b"\x7fELF").unwrap();

        let out = d.join("out.cpio");
        build_debian(&base, &selftest, Some(&py), &out).unwrap();
        let text = String::from_utf8_lossy(&fs::read(&out).unwrap()).into_owned();
        for want in [
            "usr/local/bin/ivshmem-selftest",
            "usr/local/lib/ivshmem-python/src/ivshmem/__init__.py",
            "usr/local/lib/ivshmem-python/tests/test_plain.py",
            "usr/local/lib/ivshmem-python/tools/wait_latency.py",
            "usr/local/lib/ivshmem-python/examples/info.py",
            "usr/local/lib/ivshmem-python/pyproject.toml",
        ] {
            assert!(text.contains(want), "{want} missing");
        }
        for unwanted in [
            "__pycache__",
            "egg-info",
            "ivshmem-python/build",
            ".pytest_cache",
        ] {
            assert!(!text.contains(unwanted), "{unwanted} was copied");
        }

        // The plain Debian root gets no Python tree.
        build_debian(&base, &selftest, None, &out).unwrap();
        let text = String::from_utf8_lossy(&fs::read(&out).unwrap()).into_owned();
        assert!(!text.contains("ivshmem-python"));
        fs::remove_dir_all(&d).unwrap();
    }
}
