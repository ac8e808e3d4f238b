//! KTAP, the kernel's test output format (`Documentation/dev-tools/ktap.rst`).
//!
//! [`Writer`] prints results the way kselftest's `kselftest.h` does: a
//! version line, a plan, one `ok`/`not ok` line per test, `# ` diagnostics
//! and a totals line. [`parse`] reads such output back leniently,
//! including nested (indented) subtests, for the VM runner, which can
//! [`Report::close`] a document that stopped early and
//! [`Report::render`] it again. [`parse_strict`] accepts only what the
//! specification allows.

mod report;
mod strict;

pub use report::{Entry, Report, TestResult, parse};
pub use strict::{StrictError, parse_strict};

use std::fmt;
use std::io::{self, Write};

/// kselftest exit codes (`tools/testing/selftests/kselftest.h`).
pub mod exit {
    /// Every test passed (or some were skipped, but not all).
    pub const PASS: i32 = 0;
    /// At least one test failed.
    pub const FAIL: i32 = 1;
    /// Every test was skipped.
    pub const SKIP: i32 = 4;
}

/// The result of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `ok N name`
    Pass,
    /// `not ok N name` with an optional reason as diagnostic.
    Fail(String),
    /// `ok N name # SKIP reason`
    Skip(String),
    /// `not ok N name # TIMEOUT reason`
    Timeout(String),
    /// `not ok N name # ERROR reason`: the test could not run properly.
    Error(String),
}

impl Outcome {
    /// Whether this outcome counts as a failure of the run.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Fail(_) | Self::Timeout(_) | Self::Error(_))
    }
}

/// Counts of outcomes, as printed in the `# Totals:` line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Tests that passed.
    pub pass: usize,
    /// Tests that failed, timed out or errored.
    pub fail: usize,
    /// Tests that were skipped.
    pub skip: usize,
}

impl Totals {
    /// Adds one outcome.
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Pass => self.pass += 1,
            Outcome::Skip(_) => self.skip += 1,
            _ => self.fail += 1,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: Totals) {
        self.pass += other.pass;
        self.fail += other.fail;
        self.skip += other.skip;
    }

    /// The kselftest exit code for these counts.
    pub fn exit_code(&self) -> i32 {
        if self.fail > 0 {
            exit::FAIL
        } else if self.pass == 0 && self.skip > 0 {
            exit::SKIP
        } else {
            exit::PASS
        }
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.pass, self.fail, self.skip
        )
    }
}

/// Writes KTAP to an output, flushing after every line so that a crash or
/// a hang still leaves every finished result readable.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    indent: usize,
    number: usize,
    totals: Totals,
}

impl<W: Write> Writer<W> {
    /// Starts a KTAP document with a plan of `planned` tests.
    pub fn new(out: W, planned: usize) -> io::Result<Self> {
        Self::nested(out, planned, 0)
    }

    /// Starts a KTAP document indented by `indent` levels (two spaces each),
    /// as the subtests of an enclosing test.
    pub fn nested(out: W, planned: usize, indent: usize) -> io::Result<Self> {
        let mut w = Self {
            out,
            indent,
            number: 0,
            totals: Totals::default(),
        };
        w.line("KTAP version 1")?;
        w.line(&format!("1..{planned}"))?;
        Ok(w)
    }

    fn line(&mut self, s: &str) -> io::Result<()> {
        writeln!(self.out, "{:width$}{s}", "", width = self.indent * 2)?;
        self.out.flush()
    }

    /// Prints diagnostic lines (`# ...`), one per line of `msg`.
    pub fn diag(&mut self, msg: &str) -> io::Result<()> {
        for l in msg.lines() {
            self.line(&format!("# {l}"))?;
        }
        Ok(())
    }

    /// Prints raw lines, indented to this document's level (for embedding
    /// a nested document that was produced elsewhere).
    pub fn raw(&mut self, text: &str) -> io::Result<()> {
        for l in text.lines() {
            self.line(l)?;
        }
        Ok(())
    }

