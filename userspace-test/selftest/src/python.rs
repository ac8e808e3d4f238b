//! The Python package (`userspace/python`) in a guest whose user space has
//! Debian's CPython: its pytest tests against the real devices, and what
//! its wait path costs over a raw `os.read`. The VM runner puts the
//! package's tree in [`DIR`] of the `debian-python` root.

use crate::{Failure, TestResult, check, fail, skip};
use guest_sys as sys;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the runner puts the package's tree.
const DIR: &str = "/usr/local/lib/ivshmem-python";
/// Debian's CPython.
const PYTHON: &str = "/usr/bin/python3";

/// The package's tree, or a skip when this guest has no CPython.
fn setup() -> Result<PathBuf, Failure> {
    if !Path::new(PYTHON).exists() {
        skip!("no {PYTHON} in this guest (the test needs the debian-python root)");
    }
    let dir = PathBuf::from(DIR);
    check!(
        dir.join("src/ivshmem/__init__.py").is_file(),
        "the runner put no Python package in {DIR}"
    );
    check!(
        sys::module_loaded()?,
        "the module is not loaded (udev should have loaded it)"
    );
    Ok(dir)
}

/// Runs CPython in the package's tree, with bytecode caches off.
fn python(dir: &Path, args: &[&str]) -> Result<Output, Failure> {
    Command::new(PYTHON)
        .arg("-B")
        .args(args)
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env(
            "IVSHMEM_TEST_REQUIRE",
            sys::setting("pyrequire").unwrap_or_default(),
        )
        .output()
        .map_err(|e| Failure::Fail(format!("cannot run {PYTHON}: {e}")))
}

/// Prints a program's output as KTAP diagnostics.
fn diag(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            if !line.trim().is_empty() {
                println!("# {line}");
            }
        }
    }
}

/// pytest's last summary line, e.g. `== 24 passed, 1 skipped in 3.1s ==`.
fn summary(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with('=') && l.contains(" in "))
        .map(|l| l.trim_matches(|c| c == '=' || c == ' ').to_string())
        .unwrap_or_else(|| "no summary".into())
}

/// How many tests pytest's summary says ended as `what` (passed, failed...).
fn count(summary: &str, what: &str) -> u32 {
    summary
        .split([',', ' '])
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == what)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}

/// `python3 -m pytest` on the package's tests: every test passes (those
/// that need what a guest lacks, such as a C compiler, may skip).
pub fn python_pytest() -> TestResult {
    let dir = setup()?;
    let version = python(
        &dir,
        &[
            "-c",
            "import sys, pytest; print('CPython', sys.version.split()[0], 'pytest', pytest.__version__)",
        ],
    )?;
    diag(&version);
    let out = python(
        &dir,
        &[
            "-m",
            "pytest",
            "-v",
            "-rs",
            "--color=no",
            "-p",
            "no:cacheprovider",
            "tests",
        ],
    )?;
    diag(&out);
    let s = summary(&out);
    let code = out.status.code();
    println!("# pytest: {s} (exit {code:?})");
    check!(code == Some(0), "pytest failed (exit {code:?}): {s}");
    let passed = count(&s, "passed");
    check!(passed > 0, "pytest passed nothing: {s}");
    if count(&s, "failed") + count(&s, "error") + count(&s, "errors") > 0 {
        fail!("pytest: {s}");
    }
    Ok(())
}

/// The wait latency of the package over raw `os.read` on the same fd
/// (`tools/wait_latency.py`): each of its waits got exactly the interrupt
/// rung; the medians and 99th percentiles are the diagnostics.
pub fn python_wait_latency() -> TestResult {
    let dir = setup()?;
    let samples = sys::setting("samples").unwrap_or_else(|| "2000".into());
    let out = python(
        &dir,
        &["tools/wait_latency.py", "--samples", samples.as_str()],
    )?;
    diag(&out);
    check!(
        out.status.success(),
        "wait_latency.py failed ({})",
        out.status
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_pytest_summaries() {
        let s = "24 passed, 1 skipped in 3.21s";
        assert_eq!(count(s, "passed"), 24);
        assert_eq!(count(s, "skipped"), 1);
        assert_eq!(count(s, "failed"), 0);
        assert_eq!(count("2 failed, 3 passed, 1 error in 1s", "failed"), 2);
        assert_eq!(count("2 failed, 3 passed, 1 error in 1s", "error"), 1);
    }
}
