//! A strict KTAP parser: it accepts a document only if it follows
//! `Documentation/dev-tools/ktap.rst` to the letter, so that a tool that
//! trusts the structure (numbering, nesting, plans) reads it right.
//!
//! The rules:
//!
//! - the text starts with a version line (`KTAP version 1`, or `TAP
//!   version 13`/`14`), and each document's next KTAP line is its plan
//!   (`1..N`);
//! - results are numbered 1, 2, ... in each document, as many as planned;
//! - a nested document is indented by two spaces more than its parent,
//!   starts with its own version line and plan after the parent's plan,
//!   is complete, and is followed by the parent's result line for it
//!   (one nested document per result);
//! - KTAP lines (version, plan, result) are indented by whole levels;
//! - `TIMEOUT` and `ERROR` go with `not ok`; a description has no `#`;
//! - a test that passes (`ok`, not skipped) has no failed subtest;
//! - no `Bail out!`, and nothing but diagnostics and unknown lines after
//!   the top-level document.
//!
//! Diagnostic lines (`#`) and unknown lines may be anywhere, at any
//! indentation, as the specification allows.

use crate::Outcome;
use crate::report::{Entry, Kind, Report, classify, split_indent};
use std::fmt;

/// Where and why a text is not strict KTAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictError {
    /// The line, counted from 1 (one past the last line for what is
    /// missing at the end).
    pub line: usize,
    /// The line's text.
    pub text: String,
    /// What is wrong.
    pub why: String,
}

impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "line {}: {}", self.line, self.why)
        } else {
            write!(f, "line {}: {} ({:?})", self.line, self.why, self.text)
        }
    }
}

impl std::error::Error for StrictError {}

/// A document being read.
struct Level {
    report: Report,
    /// Whether its plan came right after its version line.
    planned: bool,
    /// A finished nested document waiting for its result line, and the
    /// line it started on.
    pending: Option<(Report, usize)>,
    /// The line of its version line.
    start: usize,
}

impl Level {
    fn new(version: &str, start: usize) -> Self {
        Self {
            report: Report {
                version: Some(version.to_string()),
                ..Report::default()
            },
            planned: false,
            pending: None,
            start,
        }
    }
}