    /// Prints the result line of the next test.
    pub fn result(&mut self, name: &str, outcome: &Outcome) -> io::Result<()> {
        self.number += 1;
        self.totals.add(outcome);
        let n = self.number;
        let l = match outcome {
            Outcome::Pass => format!("ok {n} {name}"),
            Outcome::Fail(why) => {
                if !why.is_empty() {
                    self.diag(&format!("{name}: {why}"))?;
                }
                format!("not ok {n} {name}")
            }
            Outcome::Skip(_) | Outcome::Timeout(_) | Outcome::Error(_) => {
                report::result_line(!outcome.is_failure(), n, name, outcome)
            }
        };
        self.line(&l)
    }

    /// Prints `Bail out!` with a reason: the run cannot go on.
    pub fn bail_out(&mut self, why: &str) -> io::Result<()> {
        self.line(&format!("Bail out! {}", one_line(why)))
    }

    /// Prints the totals line and returns the counts.
    pub fn finish(mut self) -> io::Result<Totals> {
        let t = self.totals;
        self.line(&format!(
            "# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:0",
            t.pass, t.fail, t.skip
        ))?;
        Ok(t)
    }

    /// The counts so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> String {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, 3).unwrap();
        f(&mut w);
        w.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn writer_prints_kselftest_lines() {
        let out = written(|w| {
            w.result("a", &Outcome::Pass).unwrap();
            w.result("b", &Outcome::Fail("bad\nvery".into())).unwrap();
            w.result("c", &Outcome::Skip("no device".into())).unwrap();
        });
        assert_eq!(
            out,
            "KTAP version 1\n1..3\nok 1 a\n# b: bad\n# very\nnot ok 2 b\n\
             ok 3 c # SKIP no device\n\
             # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n"
        );
        parse_strict(&out).unwrap();
    }

    #[test]
    fn writer_prints_timeouts_and_errors_as_not_ok() {
        let out = written(|w| {
            w.result("a", &Outcome::Timeout("after 5 s".into()))
                .unwrap();
            w.result("b", &Outcome::Error("no fd".into())).unwrap();
            w.result("c", &Outcome::Skip(String::new())).unwrap();
        });
        assert!(out.contains("not ok 1 a # TIMEOUT after 5 s\n"), "{out}");
        assert!(out.contains("not ok 2 b # ERROR no fd\n"), "{out}");
        assert!(out.contains("ok 3 c # SKIP\n"), "{out}");
        let r = parse_strict(&out).unwrap();
        assert_eq!(
            r.leaf_totals(),
            Totals {
                pass: 0,
                fail: 2,
                skip: 1
            }
        );
    }

    #[test]
    fn exit_codes_follow_kselftest() {
        let t = |pass, fail, skip| Totals { pass, fail, skip }.exit_code();
        assert_eq!(t(3, 0, 0), exit::PASS);
        assert_eq!(t(3, 0, 1), exit::PASS);
        assert_eq!(t(3, 1, 1), exit::FAIL);
        assert_eq!(t(0, 0, 2), exit::SKIP);
    }

    #[test]
    fn round_trip() {
        let out = written(|w| {
            w.result("a", &Outcome::Pass).unwrap();
            w.result("b", &Outcome::Fail("x".into())).unwrap();
            w.result("c", &Outcome::Skip("why not".into())).unwrap();
        });
        let r = parse(&out);
        assert!(r.is_complete());
        assert_eq!(r.results.len(), 3);
        assert_eq!(r.results[0].outcome, Outcome::Pass);
        assert_eq!(r.results[1].outcome, Outcome::Fail(String::new()));
        assert_eq!(r.results[2].outcome, Outcome::Skip("why not".into()));
        assert_eq!(r.results[2].name, "c");
        assert_eq!(
            r.totals(),
            Totals {
                pass: 1,
                fail: 1,
                skip: 1
            }
        );
        // Rendered again, it is the same document.
        assert_eq!(r.render().join("\n") + "\n", out);
    }
}
