//! The tests the guests' programs offer, read from the programs
//! themselves before anything boots, so that a scenario naming a test
//! that does not exist fails at once with a clear message instead of
//! after a boot.
//!
//! `ivshmem-selftest --list` and `ivshmem-bench --list` print one test a
//! line, its name first; the selftest tags the tests it runs only when
//! named with `(only when named)`. Both are static x86-64 binaries, so the
//! runner runs the very files it puts into the guests.

use crate::qemu::{GuestSpec, Program};
use crate::scenarios::Scenario;
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the selftest's `--list` appends to the tests that do not run by
/// default.
const ONLY_WHEN_NAMED: &str = "(only when named)";

/// The tests of one program.
#[derive(Debug, Clone)]
pub struct TestList {
    program: PathBuf,
    tests: Vec<Listed>,
}

/// One test of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    name: String,
    default: bool,
}

impl TestList {
    /// Runs `program --list` on the host and reads its tests.
    pub fn of(program: &Path) -> Result<Self> {
        let out = Command::new(program)
            .arg("--list")
            .output()
            .with_context(|| format!("running {} --list on the host", program.display()))?;
        ensure!(
            out.status.success(),
            "{} --list failed ({}): {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let list = Self::parse(program, &String::from_utf8_lossy(&out.stdout));
        ensure!(
            !list.tests.is_empty(),
            "{} --list listed no tests",
            program.display()
        );
        Ok(list)
    }

    /// Reads the output of `program --list`.
    pub fn parse(program: &Path, text: &str) -> Self {
        let tests = text
            .lines()
            .filter_map(|l| {
                let name = l.split_whitespace().next()?;
                Some(Listed {
                    name: name.to_string(),
                    default: !l.trim_end().ends_with(ONLY_WHEN_NAMED),
                })
            })
            .collect();
        Self {
            program: program.to_path_buf(),
            tests,
        }
    }

    /// Whether the program has a test of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.tests.iter().any(|t| t.name == name)
    }

    /// The tests the program runs when none is named, in its order.
    pub fn defaults(&self) -> Vec<String> {
        self.tests
            .iter()
            .filter(|t| t.default)
            .map(|t| t.name.clone())
            .collect()
    }
}

/// The test lists of a run's guest programs.
#[derive(Debug, Clone)]
pub struct Lists {
    /// `ivshmem-selftest`'s.
    pub selftest: TestList,
    /// `ivshmem-bench`'s, if the run has the benchmarks.
    pub bench: Option<TestList>,
}

impl Lists {
    /// The list of the program `g` runs, if the run has that program.
    fn of(&self, g: &GuestSpec) -> Option<&TestList> {
        match g.program() {
            Program::Selftest => Some(&self.selftest),
            Program::Bench => self.bench.as_ref(),
        }
    }

    /// The tests guest `g` will run, in order: those it names, or its
    /// program's default set.
    pub fn planned(&self, g: &GuestSpec) -> Vec<String> {
        if !g.tests.is_empty() {
            return g.tests.clone();
        }
        self.of(g).map(TestList::defaults).unwrap_or_default()
    }

    /// Checks that every test the scenarios' guests name exists in their
    /// program's list, and that the run has each program they need. The
    /// error names every test that is missing.
    pub fn check(&self, scenarios: &[&Scenario]) -> Result<()> {
        let mut missing = Vec::new();
        for sc in scenarios {
            for g in &sc.guests {
                let Some(list) = self.of(g) else {
                    bail!(
                        "scenario '{}' runs ivshmem-bench in guest '{}', and this run has no \
                         ivshmem-bench (--bench or IVSHMEM_BENCH)",
                        sc.name,
                        g.name
                    );
                };
                for t in g.tests.iter().filter(|t| !list.contains(t)) {
                    missing.push(format!(
                        "scenario '{}', guest '{}': no test '{t}' in {}",
                        sc.name,
                        g.name,
                        list.program.display()
                    ));
                }
            }
        }
        if !missing.is_empty() {
            bail!(
                "{} (see the program's --list; was it rebuilt?)",
                missing.join("; ")
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::GuestSpec;
    use std::time::Duration;

    const SELFTEST: &str = "\
autoload_module          udev loaded the DKMS-built module (only when named)
module_bind              the module loads, binds every ivshmem device and unloads cleanly
info_sysfs               /dev/ivshmemN, INFO and sysfs match the QEMU configuration
a_test_with_a_very_long_name_indeed the rest
";

    fn lists() -> Lists {
        Lists {
            selftest: TestList::parse(Path::new("/x/ivshmem-selftest"), SELFTEST),
            bench: None,
        }
    }

    #[test]
    fn list_output_gives_names_and_defaults() {
        let l = lists().selftest;
        assert!(l.contains("autoload_module"));
        assert!(l.contains("a_test_with_a_very_long_name_indeed"));
        assert!(!l.contains("udev"));
        assert_eq!(
            l.defaults(),
            [
                "module_bind",
                "info_sysfs",
                "a_test_with_a_very_long_name_indeed"
            ]
        );
    }

    #[test]
    fn unknown_tests_are_named_before_anything_boots() {
        let sc = Scenario::new("sc", "about", Duration::from_secs(1))
            .guest(GuestSpec::new("a", &["module_bind", "modul_bind"]))
            .guest(GuestSpec::new("b", &["info_sysfs", "nope"]));
        let e = lists().check(&[&sc]).unwrap_err().to_string();
        assert!(
            e.contains("scenario 'sc', guest 'a': no test 'modul_bind' in /x/ivshmem-selftest"),
            "{e}"
        );
        assert!(e.contains("guest 'b': no test 'nope'"), "{e}");
        assert!(!e.contains("'module_bind'"), "{e}");
        let ok = Scenario::new("ok", "about", Duration::from_secs(1))
            .guest(GuestSpec::new("a", &["autoload_module", "info_sysfs"]));
        lists().check(&[&ok]).unwrap();
    }

    #[test]
    fn bench_guests_need_the_bench_program() {
        let sc = Scenario::new("b", "about", Duration::from_secs(1))
            .guest(GuestSpec::new("g", &["mapping"]).env("prog", "bench"));
        let e = lists().check(&[&sc]).unwrap_err().to_string();
        assert!(e.contains("no ivshmem-bench"), "{e}");
        let with = Lists {
            bench: Some(TestList::parse(
                Path::new("/x/ivshmem-bench"),
                "mapping    mmap setup\ndoorbell   latency\n",
            )),
            ..lists()
        };
        with.check(&[&sc]).unwrap();
        // A bench guest's tests are not looked up in the selftest's list.
        assert!(!with.selftest.contains("mapping"));
    }

    #[test]
    fn planned_tests_are_the_named_ones_or_the_defaults() {
        let l = lists();
        assert_eq!(
            l.planned(&GuestSpec::new("g", &["info_sysfs"])),
            ["info_sysfs"]
        );
        assert_eq!(l.planned(&GuestSpec::new("g", &[])), l.selftest.defaults());
    }

    #[test]
    fn a_program_that_cannot_list_is_an_error() {
        let missing = Path::new("/nonexistent/ivshmem-selftest");
        let e = TestList::of(missing).unwrap_err();
        assert!(format!("{e:#}").contains("--list on the host"), "{e:#}");
        // One that fails, and one that lists nothing.
        let e = TestList::of(Path::new("false")).unwrap_err().to_string();
        assert!(e.contains("false --list failed"), "{e}");
        let e = TestList::of(Path::new("true")).unwrap_err().to_string();
        assert!(e.contains("listed no tests"), "{e}");
    }
}