/// Parses a whole KTAP document strictly. Returns the first violation.
pub fn parse_strict(text: &str) -> Result<Report, StrictError> {
    let lines: Vec<&str> = match text.strip_suffix('\n') {
        Some(t) => t.split('\n').collect(),
        None if text.is_empty() => Vec::new(),
        None => text.split('\n').collect(),
    };
    let mut stack: Vec<Level> = Vec::new();
    let mut done: Option<Report> = None;
    for (i, raw) in lines.iter().enumerate() {
        let n = i + 1;
        let err = |why: String| StrictError {
            line: n,
            text: raw.to_string(),
            why,
        };
        let (indent, t) = split_indent(raw);
        let kind = classify(t);
        if let Kind::Diagnostic | Kind::Unknown = kind {
            if let Some(top) = stack.last_mut() {
                let e = match t.strip_prefix('#') {
                    Some(d) => Entry::Diagnostic(d.to_string()),
                    None => Entry::Unknown(t.to_string()),
                };
                top.report.lines.push(e);
            } else if done.is_none() {
                return Err(err("the text must start with a version line".into()));
            }
            continue;
        }
        if let Kind::BailOut(why) = kind {
            return Err(err(format!(
                "Bail out!: the document was abandoned ({why})"
            )));
        }
        if done.is_some() {
            return Err(err("a KTAP line after the end of the document".into()));
        }
        if indent % 2 != 0 {
            return Err(err(format!(
                "indented by {indent} spaces: KTAP indents by two a level"
            )));
        }
        let depth = indent / 2;
        if stack.is_empty() {
            if !matches!(kind, Kind::Version) || depth != 0 {
                return Err(err("the text must start with a version line".into()));
            }
            stack.push(Level::new(t, n));
            continue;
        }
        let cur = stack.len() - 1;
        if depth > cur + 1 || (depth == cur + 1 && !matches!(kind, Kind::Version)) {
            return Err(err(format!(
                "indented to level {depth} in a document at level {cur}"
            )));
        }
        // Documents deeper than this line end here.
        let keep = match kind {
            Kind::Version => depth,
            _ => depth + 1,
        };
        if keep == 0 {
            return Err(err("a second top-level document".into()));
        }
        while stack.len() > keep {
            let level = stack.pop().expect("deeper than kept");
            finish(&level).map_err(|why| StrictError {
                line: level.start,
                text: lines[level.start - 1].to_string(),
                why,
            })?;
            let parent = stack.last_mut().expect("kept at least one");
            if parent.pending.is_some() {
                return Err(err(
                    "two nested documents in a row: the first has no result line".into(),
                ));
            }
            parent.report.mark_subtests();
            parent.pending = Some((level.report, level.start));
        }
        let top = stack.last_mut().expect("kept at least one");
        match kind {
            Kind::Version => {
                if !top.planned {
                    return Err(err("a nested document before its parent's plan".into()));
                }
                if top.pending.is_some() {
                    return Err(err(
                        "two nested documents in a row: the first has no result line".into(),
                    ));
                }
                stack.push(Level::new(t, n));
            }
            Kind::Plan(count) => {
                if top.planned || !top.report.lines.is_empty() {
                    return Err(err("a plan that does not follow its version line".into()));
                }
                let Some(count) = count else {
                    return Err(err("a plan must be 1..N".into()));
                };
                top.report.plan = Some(count);
                top.planned = true;
            }
            Kind::Result(mut r) => {
                if !top.planned {
                    return Err(err("a result before the plan".into()));
                }
                let want = top.report.results.len() + 1;
                if r.number != want {
                    return Err(err(format!("test {}, expected test {want}", r.number)));
                }
                if Some(r.number) > top.report.plan {
                    return Err(err(format!(
                        "test {} of a plan of {}",
                        r.number,
                        top.report.plan.unwrap_or(0)
                    )));
                }
                if r.name.contains('#') {
                    return Err(err("a description with a '#'".into()));
                }
                let directive = t.split_once(" # ").map(|(_, d)| {
                    d.split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase()
                });
                if r.ok && matches!(directive.as_deref(), Some("TIMEOUT" | "ERROR")) {
                    return Err(err("TIMEOUT and ERROR go with not ok".into()));
                }
                if let Some((sub, _)) = top.pending.take() {
                    if r.outcome == Outcome::Pass && sub.leaf_totals().fail > 0 {
                        return Err(err("a test passes although a subtest failed".into()));
                    }
                    r.subtests = Some(sub);
                }
                top.report
                    .lines
                    .push(Entry::Result(top.report.results.len()));
                top.report.results.push(r);
            }
            Kind::Diagnostic | Kind::Unknown | Kind::BailOut(_) => unreachable!("handled above"),
        }
        if stack.len() == 1 && is_full(&stack[0]) {
            // The top-level document is complete: what follows may only be
            // diagnostics and unknown lines.
            let level = stack.pop().expect("one level");
            done = Some(level.report);
        }
    }
    let end = lines.len() + 1;
    let missing = |why: String| StrictError {
        line: end,
        text: String::new(),
        why,
    };
    if let Some(report) = done {
        return Ok(report);
    }
    // Whatever is still open at the end is incomplete, innermost first.
    while let Some(level) = stack.pop() {
        let at = |line: usize, why: String| StrictError {
            line,
            text: lines[line - 1].to_string(),
            why,
        };
        if let Some((_, start)) = level.pending {
            return Err(at(
                start,
                "a nested document with no result line after it".into(),
            ));
        }
        if let Err(why) = finish(&level) {
            return Err(if stack.is_empty() {
                missing(format!("the document ended early: {why}"))
            } else {
                at(level.start, why)
            });
        }
        if !stack.is_empty() {
            return Err(at(
                level.start,
                "a nested document with no result line after it".into(),
            ));
        }
    }
    Err(missing("no KTAP document".into()))
}

/// Whether a document has all its planned results and nothing pending.
fn is_full(level: &Level) -> bool {
    level.planned
        && level.pending.is_none()
        && level.report.plan == Some(level.report.results.len())
}

