//! Judging what the guests produced, and saying so in KTAP.

use crate::qemu::{Ending, Guest};
use crate::scenarios::{Expect, Scenario};
use ktap::{Outcome, Report, TestResult, Totals};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

/// How many console lines a failure report shows.
const TAIL_LINES: usize = 40;

/// Console lines that mean the kernel complained: an oops, a WARN, a BUG,
/// a sanitizer or lockdep report. Any of them fails the scenario.
const SPLATS: &[&str] = &[
    "------------[ cut here ]------------",
    "WARNING: CPU:",
    "BUG:",
    "Oops:",
    "Kernel panic",
    "general protection fault",
    "Unable to handle kernel",
    "UBSAN:",
    "KASAN:",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "detected stall",
    "INFO: task",
    "kunit: FAIL",
    // An interrupt line no handler claimed, disabled by the kernel
    // ("irq N: nobody cared (try booting with the "irqpoll" option)").
    "irq N: nobody cared",
    "nobody cared",
    // Lockdep switches itself off at its first report, whatever made it:
    // init says at the end of a debug-kernel guest whether it is still on
    // (see initramfs.rs), and off is a failure.
    "ivshmem-vmrun: lockdep debug_locks=0",
];

/// Everything one guest left behind.
#[derive(Debug)]
pub struct GuestReport {
    /// The guest's name.
    pub name: String,
    /// How QEMU ended.
    pub ending: Ending,
    /// Its KTAP channel, as text.
    pub ktap_text: String,
    /// Its KTAP, parsed.
    pub ktap: Report,
    /// The harness's exit code, from init's marker line.
    pub exit_code: Option<i32>,
    /// Kernel complaints found on the console.
    pub splats: Vec<String>,
    /// The end of the console.
    pub console_tail: Vec<String>,
    /// Where the console log is.
    pub console_path: PathBuf,
    /// QEMU's own messages.
    pub qemu_log: String,
    /// How long the guest was allowed.
    pub timeout: Duration,
    /// Whether QEMU's process is gone.
    pub reaped: bool,
    /// Killed on another guest's request.
    pub killed: bool,
    /// The kernel started init (the console says so).
    pub reached_user_space: bool,
    /// Set when every kernel report is the kernel's, not the driver's
    /// (see [`fault_before_module`]): the first report's line.
    pub fault_before_module: Option<String>,
    /// The tests it was to run, in order (to name those it never reached).
    pub planned: Vec<String>,
}

