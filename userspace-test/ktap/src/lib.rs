//! KTAP, the kernel's test output format (`Documentation/dev-tools/ktap.rst`).
//!
//! [`Writer`] prints results the way kselftest's `kselftest.h` does: a
//! version line, a plan, one `ok`/`not ok` line per test, `# ` diagnostics
//! and a totals line. [`parse`] reads such output back, including nested
//! (indented) subtests, for the VM runner.

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
            Outcome::Skip(why) => format!("ok {n} {name} # SKIP {}", one_line(why)),
            Outcome::Timeout(why) => format!("not ok {n} {name} # TIMEOUT {}", one_line(why)),
            Outcome::Error(why) => format!("not ok {n} {name} # ERROR {}", one_line(why)),
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

/// One parsed result line, with the subtests printed before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test number.
    pub number: usize,
    /// The description (test name).
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
    /// Nested subtests, if any were printed before this line.
    pub subtests: Option<Report>,
}

/// A parsed KTAP document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The version line, e.g. `KTAP version 1`, if one was seen.
    pub version: Option<String>,
    /// The plan (`1..N`), if one was seen.
    pub plan: Option<usize>,
    /// The result lines, in order.
    pub results: Vec<TestResult>,
    /// The reason given by `Bail out!`, if the run bailed out.
    pub bail_out: Option<String>,
    /// Diagnostic lines (without the leading `# `).
    pub diagnostics: Vec<String>,
}

impl Report {
    /// Whether the document is complete: a version and a plan were seen,
    /// the plan matches the results, and nothing bailed out.
    pub fn is_complete(&self) -> bool {
        self.version.is_some() && self.bail_out.is_none() && self.plan == Some(self.results.len())
    }

    /// Counts of the leaf results: a test with subtests counts its
    /// subtests, not itself.
    pub fn leaf_totals(&self) -> Totals {
        let mut t = Totals::default();
        for r in &self.results {
            match &r.subtests {
                Some(sub) if !sub.results.is_empty() => t.merge(sub.leaf_totals()),
                _ => t.add(&r.outcome),
            }
        }
        t
    }

    /// Counts of the top-level results.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for r in &self.results {
            t.add(&r.outcome);
        }
        t
    }
}

/// Parses KTAP (or TAP 13) text. Lines that are not KTAP (console noise)
/// are ignored; carriage returns from a serial line are stripped.
pub fn parse(text: &str) -> Report {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .map(|l| {
            let trimmed = l.trim_start_matches(' ');
            ((l.len() - trimmed.len()) / 2, trimmed)
        })
        .collect();
    let mut pos = 0;
    parse_level(&lines, &mut pos, 0)
}

fn parse_level(lines: &[(usize, &str)], pos: &mut usize, level: usize) -> Report {
    let mut report = Report::default();
    let mut pending_sub: Option<Report> = None;
    while *pos < lines.len() {
        let (indent, l) = lines[*pos];
        if indent < level {
            break;
        }
        if indent > level {
            // A nested document belongs to the next result line at our level.
            let sub = parse_level(lines, pos, indent);
            pending_sub = Some(sub);
            continue;
        }
        *pos += 1;
        if l.starts_with("KTAP version") || l.starts_with("TAP version") {
            if report.version.is_some() && level == 0 && !report.results.is_empty() {
                // A second document at top level: keep the first one only.
                break;
            }
            report.version = Some(l.to_string());
        } else if let Some(n) = l.strip_prefix("1..") {
            report.plan = n.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = l.strip_prefix("Bail out!") {
            report.bail_out = Some(rest.trim().to_string());
        } else if let Some(d) = l.strip_prefix('#') {
            report.diagnostics.push(d.trim_start().to_string());
        } else if let Some(mut r) = parse_result(l) {
            r.subtests = pending_sub.take();
            report.results.push(r);
        }
    }
    report
}

fn parse_result(l: &str) -> Option<TestResult> {
    let (ok, rest) = if let Some(r) = l.strip_prefix("not ok ") {
        (false, r)
    } else if let Some(r) = l.strip_prefix("ok ") {
        (true, r)
    } else {
        return None;
    };
    let (num, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let number = num.parse().ok()?;
    let (name, directive) = match rest.split_once(" # ") {
        Some((n, d)) => (n, Some(d)),
        None => match rest.strip_prefix("# ") {
            Some(d) => ("", Some(d)),
            None => (rest, None),
        },
    };
    let directive = directive.map(|d| {
        let (word, reason) = d.split_once(' ').unwrap_or((d, ""));
        (word.to_ascii_uppercase(), reason.to_string())
    });
    let outcome = match (ok, directive) {
        (_, Some((w, r))) if w == "SKIP" => Outcome::Skip(r),
        (false, Some((w, r))) if w == "TIMEOUT" => Outcome::Timeout(r),
        (false, Some((w, r))) if w == "ERROR" => Outcome::Error(r),
        (true, _) => Outcome::Pass,
        (false, _) => Outcome::Fail(String::new()),
    };
    Some(TestResult {
        number,
        name: name.trim().to_string(),
        outcome,
        subtests: None,
    })
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
    }

    #[test]
    fn parses_serial_noise_and_directives() {
        let text = "garbage\r\nKTAP version 1\r\n1..3\r\n[  1.0] kernel says hi\r\n\
                    not ok 1 slow # TIMEOUT after 5s\r\nnot ok 2 broken # error no fd\r\n\
                    ok 3 # SKIP unnamed\r\n";
        let r = parse(text);
        assert!(r.is_complete());
        assert_eq!(r.results[0].outcome, Outcome::Timeout("after 5s".into()));
        assert_eq!(r.results[1].outcome, Outcome::Error("no fd".into()));
        assert_eq!(r.results[2].outcome, Outcome::Skip("unnamed".into()));
        assert!(r.results.iter().take(2).all(|t| t.outcome.is_failure()));
    }

    #[test]
    fn incomplete_documents_are_detected() {
        assert!(!parse("KTAP version 1\n1..2\nok 1 a\n").is_complete());
        assert!(!parse("1..1\nok 1 a\n").is_complete());
        assert!(!parse("KTAP version 1\n1..1\nBail out! no module\n").is_complete());
        assert!(!parse("").is_complete());
    }

    #[test]
    fn nested_subtests_attach_to_their_parent() {
        let text = "KTAP version 1\n1..2\n  KTAP version 1\n  1..2\n  ok 1 x\n  \
                    not ok 2 y\nnot ok 1 scenario\nok 2 other\n";
        let r = parse(text);
        assert!(r.is_complete());
        let sub = r.results[0].subtests.as_ref().unwrap();
        assert!(sub.is_complete());
        assert_eq!(sub.results[1].name, "y");
        assert!(r.results[1].subtests.is_none());
        assert_eq!(
            r.leaf_totals(),
            Totals {
                pass: 2,
                fail: 1,
                skip: 0
            }
        );
    }
}
