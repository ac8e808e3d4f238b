//! The Python package (`userspace/python`) in a guest whose user space has
//! Debian's CPython: its pytest tests against the real devices, and what
//! its wait path costs over a raw `os.read`. The VM runner puts the
//! package's tree in [`DIR`] of the `debian-python` root.

use crate::{Failure, TestResult, check, fail, skip};
use guest_sys as sys;
use ktap::Outcome;
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
        // pytest's lines whole, skip reasons included.
        .env("COLUMNS", "1000")
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

/// pytest's result of each test, from its `-v` lines
/// (`tests/x.py::test_y PASSED [ 10%]`, `... SKIPPED (reason) [ 20%]`), as
/// KTAP outcomes: an expected failure is a skip, an unexpected pass a
/// failure.
fn results(out: &Output) -> Vec<(String, Outcome)> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = Vec::new();
    for line in text.lines() {
        let Some((id, rest)) = line.split_once(' ') else {
            continue;
        };
        if !id.contains("::") {
            continue;
        }
        let rest = rest.trim();
        // Without the progress column.
        let rest = rest.rfind(" [").map_or(rest, |i| rest[..i].trim_end());
        let (word, detail) = rest.split_once(' ').unwrap_or((rest, ""));
        let reason = detail
            .strip_prefix('(')
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or(detail)
            .to_string();
        let outcome = match word {
            "PASSED" => Outcome::Pass,
            "SKIPPED" => Outcome::Skip(if reason.is_empty() {
                "skipped by pytest".into()
            } else {
                reason
            }),
            "XFAIL" => Outcome::Skip(format!("expected failure {reason}").trim().into()),
            "FAILED" | "ERROR" | "XPASS" => Outcome::Fail(format!("pytest: {word} {reason}")),
            _ => continue,
        };
        v.push((id.to_string(), outcome));
    }
    v
}

/// `python3 -m pytest` on the package's tests: every test passes (those
/// that need what a guest lacks, such as a C compiler, may skip). Each
/// pytest test is a KTAP subtest, so that its skips count as skips.
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
            // No progress column, which a wide terminal pads with spaces.
            "-o",
            "console_output_style=classic",
            "-p",
            "no:cacheprovider",
            "tests",
        ],
    )?;
    diag(&out);
    let s = summary(&out);
    let code = out.status.code();
    println!("# pytest: {s} (exit {code:?})");
    let each = results(&out);
    let mut w = ktap::Writer::nested(std::io::stdout(), each.len(), 1)?;
    for (id, outcome) in &each {
        w.result(id, outcome)?;
    }
    let t = w.finish()?;
    check!(
        t.pass == count(&s, "passed") as usize
            && t.skip == (count(&s, "skipped") + count(&s, "xfailed")) as usize,
        "pytest's summary ({s}) and its {} result lines ({t:?}) disagree",
        each.len()
    );
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
    use super::{Outcome, count, results};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{ExitStatus, Output};

    #[test]
    fn each_pytest_line_is_a_ktap_result() {
        let out = Output {
            status: ExitStatus::from_raw(0),
            stdout: b"collected 3 items\n\n\
tests/test_a.py::test_one PASSED                 [ 33%]\n\
tests/test_uapi.py::test_c SKIPPED (no C compiler here (the host checks)) [ 66%]\n\
tests/test_b.py::test_p[x-1] FAILED               [100%]\n\
SKIPPED [1] tests/test_uapi.py:40: no C compiler here\n"
                .to_vec(),
            stderr: Vec::new(),
        };
        let r = results(&out);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], ("tests/test_a.py::test_one".into(), Outcome::Pass));
        assert_eq!(
            r[1].1,
            Outcome::Skip("no C compiler here (the host checks)".into())
        );
        assert_eq!(r[2].0, "tests/test_b.py::test_p[x-1]");
        assert!(r[2].1.is_failure());
    }

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