/// A guest's log as text: invalid UTF-8 replaced, carriage returns
/// dropped, and other control characters but tab and newline escaped, so
/// that the runner's own KTAP stays text whatever a guest printed.
fn read_lossy(p: &std::path::Path) -> String {
    fs::read(p)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .chars()
                .filter(|c| *c != '\r')
                .map(|c| {
                    if c.is_control() && c != '\n' && c != '\t' {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The kernel complaints in a console log: the first line of each.
pub fn find_splats(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|l| SPLATS.iter().any(|s| l.contains(s)))
        .map(str::to_string)
        .collect()
}

/// Where a report that starts at `lines[i]` ends: after its stack trace.
fn report_end(lines: &[&str], i: usize) -> usize {
    (i..lines.len().min(i + 150))
        .find(|j| lines[*j].contains("</TASK>") || lines[*j].contains("end trace"))
        .map_or(lines.len().min(i + 150), |j| j + 1)
}

/// If the console has kernel reports and every one of them is the
/// kernel's, not the driver's, the first one. A report is the kernel's if
/// no line of it but the module list names the driver, and it came before
/// the module was first loaded (its first `ivshmem:` message, e.g. the
/// out-of-tree taint notice), or it is an `int3` trap: a breakpoint of the
/// kernel's own text patching that another vCPU met after the patch, which
/// multi-threaded TCG shows now and then in Debian's kernels, whether or
/// not the module is loaded.
pub fn fault_before_module(console: &str) -> Option<String> {
    let lines: Vec<&str> = console.lines().collect();
    let loaded = lines
        .iter()
        .position(|l| l.contains("ivshmem:") || l.contains("[ivshmem]"))
        .unwrap_or(lines.len());
    let mut first = None;
    for (i, l) in lines.iter().enumerate() {
        if !SPLATS.iter().any(|s| l.contains(s)) {
            continue;
        }
        let end = report_end(&lines, i);
        let driver_frame = lines[i..end]
            .iter()
            .any(|l| l.contains("ivshmem") && !l.contains("Modules linked in:"));
        let patching_trap = l.contains("Oops: int3");
        if driver_frame || (i >= loaded && !patching_trap) {
            return None;
        }
        first.get_or_insert_with(|| l.trim().to_string());
    }
    first
}

/// The harness exit code from init's `# ivshmem-selftest exit=N` line.
pub fn exit_marker(ktap: &str) -> Option<i32> {
    ktap.lines()
        .filter_map(|l| l.trim().strip_prefix("# ivshmem-selftest exit="))
        .next_back()
        .and_then(|n| n.trim().parse().ok())
}

impl GuestReport {
    /// Reads a guest's logs after it ended.
    pub fn collect(g: &Guest, ending: Ending, timeout: Duration, planned: Vec<String>) -> Self {
        let ktap_text = read_lossy(&g.ktap);
        let console = read_lossy(&g.console);
        let splats = find_splats(&console);
        let early = if splats.is_empty() {
            None
        } else {
            fault_before_module(&console)
        };
        let lines: Vec<&str> = console.lines().collect();
        let console_tail = lines[lines.len().saturating_sub(TAIL_LINES)..]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Self {
            name: g.name.clone(),
            ending,
            ktap: ktap::parse(&ktap_text),
            exit_code: exit_marker(&ktap_text),
            splats,
            console_tail,
            console_path: g.console.clone(),
            qemu_log: read_lossy(&g.qemu_log),
            ktap_text,
            timeout,
            reaped: false,
            killed: false,
            reached_user_space: console.contains(crate::qemu::INIT_LINE),
            fault_before_module: early,
            planned,
        }
    }

    /// Why its KTAP stops early, if it does: what the test that was running
    /// gets, and why the tests after it did not run.
    fn interruption(&self) -> (Outcome, String) {
        if self.killed {
            let why = "the guest was killed on request".to_string();
            return (Outcome::Skip(format!("{why}, as the scenario wants")), why);
        }
        match (&self.ending, self.exit_code) {
            (Ending::TimedOut, _) => (
                Outcome::Timeout(format!(
                    "the guest was killed after {} s",
                    self.timeout.as_secs()
                )),
                "the guest timed out".into(),
            ),
            (Ending::Exited(_), None) => (
                Outcome::Error("QEMU exited during this test (kernel panic, or init died)".into()),
                "QEMU exited".into(),
            ),
            (Ending::Exited(_), Some(code)) => (
                Outcome::Error(format!(
                    "the harness stopped during this test (exit {code})"
                )),
                "the harness stopped".into(),
            ),
        }
    }

    /// Its KTAP as the subtests of its result in the runner's output:
    /// complete, closed if it stopped early (see [`Report::close`]).
    /// Output without a KTAP document goes to `parent` as diagnostics.
    fn subtests(&self, parent: &mut Report) -> Option<Report> {
        if self.ktap.version.is_none() {
            for l in self.ktap_text.lines().filter(|l| !l.trim().is_empty()) {
                parent.push_diag(&format!("guest '{}' printed: {l}", self.name));
            }
            return None;
        }
        let mut doc = self.ktap.clone();
        if !doc.is_complete() {
            let (interrupted, why) = self.interruption();
            let stopped =
                doc.unfinished.is_some() || doc.plan.is_none_or(|p| doc.results.len() < p);
            if stopped {
                doc.push_diag(&format!(
                    "ivshmem-vmrun: the output stops here ({why}); the results after this \
                     line are the runner's"
                ));
            }
            doc.close(&self.planned, &interrupted, &why);
        }
        Some(doc)
    }

    /// What went wrong with this guest as a whole (not its tests): it timed
    /// out, crashed, printed incomplete KTAP, or the kernel complained.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.ending {
            Ending::TimedOut if !self.reached_user_space => p.push(
                "never reached user space (no `Run /init` on its console; an emulator hang in \
                 early boot?) and was killed"
                    .into(),
            ),
            Ending::TimedOut => p.push(format!(
                "timed out after {} s and was killed",
                self.timeout.as_secs()
            )),
            Ending::Exited(_) if self.exit_code.is_none() => p.push(
                "QEMU exited before the harness finished (kernel panic, or init died)".into(),
            ),
            Ending::Exited(_) => {}
        }
        if self.exit_code.is_some() {
            if let Err(e) = ktap::parse_strict(&self.ktap_text) {
                p.push(format!("the harness printed malformed KTAP: {e}"));
            }
        }
        if !self.splats.is_empty() {
            p.push(format!("the kernel complained: {}", self.splats[0].trim()));
        }
        p
    }

    /// A failure report: the problem, QEMU's messages, the console tail and
    /// the command that reproduces the scenario. Lines without `# `.
    pub fn failure_report(&self, what: &str, repro: &str) -> Vec<String> {
        let mut v = vec![format!("guest '{}': {what}", self.name)];
        for s in self.splats.iter().skip(1).take(5) {
            v.push(format!("  also: {}", s.trim()));
        }
        if !self.qemu_log.trim().is_empty() {
            v.push("--- QEMU said ---".into());
            v.extend(self.qemu_log.lines().take(10).map(str::to_string));
        }
        v.push(format!(
            "--- console tail (last {} lines of {}) ---",
            self.console_tail.len(),
            self.console_path.display()
        ));
        v.extend(self.console_tail.iter().cloned());
        v.push(format!("--- reproduce: {repro}"));
        v
    }
}

/// The runner's judgement of one scenario.
#[derive(Debug)]
pub struct Verdict {
    /// Whether the scenario passed (or was skipped).
    pub ok: bool,
    /// Why not, in one line.
    pub reason: String,
    /// Why it did not run, if it was skipped.
    pub skipped: Option<String>,
    /// Its guests' results, with their own tests nested: the subtests of
    /// the scenario's result (scenarios judged on their guests' KTAP).
    pub subtests: Option<Report>,
    /// Diagnostics to print before the scenario's result, without `# `.
    pub notes: Vec<String>,
}

impl Verdict {
    /// A scenario that could not run.
    pub fn error(why: String) -> Self {
        Self {
            ok: false,
            notes: vec![format!("error: {why}")],
            reason: why,
            skipped: None,
            subtests: None,
        }
    }

    /// A scenario that cannot run here, and why.
    pub fn skip(why: &str) -> Self {
        Self {
            ok: true,
            reason: String::new(),
            skipped: Some(why.to_string()),
            subtests: None,
            notes: Vec::new(),
        }
    }

    /// Fails the scenario for host-side problems (hooks, requests).
    pub fn fail_host(&mut self, errors: &[String], repro: &str) {
        for e in errors {
            self.notes.push(format!("host: {e}"));
        }
        self.notes.push(format!("--- reproduce: {repro}"));
        if self.ok {
            self.ok = false;
            self.reason = errors.join("; ");
        } else {
            self.reason = format!("{}; {}", self.reason, errors.join("; "));
        }
    }

    /// The scenario's result in the run's KTAP, as test `number`.
    pub fn result(&self, number: usize, name: &str) -> TestResult {
        let outcome = match (&self.skipped, self.ok) {
            (Some(why), _) => Outcome::Skip(why.clone()),
            (None, true) => Outcome::Pass,
            (None, false) => Outcome::Fail(self.reason.replace('\n', " ")),
        };
        TestResult {
            number,
            name: name.to_string(),
            ok: self.ok,
            outcome,
            subtests: self.subtests.clone(),
        }
    }

    /// The leaf counts of the scenario's result: what its KTAP says.
    pub fn totals(&self) -> Totals {
        self.result(1, "").leaf_totals()
    }
}

/// The run's first lines: the version, the plan of `scenarios` results,
/// and `notes` as diagnostics.
pub fn run_header(scenarios: usize, notes: &[String]) -> Vec<String> {
    let mut v = vec!["KTAP version 1".to_string(), format!("1..{scenarios}")];
    v.extend(notes.iter().map(|n| format!("# {n}")));
    v
}

/// What the run prints for scenario `number` once it is over: its guests'
/// KTAP nested, the runner's notes, its time and its result line. The
/// lines printed while it ran (its description, heartbeats, requests) are
/// diagnostics before these.
pub fn scenario_lines(
    number: usize,
    name: &str,
    v: &Verdict,
    retried: Option<&str>,
    elapsed: Duration,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = retried {
        out.push(format!(
            "# retried: an earlier attempt hit a kernel fault that is not the driver's: {why}"
        ));
    }
    let result = v.result(number, name);
    if let Some(sub) = &result.subtests {
        out.extend(sub.render().into_iter().map(|l| format!("  {l}")));
    }
    out.extend(v.notes.iter().map(|n| format!("# {n}")));
    out.push(format!("# {name}: {:.1} s", elapsed.as_secs_f64()));
    out.push(result.line());
    out
}

/// The run's last lines: its totals and the summary line
/// (`vmrun: N passed, N failed, N skipped`), which scripts read.
pub fn run_footer(t: Totals) -> Vec<String> {
    vec![
        format!(
            "# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:0",
            t.pass, t.fail, t.skip
        ),
        format!("vmrun: {t}"),
    ]
}

/// The whole output of a run that failed before any scenario: one
/// failed test, `ivshmem-vmrun`, with the reason.
pub fn run_error(why: &str) -> Vec<String> {
    let mut doc = Report {
        version: Some("KTAP version 1".into()),
        plan: Some(1),
        ..Report::default()
    };
    doc.push_diag(&format!("error: {why}"));
    doc.push_result(
        "ivshmem-vmrun",
        false,
        Outcome::Error(why.replace('\n', " ")),
        None,
    );
    let mut out = doc.render();
    out.extend(run_footer(doc.leaf_totals()));
    out
}

/// Judges a scenario from its guests' reports.
pub fn judge(sc: &Scenario, guests: &[GuestReport], repro: &str) -> Verdict {
    match sc.expect {
        Expect::Pass => judge_pass(guests, repro),
        Expect::GuestFailure => judge_meta(guests, repro, true),
        Expect::Timeout => judge_meta(guests, repro, false),
    }
}

fn judge_pass(guests: &[GuestReport], repro: &str) -> Verdict {
    let mut doc = Report {
        version: Some("KTAP version 1".into()),
        plan: Some(guests.len()),
        ..Report::default()
    };
    let mut failed = Vec::new();
    for g in guests {
        // The guest's own KTAP, nested one level further.
        let sub = g.subtests(&mut doc);
        if sub.is_some() {
            doc.mark_subtests();
        }
        let t = sub.as_ref().map(Report::leaf_totals).unwrap_or_default();
        if g.killed && g.splats.is_empty() && t.fail == 0 {
            // Killed on purpose, mid-test (e.g. a peer that dies mid-stream).
            let why = "killed on request, as the scenario wants";
            doc.push_result(&g.name, true, Outcome::Skip(why.into()), sub);
            continue;
        }
        let mut problems = g.problems();
        if t.fail > 0 {
            // First, unless the guest stopped mid-test: then that is the
            // news, and the test it stopped in is one of the failures.
            let at = if g.ktap.is_complete() {
                0
            } else {
                problems.len()
            };
            problems.insert(at, format!("{} selftest(s) failed", t.fail));
        }
        if t.pass + t.fail + t.skip == 0 && problems.is_empty() {
            problems.push("no selftest ran".into());
        }
        if problems.is_empty() {
            doc.push_result(&g.name, true, Outcome::Pass, sub);
        } else {
            doc.push_diag(&g.failure_report(&problems.join("; "), repro).join("\n"));
            doc.push_result(&g.name, false, Outcome::Fail(problems[0].clone()), sub);
            failed.push(format!("{}: {}", g.name, problems[0]));
        }
    }
    Verdict {
        ok: failed.is_empty(),
        reason: failed.join("; "),
        skipped: None,
        subtests: Some(doc),
        notes: Vec::new(),
    }
}

/// The runner's own tests: the guest must fail (`want_failure`) or time out,
/// and the runner must report it with the console tail and a reproducer.
fn judge_meta(guests: &[GuestReport], repro: &str, want_failure: bool) -> Verdict {
    let mut notes = Vec::new();
    let mut wrong = Vec::new();
    for g in guests {
        let t = g.ktap.leaf_totals();
        notes.push(format!(
            "guest '{}': ending {:?}, harness exit {:?}, KTAP {}",
            g.name, g.ending, g.exit_code, t
        ));
        let problems = g.problems();
        if want_failure {
            if g.ending != Ending::Exited(Some(0)) || g.exit_code != Some(ktap::exit::FAIL) {
                wrong.push(format!(
                    "'{}' should finish with harness exit {} but ended {:?} with exit {:?}",
                    g.name,
                    ktap::exit::FAIL,
                    g.ending,
                    g.exit_code
                ));
            }
            if !(g.ktap.is_complete() && t.fail >= 1) {
                wrong.push(format!("'{}' KTAP does not show the failure: {t}", g.name));
            }
        } else {
            if g.ending != Ending::TimedOut {
                wrong.push(format!("'{}' was not timed out: {:?}", g.name, g.ending));
            }
            if !problems.iter().any(|p| p.contains("timed out")) {
                wrong.push(format!(
                    "'{}' timeout is not reported: {problems:?}",
                    g.name
                ));
            }
            if !g.reaped {
                wrong.push(format!("'{}' QEMU process is still alive", g.name));
            }
        }
        if !g.splats.is_empty() {
            wrong.push(format!("kernel complained: {}", g.splats[0]));
        }
        let what = if want_failure {
            "selftest failed (expected)"
        } else {
            "timed out (expected)"
        };
        let rep = g.failure_report(what, repro);
        let tail_header = rep.iter().position(|l| l.starts_with("--- console tail"));
        let tail_len = tail_header.map(|h| rep.len() - h - 2).unwrap_or(0);
        if tail_len == 0 {
            wrong.push(format!("'{}' report has no console tail", g.name));
        }
        if !rep.last().is_some_and(|l| l.contains(repro)) {
            wrong.push(format!("'{}' report has no reproducer", g.name));
        }
        notes.push(format!(
            "the runner's report ({} lines, console tail of {tail_len}):",
            rep.len()
        ));
        notes.extend(rep.iter().take(3).map(|l| format!("  {l}")));
        notes.push(format!("  ... {}", rep.last().cloned().unwrap_or_default()));
        // What the runner would print for this guest in a scenario that
        // must pass: strict KTAP, however the guest ended.
        let lines = scenario_lines(
            1,
            "check",
            &judge_pass(std::slice::from_ref(g), repro),
            None,
            Duration::ZERO,
        );
        let doc = [run_header(1, &[]), lines].concat().join("\n") + "\n";
        if let Err(e) = ktap::parse_strict(&doc) {
            wrong.push(format!(
                "the runner's KTAP for '{}' is not strict: {e}",
                g.name
            ));
        }
    }
    let ok = wrong.is_empty();
    notes.extend(wrong.iter().map(|w| format!("wrong: {w}")));
    Verdict {
        ok,
        reason: wrong.join("; "),
        skipped: None,
        subtests: None,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(ktap_text: &str, ending: Ending, console: &str) -> GuestReport {
        let lines: Vec<String> = console.lines().map(str::to_string).collect();
        GuestReport {
            name: "g".into(),
            ending,
            ktap: ktap::parse(ktap_text),
            exit_code: exit_marker(ktap_text),
            splats: find_splats(console),
            console_tail: lines,
            console_path: "/tmp/console.log".into(),
            qemu_log: String::new(),
            ktap_text: ktap_text.into(),
            timeout: Duration::from_secs(5),
            reaped: true,
            killed: false,
            reached_user_space: true,
            fault_before_module: fault_before_module(console),
            planned: vec!["t".into()],
        }
    }

    const PASS: &str = "KTAP version 1\n1..1\nok 1 t\n# ivshmem-selftest exit=0\n";
    const FAIL: &str = "KTAP version 1\n1..1\nnot ok 1 t\n# ivshmem-selftest exit=1\n";

    #[test]
    fn only_kernel_faults_before_the_module_count_as_the_kernels() {
        let early = "[ 0.5] Oops: int3: 0000 [#1] SMP NOPTI\n[ 0.5] RIP: sched_clock_cpu+0x1/0x2\n\
                     [ 0.5] </TASK>\n[ 2.0] ivshmem: loading out-of-tree module taints kernel.\n";
        assert_eq!(
            fault_before_module(early).as_deref(),
            Some("[ 0.5] Oops: int3: 0000 [#1] SMP NOPTI")
        );
        // After the module loaded: the driver's, whatever the frames say,
        // unless it is an int3 trap outside the driver (text patching).
        let late = "[ 2.0] ivshmem: loading out-of-tree module taints kernel.\n\
                    [ 3.0] BUG: kernel NULL pointer dereference\n[ 3.0] </TASK>\n";
        assert_eq!(fault_before_module(late), None);
        let trap = "[ 2.0] ivshmem: loading out-of-tree module taints kernel.\n\
                    [ 3.0] Oops: int3: 0000 [#1] SMP NOPTI\n\
                    [ 3.0] RIP: 0010:__timekeeping_advance+0x5e/0x6b0\n\
                    [ 3.0] Modules linked in: ivshmem(OE)\n[ 3.0] ---[ end trace 0 ]---\n";
        assert_eq!(
            fault_before_module(trap).as_deref(),
            Some("[ 3.0] Oops: int3: 0000 [#1] SMP NOPTI")
        );
        let trap_in_driver = "[ 2.0] ivshmem: loading out-of-tree module taints kernel.\n\
                              [ 3.0] Oops: int3: 0000 [#1] SMP NOPTI\n\
                              [ 3.0] RIP: 0010:ivshmem_probe+0x5/0x60 [ivshmem]\n\
                              [ 3.0] ---[ end trace 0 ]---\n";
        assert_eq!(fault_before_module(trap_in_driver), None);
        // A driver frame, even before the taint line.
        let framed = "[ 0.5] BUG: unable to handle page fault\n[ 0.5]  ivshmem_probe+0x1/0x2 [ivshmem]\n\
                      [ 0.5] </TASK>\n";
        assert_eq!(fault_before_module(framed), None);
        // One early and one late: not retried.
        let both = format!("{early}[ 3.0] WARNING: CPU: 0 PID: 1 at foo\n[ 3.0] </TASK>\n");
        assert_eq!(fault_before_module(&both), None);
        // No module at all (it never loaded): the kernel's.
        let never = "[ 0.5] Kernel panic - not syncing: Fatal exception\n";
        assert!(fault_before_module(never).is_some());
        assert_eq!(fault_before_module("[ 1.0] all fine\n"), None);
    }

    #[test]
    fn a_guest_that_never_booted_says_so() {
        let mut g = guest("", Ending::TimedOut, "[ 1.0] hpet0: at MMIO\n");
        g.reached_user_space = false;
        let p = g.problems();
        assert!(p[0].starts_with("never reached user space"), "{p:?}");
        let v = judge_pass(&[g], "repro");
        assert!(!v.ok);
    }

    #[test]
    fn passing_guest_passes() {
        let v = judge_pass(&[guest(PASS, Ending::Exited(Some(0)), "boot\n")], "repro");
        assert!(v.ok, "{v:?}");
        assert_eq!(
            v.totals(),
            Totals {
                pass: 1,
                fail: 0,
                skip: 0
            }
        );
    }

    #[test]
    fn failing_test_fails_with_console_and_reproducer() {
        let v = judge_pass(&[guest(FAIL, Ending::Exited(Some(0)), "boot\n")], "repro x");
        assert!(!v.ok);
        assert_eq!(v.totals().fail, 1);
        let lines = scenario_lines(1, "sc", &v, None, Duration::ZERO);
        assert!(lines.iter().any(|l| l.contains("console tail")));
        assert!(lines.iter().any(|l| l.trim() == "# boot"));
        assert!(lines.iter().any(|l| l.contains("reproduce: repro x")));
    }

    #[test]
    fn kernel_splat_fails_a_passing_guest() {
        let console = "boot\n[    1.0] WARNING: CPU: 0 PID: 1 at foo.c:1 bar\n";
        let v = judge_pass(&[guest(PASS, Ending::Exited(Some(0)), console)], "r");
        assert!(!v.ok);
        assert!(v.reason.contains("kernel complained"), "{}", v.reason);
    }

    #[test]
    fn an_unhandled_interrupt_line_is_a_splat() {
        let console = "boot\n[    3.2] irq 11: nobody cared (try booting with the \"irqpoll\" option)\n\
                       [    3.2] handlers:\n[    3.2] Disabling IRQ #11\n";
        let splats = find_splats(console);
        assert_eq!(splats.len(), 1, "{splats:?}");
        assert!(splats[0].contains("irq 11: nobody cared"));
        let v = judge_pass(&[guest(PASS, Ending::Exited(Some(0)), console)], "r");
        assert!(!v.ok);
    }

    #[test]
    fn every_kernel_report_fails_and_lockdep_off_is_one() {
        // The 7.3.4 pciehp lockdep report, tolerated until hot-plug moved
        // to ACPI: any report fails a guest now.
        let console = "[ 1.0] WARNING: possible circular locking dependency detected\n\
                       [ 1.0]  pciehp_unconfigure_device+0x144/0x1d0\n[ 1.0]  </TASK>\n";
        assert!(!find_splats(console).is_empty());
        let v = judge_pass(&[guest(PASS, Ending::Exited(Some(0)), console)], "r");
        assert!(!v.ok);
        // What init says at the end of a debug-kernel guest.
        let off = "ivshmem-vmrun: lockdep debug_locks=0\n";
        assert_eq!(find_splats(off).len(), 1);
        let v = judge_pass(&[guest(PASS, Ending::Exited(Some(0)), off)], "r");
        assert!(!v.ok);
        let on = "ivshmem-vmrun: lockdep debug_locks=1\n";
        assert!(find_splats(on).is_empty());
        let v = judge_pass(&[guest(PASS, Ending::Exited(Some(0)), on)], "r");
        assert!(v.ok, "{}", v.reason);
    }

    #[test]
    fn missing_marker_or_timeout_fails() {
        let half = "KTAP version 1\n1..2\nok 1 t\n";
        let v = judge_pass(&[guest(half, Ending::Exited(Some(0)), "panic\n")], "r");
        assert!(!v.ok);
        assert!(v.reason.contains("QEMU exited"), "{}", v.reason);
        let v = judge_pass(&[guest(half, Ending::TimedOut, "x\n")], "r");
        assert!(!v.ok);
        assert!(v.reason.contains("timed out"), "{}", v.reason);
    }

    #[test]
    fn meta_judgements_need_the_expected_ending() {
        // Expecting a failure: a passing guest is wrong, a failing one right.
        assert!(!judge_meta(&[guest(PASS, Ending::Exited(Some(0)), "b\n")], "r", true).ok);
        assert!(judge_meta(&[guest(FAIL, Ending::Exited(Some(0)), "b\n")], "r", true).ok);
        // Expecting a timeout: it must have timed out, with a console tail.
        assert!(!judge_meta(&[guest(PASS, Ending::Exited(Some(0)), "b\n")], "r", false).ok);
        assert!(judge_meta(&[guest("", Ending::TimedOut, "b\n")], "r", false).ok);
        assert!(!judge_meta(&[guest("", Ending::TimedOut, "")], "r", false).ok);
    }

    fn named(
        name: &str,
        ktap: &str,
        ending: Ending,
        console: &str,
        planned: &[&str],
    ) -> GuestReport {
        GuestReport {
            name: name.into(),
            planned: planned.iter().map(|t| t.to_string()).collect(),
            ..guest(ktap, ending, console)
        }
    }

    fn scenario(expect: Expect) -> Scenario {
        Scenario::new("sc", "about", Duration::from_secs(5)).expect(expect)
    }

    fn counts(pass: usize, fail: usize, skip: usize) -> Totals {
        Totals { pass, fail, skip }
    }

    /// Every way a scenario can end, the runner's verdict on it, and the
    /// counts it must report.
    fn every_case() -> Vec<(&'static str, Verdict, Totals)> {
        let pass = |guests: &[GuestReport]| judge(&scenario(Expect::Pass), guests, "repro");
        let exited = Ending::Exited(Some(0));
        let mut host_error = pass(&[named("g", PASS, exited.clone(), "boot\n", &["t"])]);
        host_error.fail_host(
            &["the host's check of the shared memory failed".into()],
            "repro",
        );
        let mut victim = named(
            "b",
            "KTAP version 1\n1..1\n# doorbell_kill: a guest dies mid-stream\n",
            Ending::Exited(None),
            "boot\n",
            &["doorbell_kill"],
        );
        victim.killed = true;
        vec![
            (
                "pass",
                pass(&[named("g", PASS, exited.clone(), "boot\n", &["t"])]),
                counts(1, 0, 0),
            ),
            (
                "fail",
                pass(&[named("g", FAIL, exited.clone(), "boot\n", &["t"])]),
                counts(0, 1, 0),
            ),
            (
                "skipped-tests",
                pass(&[named(
                    "g",
                    "KTAP version 1\n1..2\nok 1 a # SKIP no device\nok 2 b\n# ivshmem-selftest exit=0\n",
                    exited.clone(),
                    "boot\n",
                    &["a", "b"],
                )]),
                counts(1, 0, 1),
            ),
            (
                "skipped-scenario",
                Verdict::skip("needs the Debian guest root"),
                counts(0, 0, 1),
            ),
            (
                "timeout-mid-test",
                pass(&[named(
                    "g",
                    "KTAP version 1\n1..3\n# a: first\nok 1 a\n# b: second\n",
                    Ending::TimedOut,
                    "boot\n",
                    &["a", "b", "c"],
                )]),
                counts(1, 1, 1),
            ),
            (
                "killed-on-request-mid-test",
                pass(&[named("a", PASS, exited.clone(), "boot\n", &["t"]), victim]),
                counts(1, 0, 1),
            ),
            (
                "qemu-died-mid-test",
                pass(&[named(
                    "g",
                    "KTAP version 1\n1..2\nok 1 a\n",
                    exited.clone(),
                    "[ 3.0] Kernel panic - not syncing: Fatal exception\n",
                    &["a", "b"],
                )]),
                counts(1, 1, 0),
            ),
            (
                "no-output-timeout",
                pass(&[named("g", "", Ending::TimedOut, "boot\n", &["t"])]),
                counts(0, 1, 0),
            ),
            (
                "no-output-exit",
                pass(&[named("g", "", exited.clone(), "boot\n", &["t"])]),
                counts(0, 1, 0),
            ),
            (
                "output-without-ktap",
                pass(&[named(
                    "g",
                    "[ 1.0] no KTAP here\n",
                    Ending::TimedOut,
                    "boot\n",
                    &["t"],
                )]),
                counts(0, 1, 0),
            ),
            (
                "kernel-fault-after-passing-tests",
                pass(&[named(
                    "g",
                    PASS,
                    exited.clone(),
                    "[ 2.0] WARNING: CPU: 0 PID: 1 at drivers/x.c:1 y\n",
                    &["t"],
                )]),
                counts(1, 1, 0),
            ),
            ("host-error", host_error, counts(1, 1, 0)),
            (
                "nested-document-cut",
                pass(&[named(
                    "g",
                    "KTAP version 1\n1..2\n  KTAP version 1\n  1..2\n  ok 1 x\n",
                    Ending::TimedOut,
                    "boot\n",
                    &["p", "q"],
                )]),
                counts(1, 1, 1),
            ),
            (
                "malformed-but-finished",
                pass(&[named(
                    "g",
                    "KTAP version 1\n1..2\nok 1 a\nok 3 b\n# ivshmem-selftest exit=0\n",
                    exited.clone(),
                    "boot\n",
                    &["a", "b"],
                )]),
                counts(2, 1, 0),
            ),
            (
                "noise-on-the-channel",
                pass(&[named(
                    "g",
                    "ivt-probe-ok\nKTAP version 1\n1..1\nok 7 looks like a result\n  ok 1 t\nok 1 t\n\
                     # ivshmem-selftest exit=0\n",
                    exited.clone(),
                    "boot\n",
                    &["t"],
                )]),
                counts(2, 1, 0),
            ),
            (
                "runner-detects-failure",
                judge(
                    &scenario(Expect::GuestFailure),
                    &[named("g", FAIL, exited.clone(), "boot\n", &["t"])],
                    "repro",
                ),
                counts(1, 0, 0),
            ),
            (
                "runner-detects-timeout",
                judge(
                    &scenario(Expect::Timeout),
                    &[named(
                        "g",
                        "KTAP version 1\n1..1\n# hang: never ends\n",
                        Ending::TimedOut,
                        "boot\n",
                        &["hang"],
                    )],
                    "repro",
                ),
                counts(1, 0, 0),
            ),
            (
                "could-not-run",
                Verdict::error("creating /dev/shm/x: No space left on device".into()),
                counts(0, 1, 0),
            ),
        ]
    }

    /// The runner's whole output for a run of every case, as it prints it:
    /// header, each scenario's description and progress lines, its block,
    /// the footer.
    fn run_output(cases: &[(&'static str, Verdict, Totals)]) -> (String, Totals) {
        let mut text = run_header(cases.len(), &["accelerator: tcg (requested)".into()]);
        let mut sum = Totals::default();
        for (i, (name, v, _)) in cases.iter().enumerate() {
            sum.merge(v.totals());
            text.push(format!("# {name}: about (1 guest, tcg, kernel: k)"));
            text.push(format!("# {name}: still running after 30 s"));
            let retried = (i == 0).then_some("guest 'g': [ 0.5] Oops: int3");
            text.extend(scenario_lines(
                i + 1,
                name,
                v,
                retried,
                Duration::from_secs(3),
            ));
        }
        text.extend(run_footer(sum));
        (text.join("\n") + "\n", sum)
    }

    #[test]
    fn the_runners_output_is_strict_ktap_in_every_case() {
        let cases = every_case();
        let (doc, sum) = run_output(&cases);
        let r = ktap::parse_strict(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        if std::env::var_os("VMRUN_SHOW_KTAP").is_some() {
            println!("{doc}");
        }
        assert_eq!(r.results.len(), cases.len());
        for (res, (name, v, want)) in r.results.iter().zip(&cases) {
            assert_eq!(res.name, *name);
            assert_eq!(v.totals(), *want, "the runner's count for {name}");
            assert_eq!(
                res.leaf_totals(),
                *want,
                "a strict reader's count for {name}"
            );
            assert_eq!(res.ok, v.ok, "{name}");
        }
        assert_eq!(r.leaf_totals(), sum);
        assert_eq!(sum, counts(14, 12, 5));
        assert_eq!(doc.lines().last(), Some(format!("vmrun: {sum}").as_str()));
    }

    #[test]
    fn cut_documents_are_closed_with_the_reason() {
        let cases = every_case();
        let (doc, _) = run_output(&cases);
        for want in [
            "    not ok 2 b # TIMEOUT the guest was killed after 5 s",
            "    not ok 3 c # SKIP not run: the guest timed out",
            "    ok 1 doorbell_kill # SKIP the guest was killed on request, as the scenario wants",
            "  ok 2 b # SKIP killed on request, as the scenario wants",
            "    not ok 2 b # ERROR QEMU exited during this test (kernel panic, or init died)",
            "      not ok 2 test_2 # TIMEOUT the guest was killed after 5 s",
            "    not ok 2 q # SKIP not run: the guest timed out",
            "    ok 1 looks like a result",
            "    # ok 1 t",
            "    ok 2 t",
            "    # ivt-probe-ok",
            "  # guest 'g' printed: [ 1.0] no KTAP here",
        ] {
            assert!(doc.lines().any(|l| l == want), "no {want:?} in\n{doc}");
        }
        // The malformed document is renumbered, and said to be malformed.
        assert!(
            doc.contains("the harness printed malformed KTAP: line 4: test 3, expected test 2")
        );
    }

    #[test]
    fn a_run_that_cannot_start_is_one_strict_failure() {
        let out = run_error("kernel /x does not exist\n(build it)").join("\n") + "\n";
        let r = ktap::parse_strict(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(r.leaf_totals(), counts(0, 1, 0));
        assert!(out.contains("not ok 1 ivshmem-vmrun # ERROR kernel /x does not exist (build it)"));
        assert!(out.ends_with("vmrun: 0 passed, 1 failed, 0 skipped\n"));
    }
}
