//! Reading KTAP leniently, completing a document that stopped early, and
//! printing it again.

use crate::{Outcome, Totals, one_line};

/// One parsed result line, with the subtests printed before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test number.
    pub number: usize,
    /// The description (test name).
    pub name: String,
    /// `ok` (true) or `not ok`: a skip may be either.
    pub ok: bool,
    /// What happened.
    pub outcome: Outcome,
    /// Nested subtests, if any were printed before this line.
    pub subtests: Option<Report>,
}

impl TestResult {
    /// Its result line, without indentation.
    pub fn line(&self) -> String {
        result_line(self.ok, self.number, &self.name, &self.outcome)
    }

    /// Counts of the leaves under this result: its subtests' leaves if it
    /// has any, else itself. A test that failed although none of its
    /// subtests did (the whole failed, e.g. the kernel complained) counts
    /// as one failure more.
    pub fn leaf_totals(&self) -> Totals {
        let mut t = Totals::default();
        match &self.subtests {
            Some(sub) if !sub.results.is_empty() => {
                t = sub.leaf_totals();
                if self.outcome.is_failure() && t.fail == 0 {
                    t.fail += 1;
                }
            }
            _ => t.add(&self.outcome),
        }
        t
    }
}

/// A line of a document other than its version, plan and bail-out lines,
/// in the order printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A diagnostic line: what follows its `#`, as printed.
    Diagnostic(String),
    /// A line that is not KTAP (console noise), as printed.
    Unknown(String),
    /// The result at this index of [`Report::results`].
    Result(usize),
    /// The subtests of the result at this index, printed here rather than
    /// right before its line (diagnostics came between them).
    Subtests(usize),
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
    /// Every line but the version, plan and bail-out, in order.
    pub lines: Vec<Entry>,
    /// A nested document that no result line followed: the output stopped
    /// while the test it belongs to was running.
    pub unfinished: Option<Box<Report>>,
}

impl Report {
    /// Whether the document is complete: a version and a plan were seen,
    /// the plan matches the results, nothing bailed out, and so for every
    /// nested document.
    pub fn is_complete(&self) -> bool {
        self.version.is_some()
            && self.bail_out.is_none()
            && self.unfinished.is_none()
            && self.plan == Some(self.results.len())
            && self
                .results
                .iter()
                .filter_map(|r| r.subtests.as_ref())
                .all(Report::is_complete)
    }