/// Checks that a document that ends here is complete.
fn finish(level: &Level) -> Result<(), String> {
    if !level.planned {
        return Err("a document with no plan".into());
    }
    if level.pending.is_some() {
        return Err("a nested document with no result line after it".into());
    }
    let (plan, got) = (level.report.plan.unwrap_or(0), level.report.results.len());
    if plan != got {
        return Err(format!("a plan of {plan} with {got} results"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Totals;

    fn ok(text: &str) -> Report {
        parse_strict(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn bad(text: &str, why: &str, line: usize) {
        let e = parse_strict(text).expect_err(text);
        assert!(e.why.contains(why), "{e} (wanted {why:?})\n{text}");
        assert_eq!(e.line, line, "{e}\n{text}");
    }

    #[test]
    fn the_specifications_examples_are_valid() {
        let r = ok(
            "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  ok 1 test_1\n  \
                    not ok 2 test_2\n# example failed\nnot ok 1 example\n",
        );
        assert_eq!(r.results[0].subtests.as_ref().unwrap().results.len(), 2);
        let r = ok(
            "KTAP version 1\n1..1\n  KTAP version 1\n  1..3\n    KTAP version 1\n    \
                    1..1\n    # test_1: initializing test_1\n    ok 1 test_1\n  \
                    ok 1 example_test_1\n    KTAP version 1\n    1..2\n    \
                    ok 1 test_1 # SKIP test_1 skipped\n    ok 2 test_2\n  ok 2 example_test_2\n    \
                    KTAP version 1\n    1..3\n    ok 1 test_1\n    # test_2: FAIL\n    \
                    not ok 2 test_2\n    ok 3 test_3 # SKIP test_3 skipped\n  \
                    not ok 3 example_test_3\nnot ok 1 main_test\n",
        );
        assert_eq!(
            r.leaf_totals(),
            Totals {
                pass: 3,
                fail: 1,
                skip: 2
            }
        );
    }

    #[test]
    fn diagnostics_and_unknown_lines_go_anywhere() {
        ok(
            "KTAP version 1\n1..1\n# d\n   odd indent noise\n  # nested-looking\nok 1 a\n\
            # Totals: pass:1\nvmrun: 1 passed, 0 failed, 0 skipped\n",
        );
    }

    #[test]
    fn structure_violations_are_found() {
        bad("", "no KTAP document", 1);
        bad(
            "# hello\nKTAP version 1\n1..0\n",
            "must start with a version line",
            1,
        );
        bad("ok 1 a\n", "must start with a version line", 1);
        bad("KTAP version 1\nok 1 a\n", "a result before the plan", 2);
        bad(
            "KTAP version 1\n# x\n1..1\nok 1 a\n",
            "does not follow its version",
            3,
        );
        bad(
            "KTAP version 1\n1..2\nok 1 a\nok 3 b\n",
            "test 3, expected test 2",
            4,
        );
        bad("KTAP version 1\n1..1\nok 1 a\nok 2 b\n", "after the end", 4);
        bad("KTAP version 1\n1..2\nok 1 a\n", "ended early", 4);
        bad(
            "KTAP version 1\n1..1\nok 1 a\nKTAP version 1\n",
            "after the end",
            4,
        );
        bad(
            "KTAP version 1\n1..1\nBail out! no module\n",
            "Bail out!",
            3,
        );
        bad(
            "KTAP version 1\n1..1\nok 1 a # TIMEOUT 5 s\n",
            "go with not ok",
            3,
        );
        bad("KTAP version 1\n1..x\n", "1..N", 2);
        bad("KTAP version 1\n1..1\n ok 1 a\n", "indented by 1 spaces", 3);
    }

    #[test]
    fn nesting_violations_are_found() {
        // The runner's old output when a guest died mid-test: a nested
        // plan of 3 with one result, then the parent's result.
        bad(
            "KTAP version 1\n1..1\n  KTAP version 1\n  1..3\n  ok 1 a\nnot ok 1 guest\n",
            "a plan of 3 with 1 results",
            3,
        );
        bad(
            "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  ok 1 a\n",
            "no result line after it",
            3,
        );
        bad(
            "KTAP version 1\n1..2\n  KTAP version 1\n  1..0\n  KTAP version 1\n  1..0\nok 1 a\n",
            "two nested documents in a row",
            5,
        );
        bad(
            "KTAP version 1\n  KTAP version 1\n  1..0\n1..1\nok 1 a\n",
            "before its parent's plan",
            2,
        );
        bad(
            "KTAP version 1\n1..1\n  ok 1 a\nok 1 b\n",
            "indented to level 1",
            3,
        );
        bad(
            "KTAP version 1\n1..1\n    KTAP version 1\n",
            "indented to level 2 in a document at level 0",
            3,
        );
        bad(
            "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 x\nok 1 parent\n",
            "passes although a subtest failed",
            6,
        );
        bad(
            "KTAP version 1\n1..1\nKTAP version 1\n",
            "a second top-level document",
            3,
        );
    }

    #[test]
    fn a_skipped_or_failed_parent_may_have_any_subtests() {
        ok(
            "KTAP version 1\n1..2\n  KTAP version 1\n  1..1\n  not ok 1 x # SKIP n/a\n\
            ok 1 p # SKIP killed\n  KTAP version 1\n  1..1\n  ok 1 y\nnot ok 2 q\n",
        );
    }
}
