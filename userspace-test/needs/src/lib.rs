//! Host tests that need something a machine may lack (a C compiler,
//! python3, groff, QEMU, a hugetlbfs mount, thousands of descriptors).
//!
//! Whether such a test can run is known only when the tests run, and
//! libtest can only ignore a test at compile time (`#[ignore]`); a test
//! that returns early when what it needs is missing is counted as passed.
//! So these tests run under libtest-mimic (`harness = false`), with
//! libtest's command line and output: each test first finds what it
//! needs, and when that is missing it is reported as *ignored*, counted in
//! the summary line (`N ignored`, which `make check` reports as skipped),
//! and the reason is printed as `SKIP name: reason`. When it is there, the
//! test runs, and fails if what it tests does not work.
//! `--include-ignored` runs the ignored ones anyway: they then fail,
//! saying what is missing.

use std::path::{Path, PathBuf};

pub use libtest_mimic::{Arguments, Trial};

/// A test that needs nothing a Linux host may lack.
pub fn test(name: &'static str, test: fn()) -> Trial {
    Trial::test(name, move || {
        test();
        Ok(())
    })
}

/// A test that runs with what `need` found, or, when it found nothing, is
/// reported as ignored with the reason.
pub fn needs<T: Send + 'static>(
    args: &Arguments,
    name: &'static str,
    need: Result<T, String>,
    test: fn(T),
) -> Trial {
    match need {
        Ok(found) => Trial::test(name, move || {
            test(found);
            Ok(())
        }),
        Err(reason) => {
            if selected(args, name) {
                eprintln!("SKIP {name}: {reason}");
            }
            Trial::test(name, move || Err(format!("cannot run: {reason}").into()))
                .with_ignored_flag(true)
        }
    }
}

/// Runs `trials` as libtest would and exits.
pub fn run(args: &Arguments, trials: Vec<Trial>) -> ! {
    libtest_mimic::run(args, trials).exit()
}

/// Whether the command line selects the test `name` (as libtest filters).
pub fn selected(args: &Arguments, name: &str) -> bool {
    let matches = |pattern: &String| {
        if args.exact {
            name == pattern
        } else {
            name.contains(pattern.as_str())
        }
    };
    !args.list && args.filter.as_ref().is_none_or(matches) && !args.skip.iter().any(matches)
}

/// The program `name` (a path, or looked up in `PATH`), or why it is
/// missing.
pub fn program(name: &str) -> Result<PathBuf, String> {
    if name.contains('/') {
        let p = Path::new(name);
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("no {name}"))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("no {name} in PATH"))
}

/// The program named by the environment variable `var` (a C compiler in
/// `CC`, say), or `default` when it is not set, as [`program`] finds it.
pub fn program_from_env(var: &str, default: &str) -> Result<PathBuf, String> {
    let name = std::env::var(var).unwrap_or_else(|_| default.into());
    program(&name).map_err(|e| format!("{e} (${var}, default {default})"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