    /// Counts of the leaf results (see [`TestResult::leaf_totals`]).
    pub fn leaf_totals(&self) -> Totals {
        let mut t = Totals::default();
        for r in &self.results {
            t.merge(r.leaf_totals());
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

    /// Adds a result (numbered after the others) and its line.
    pub fn push_result(&mut self, name: &str, ok: bool, outcome: Outcome, sub: Option<Report>) {
        self.lines.push(Entry::Result(self.results.len()));
        self.results.push(TestResult {
            number: self.results.len() + 1,
            name: name.to_string(),
            ok,
            outcome,
            subtests: sub,
        });
    }

    /// Says that the subtests of the next result ([`Report::push_result`])
    /// go here, before the lines added in between.
    pub fn mark_subtests(&mut self) {
        let next = self.results.len();
        self.lines.retain(|e| *e != Entry::Subtests(next));
        self.lines.push(Entry::Subtests(next));
    }

    /// Adds a diagnostic line (`# text`).
    pub fn push_diag(&mut self, text: &str) {
        for l in text.lines() {
            self.lines.push(Entry::Diagnostic(format!(" {l}")));
            self.diagnostics.push(l.to_string());
        }
    }

    /// Completes a document whose output stopped before its plan was
    /// fulfilled (the program was killed, or timed out): the test that was
    /// running gets `interrupted` (with the subtests it had printed, closed
    /// the same way), and each test after it a `not ok ... # SKIP not run:
    /// <why_not_run>` line. Tests are named from `names`, the tests in
    /// the order they were to run. A document with no plan gets one
    /// for `names`. A document without a version line is left as it is.
    pub fn close(&mut self, names: &[String], interrupted: &Outcome, why_not_run: &str) {
        if self.version.is_none() {
            return;
        }
        let plan = self
            .plan
            .unwrap_or(names.len())
            .max(self.results.len())
            .max(self.results.len() + usize::from(self.unfinished.is_some()));
        self.plan = Some(plan);
        let mut unfinished = self.unfinished.take().map(|mut u| {
            u.close(&[], interrupted, why_not_run);
            *u
        });
        let mut first = true;
        while self.results.len() < plan {
            let i = self.results.len();
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("test_{}", i + 1));
            if first {
                let ok = !interrupted.is_failure();
                self.push_result(&name, ok, interrupted.clone(), unfinished.take());
                first = false;
            } else {
                let why = Outcome::Skip(format!("not run: {why_not_run}"));
                self.push_result(&name, false, why, None);
            }
        }
        // Subtests of a result that was printed after all (cannot happen
        // with a plan that counted them): keep what they said.
        if let Some(u) = unfinished {
            for l in u.render() {
                self.push_diag(&l);
            }
        }
        for r in &mut self.results {
            if let Some(sub) = &mut r.subtests {
                sub.close(&[], interrupted, why_not_run);
            }
        }
    }

    /// The document as KTAP lines, nested documents indented by two
    /// spaces a level. Lines that are not KTAP become diagnostics, as does
    /// a bail-out; results are numbered in order. A closed
    /// ([`Report::close`]) document renders as valid KTAP.
    pub fn render(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.render_into(0, &mut out);
        out
    }

    fn render_into(&self, depth: usize, out: &mut Vec<String>) {
        let ind = "  ".repeat(depth);
        out.push(format!(
            "{ind}{}",
            self.version.as_deref().unwrap_or("KTAP version 1")
        ));
        out.push(format!(
            "{ind}1..{}",
            self.plan.unwrap_or(0).max(self.results.len())
        ));
        let mut placed = vec![false; self.results.len()];
        for e in &self.lines {
            match e {
                Entry::Diagnostic(d) => out.push(format!("{ind}#{d}")),
                Entry::Unknown(u) => out.push(format!("{ind}# {u}")),
                Entry::Subtests(i) => {
                    if let Some(sub) = self.results.get(*i).and_then(|r| r.subtests.as_ref()) {
                        sub.render_into(depth + 1, out);
                        placed[*i] = true;
                    }
                }
                Entry::Result(i) => {
                    let r = &self.results[*i];
                    if let (Some(sub), false) = (&r.subtests, placed[*i]) {
                        sub.render_into(depth + 1, out);
                    }
                    out.push(format!(
                        "{ind}{}",
                        result_line(r.ok, i + 1, &r.name, &r.outcome)
                    ));
                }
            }
        }
        if let Some(why) = &self.bail_out {
            out.push(format!("{ind}# Bail out! {why}"));
        }
    }
}

/// Directive keywords a result's `# ` may start with.
const DIRECTIVES: &[&str] = &["SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR"];

/// A result line: `ok 1 name`, `not ok 2 name # TIMEOUT after 5 s`. A
/// failure's reason follows a `#` (the runner's use; the harness prints
/// it as a diagnostic instead), never looking like a directive.
pub(crate) fn result_line(ok: bool, number: usize, name: &str, outcome: &Outcome) -> String {
    let word = if ok { "ok" } else { "not ok" };
    // A description cannot hold `#`.
    let name = name.replace('#', "_");
    let mut l = format!("{word} {number}");
    if !name.is_empty() {
        l = format!("{l} {name}");
    }
    let directive = |d: &str, why: &str| {
        if why.is_empty() {
            format!(" # {d}")
        } else {
            format!(" # {d} {}", one_line(why))
        }
    };
    l += &match outcome {
        Outcome::Pass => String::new(),
        Outcome::Fail(why) if why.is_empty() => String::new(),
        Outcome::Fail(why) => {
            let first = why.split_whitespace().next().unwrap_or("");
            if DIRECTIVES.contains(&first.to_ascii_uppercase().as_str()) {
                format!(" # failed: {}", one_line(why))
            } else {
                format!(" # {}", one_line(why))
            }
        }
        Outcome::Skip(why) => directive("SKIP", why),
        Outcome::Timeout(why) => directive("TIMEOUT", why),
        Outcome::Error(why) => directive("ERROR", why),
    };
    l
}

/// A line's indentation (leading spaces) and the rest.
pub(crate) fn split_indent(l: &str) -> (usize, &str) {
    let t = l.trim_start_matches(' ');
    (l.len() - t.len(), t)
}

/// What a line is.
#[derive(Debug)]
pub(crate) enum Kind {
    Version,
    Plan(Option<usize>),
    Result(TestResult),
    BailOut(String),
    Diagnostic,
    Unknown,
}

pub(crate) fn classify(t: &str) -> Kind {
    if t.starts_with("KTAP version ") || t.starts_with("TAP version ") {
        Kind::Version
    } else if let Some(n) = t.strip_prefix("1..") {
        let n = n.split(" #").next().unwrap_or("");
        Kind::Plan(n.trim_end().parse().ok())
    } else if let Some(rest) = t.strip_prefix("Bail out!") {
        Kind::BailOut(rest.trim().to_string())
    } else if t.starts_with('#') {
        Kind::Diagnostic
    } else if let Some(r) = parse_result(t) {
        Kind::Result(r)
    } else {
        Kind::Unknown
    }
}

pub(crate) fn parse_result(l: &str) -> Option<TestResult> {
    let (ok, rest) = if let Some(r) = l.strip_prefix("not ok ") {
        (false, r)
    } else if let Some(r) = l.strip_prefix("ok ") {
        (true, r)
    } else {
        return None;
    };
    let (num, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = num.parse().ok()?;
    let (name, directive) = match rest.split_once(" # ") {
        Some((n, d)) => (n, Some(d)),
        None => match rest.strip_prefix("# ") {
            Some(d) => ("", Some(d)),
            None => match rest.strip_suffix(" #") {
                Some(n) => (n, Some("")),
                None => (rest, None),
            },
        },
    };
    let directive = directive.map(|d| {
        let d = d.trim();
        let (word, reason) = d.split_once(' ').unwrap_or((d, ""));
        (word.to_ascii_uppercase(), reason.trim().to_string(), d)
    });
    let outcome = match (ok, directive) {
        (_, Some((w, r, _))) if w == "SKIP" => Outcome::Skip(r),
        (false, Some((w, r, _))) if w == "TIMEOUT" => Outcome::Timeout(r),
        (false, Some((w, r, _))) if w == "ERROR" => Outcome::Error(r),
        (true, _) => Outcome::Pass,
        (false, Some((_, _, all))) => Outcome::Fail(all.to_string()),
        (false, None) => Outcome::Fail(String::new()),
    };
    Some(TestResult {
        number,
        name: name.trim().to_string(),
        ok,
        outcome,
        subtests: None,
    })
}

/// Parses KTAP (or TAP 13) text leniently: lines before the version line
/// and lines that are not KTAP (console noise) are kept as such; carriage
/// returns from a serial line are stripped; a result's number is taken as
/// printed; an indented version line starts a nested document, which
/// ends at a KTAP line indented less (or a diagnostic indented less, once
/// it has all its results); a second top-level document is ignored.
pub fn parse(text: &str) -> Report {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut report = Report::default();
    let Some(start) = lines
        .iter()
        .position(|l| matches!(classify(split_indent(l).1), Kind::Version))
    else {
        for l in &lines {
            note(&mut report, l);
        }
        return report;
    };
    for l in &lines[..start] {
        note(&mut report, l);
    }
    let mut pos = start;
    parse_doc(&lines, &mut pos, &mut report, true);
    report
}

/// Records a line that is no result, plan or version.
fn note(report: &mut Report, l: &str) {
    let t = split_indent(l).1;
    match t.strip_prefix('#') {
        Some(d) => {
            report.lines.push(Entry::Diagnostic(d.to_string()));
            report.diagnostics.push(d.trim_start().to_string());
        }
        None if t.is_empty() => {}
        None => report.lines.push(Entry::Unknown(t.to_string())),
    }
}

/// Reads the document whose version line is `lines[*pos]` into `report`.
fn parse_doc(lines: &[&str], pos: &mut usize, report: &mut Report, top: bool) {
    let (base, t) = split_indent(lines[*pos]);
    report.version = Some(t.to_string());
    *pos += 1;
    let mut pending: Option<Report> = None;
    while *pos < lines.len() {
        let (indent, t) = split_indent(lines[*pos]);
        let kind = classify(t);
        // A KTAP line indented less ends a nested document; so does a
        // diagnostic once the document has all its results (it is the
        // parent's, as in `# example failed` before `not ok 1 example`).
        let structural = !matches!(kind, Kind::Diagnostic | Kind::Unknown);
        let full = report.plan == Some(report.results.len());
        let ends = structural || (full && matches!(kind, Kind::Diagnostic));
        if ends && indent < base && !top {
            break;
        }
        match kind {
            Kind::Version if indent > base => {
                let mut sub = Report::default();
                parse_doc(lines, pos, &mut sub, false);
                // Two nested documents without a result: keep the last.
                report.mark_subtests();
                pending = Some(sub);
                continue;
            }
            Kind::Version => {
                if top {
                    // A second document: ignored.
                    *pos = lines.len();
                }
                break;
            }
            Kind::Plan(n) if indent <= base => {
                if report.plan.is_none() {
                    report.plan = n;
                }
            }
            Kind::Result(mut r) if indent <= base => {
                r.subtests = pending.take();
                report.lines.push(Entry::Result(report.results.len()));
                report.results.push(r);
            }
            Kind::BailOut(why) if indent <= base => report.bail_out = Some(why),
            _ => note(report, lines[*pos]),
        }
        *pos += 1;
    }
    report.unfinished = pending.map(Box::new);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_strict;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
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
        // The noise is kept, and becomes diagnostics when printed again.
        let out = r.render();
        assert!(out.contains(&"# garbage".to_string()), "{out:?}");
        assert!(
            out.contains(&"# [  1.0] kernel says hi".to_string()),
            "{out:?}"
        );
        parse_strict(&(out.join("\n") + "\n")).unwrap();
    }

    #[test]
    fn incomplete_documents_are_detected() {
        assert!(!parse("KTAP version 1\n1..2\nok 1 a\n").is_complete());
        assert!(!parse("1..1\nok 1 a\n").is_complete());
        assert!(!parse("KTAP version 1\n1..1\nBail out! no module\n").is_complete());
        assert!(!parse("").is_complete());
        let sub = "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  ok 1 a\nok 1 b\n";
        assert!(!parse(sub).is_complete());
        let unfinished = "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  ok 1 a\n";
        assert!(!parse(unfinished).is_complete());
        assert!(parse(unfinished).unfinished.is_some());
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
        assert_eq!(r.render().join("\n") + "\n", text);
    }

    #[test]
    fn diagnostics_between_subtests_and_their_result_stay_there() {
        let text = "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 test_1\n\
                    # example failed\nnot ok 1 example\n";
        assert_eq!(parse(text).render().join("\n") + "\n", text);
        let mut r = Report {
            version: Some("KTAP version 1".into()),
            plan: Some(1),
            ..Report::default()
        };
        r.push_diag("before");
        r.mark_subtests();
        r.push_diag("after");
        r.push_result(
            "t",
            true,
            Outcome::Pass,
            Some(parse("KTAP version 1\n1..0\n")),
        );
        assert_eq!(
            r.render(),
            [
                "KTAP version 1",
                "1..1",
                "# before",
                "  KTAP version 1",
                "  1..0",
                "# after",
                "ok 1 t"
            ]
        );
    }

    #[test]
    fn indented_noise_is_no_subtest() {
        // An indented line that is not a version line is noise of this
        // level, not the start of a nested document.
        let r = parse("KTAP version 1\n1..1\n   traceback line\n  ok 7\nok 1 t\n");
        assert!(r.is_complete());
        assert!(r.results[0].subtests.is_none());
        assert_eq!(r.results[0].name, "t");
        assert_eq!(r.results.len(), 1);
    }

    #[test]
    fn a_failed_parent_of_passing_subtests_counts_once() {
        let text = "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  ok 1 x\n  \
                    ok 2 y # SKIP n/a\nnot ok 1 guest # the kernel complained\n";
        let r = parse(text);
        assert_eq!(
            r.results[0].outcome,
            Outcome::Fail("the kernel complained".into())
        );
        assert_eq!(
            r.leaf_totals(),
            Totals {
                pass: 1,
                fail: 1,
                skip: 1
            }
        );
    }

    #[test]
    fn closing_a_document_cut_mid_test() {
        let text = "KTAP version 1\n1..4\n# a: first\nok 1 a\n# b: second\n";
        let mut r = parse(text);
        assert!(!r.is_complete());
        r.close(
            &names(&["a", "b", "c", "d"]),
            &Outcome::Timeout("the guest was killed after 5 s".into()),
            "the guest timed out",
        );
        assert!(r.is_complete());
        let out = r.render();
        assert_eq!(
            out[out.len() - 3..],
            [
                "not ok 2 b # TIMEOUT the guest was killed after 5 s",
                "not ok 3 c # SKIP not run: the guest timed out",
                "not ok 4 d # SKIP not run: the guest timed out",
            ]
        );
        let strict = parse_strict(&(out.join("\n") + "\n")).unwrap();
        assert_eq!(
            strict.leaf_totals(),
            Totals {
                pass: 1,
                fail: 1,
                skip: 2
            }
        );
    }

    #[test]
    fn closing_keeps_the_running_tests_subtests() {
        let text = "KTAP version 1\n1..2\nok 1 a\n  KTAP version 1\n  1..3\n  ok 1 x\n";
        let mut r = parse(text);
        r.close(
            &names(&["a", "b"]),
            &Outcome::Skip("killed on request".into()),
            "killed on request",
        );
        let out = r.render().join("\n") + "\n";
        assert_eq!(
            out,
            "KTAP version 1\n1..2\nok 1 a\n  KTAP version 1\n  1..3\n  ok 1 x\n  \
             ok 2 test_2 # SKIP killed on request\n  \
             not ok 3 test_3 # SKIP not run: killed on request\n\
             ok 2 b # SKIP killed on request\n"
        );
        parse_strict(&out).unwrap();
    }

    #[test]
    fn closing_without_a_plan_plans_the_named_tests() {
        let mut r = parse("KTAP version 1\n");
        r.close(
            &names(&["a", "b"]),
            &Outcome::Error("QEMU exited".into()),
            "QEMU exited",
        );
        assert_eq!(r.plan, Some(2));
        assert_eq!(r.results[0].outcome, Outcome::Error("QEMU exited".into()));
        parse_strict(&(r.render().join("\n") + "\n")).unwrap();
        // No document at all: nothing to close.
        let mut none = parse("noise\n");
        none.close(&names(&["a"]), &Outcome::Error("x".into()), "x");
        assert!(none.results.is_empty() && none.plan.is_none());
    }

    #[test]
    fn result_lines_never_look_like_other_directives() {
        let l = |o: Outcome| result_line(!o.is_failure(), 1, "t", &o);
        assert_eq!(
            l(Outcome::Fail("skip this".into())),
            "not ok 1 t # failed: skip this"
        );
        assert_eq!(
            l(Outcome::Fail("guest: died".into())),
            "not ok 1 t # guest: died"
        );
        assert_eq!(l(Outcome::Skip("a\nb".into())), "ok 1 t # SKIP a b");
        assert_eq!(result_line(true, 2, "a#b", &Outcome::Pass), "ok 2 a_b");
        // A failure's reason reads back as the failure's reason.
        let r = parse_result("not ok 1 t # guest: died").unwrap();
        assert_eq!(r.outcome, Outcome::Fail("guest: died".into()));
    }
}
