//! Judging what the guests produced, and saying so in KTAP.

use crate::qemu::{Ending, Guest};
use crate::scenarios::{Expect, Scenario};
use ktap::{Report, Totals};
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
];

/// Kernel reports known to come from elsewhere (upstream kernel code, not
/// this driver), tolerated only when every marker is in the report and no
/// frame of the driver is. They are still printed.
struct KnownSplat {
    what: &'static str,
    markers: &'static [&'static str],
}

const KNOWN_SPLATS: &[KnownSplat] = &[KnownSplat {
    what: "7.3.4 pciehp lockdep report on hot-unplug (pci_rescan_remove_lock vs reset_lock), \
           inside pciehp_unconfigure_device",
    markers: &[
        "possible circular locking dependency",
        "pci_rescan_remove_lock",
        "reset_lock",
        "pciehp_unconfigure_device",
    ],
}];

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
    /// Known reports from outside this driver, tolerated.
    pub tolerated: Vec<String>,
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
    /// Set when every kernel report came before the module was loaded and
    /// none has a driver frame: the first report's line.
    pub fault_before_module: Option<String>,
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

/// The kernel complaints in a console log, and the known foreign ones.
pub fn find_splats(console: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<&str> = console.lines().collect();
    let (mut splats, mut tolerated) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < lines.len() {
        if !SPLATS.iter().any(|s| lines[i].contains(s)) {
            i += 1;
            continue;
        }
        // The report runs to the end of its stack trace.
        let end = report_end(&lines, i);
        let block = &lines[i..end];
        let known = KNOWN_SPLATS.iter().find(|k| {
            k.markers
                .iter()
                .all(|m| block.iter().any(|l| l.contains(m)))
                && !block.iter().any(|l| l.contains("ivshmem"))
        });
        match known {
            Some(k) => {
                tolerated.push(format!("{} ({})", k.what, lines[i].trim()));
                i = end;
            }
            None => {
                splats.push(lines[i].to_string());
                i += 1;
            }
        }
    }
    (splats, tolerated)
}

/// Where a report that starts at `lines[i]` ends: after its stack trace.
fn report_end(lines: &[&str], i: usize) -> usize {
    (i..lines.len().min(i + 150))
        .find(|j| lines[*j].contains("</TASK>") || lines[*j].contains("end trace"))
        .map_or(lines.len().min(i + 150), |j| j + 1)
}

/// If the console has kernel reports and every one of them came before the
/// module was first loaded (its first `ivshmem:` message, e.g. the
/// out-of-tree taint notice) with no driver frame in it, the first one.
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
        if i >= loaded || lines[i..end].iter().any(|l| l.contains("ivshmem")) {
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
    pub fn collect(g: &Guest, ending: Ending, timeout: Duration) -> Self {
        let ktap_text = read_lossy(&g.ktap);
        let console = read_lossy(&g.console);
        let (splats, tolerated) = find_splats(&console);
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
            tolerated,
            console_tail,
            console_path: g.console.clone(),
            qemu_log: read_lossy(&g.qemu_log),
            ktap_text,
            timeout,
            reaped: false,
            killed: false,
            reached_user_space: console.contains(crate::qemu::INIT_LINE),
            fault_before_module: early,
        }
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
        if self.exit_code.is_some() && !self.ktap.is_complete() {
            p.push("the harness printed incomplete KTAP".into());
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
    /// Whether the scenario passed.
    pub ok: bool,
    /// Why not, in one line.
    pub reason: String,
    /// Lines to print (nested KTAP, diagnostics), without indentation.
    pub lines: Vec<String>,
    /// Leaf counts.
    pub totals: Totals,
}

impl Verdict {
    /// A scenario that could not run.
    pub fn error(why: String) -> Self {
        Self {
            ok: false,
            lines: vec![format!("# error: {why}")],
            reason: why,
            totals: Totals {
                fail: 1,
                ..Totals::default()
            },
        }
    }

    /// Fails the scenario for host-side problems (hooks, requests).
    pub fn fail_host(&mut self, errors: &[String], repro: &str) {
        for e in errors {
            self.lines.push(format!("# host: {e}"));
        }
        self.lines.push(format!("# --- reproduce: {repro}"));
        if self.ok {
            self.ok = false;
            self.totals.fail += 1;
            self.reason = errors.join("; ");
        } else {
            self.reason = format!("{}; {}", self.reason, errors.join("; "));
        }
    }

    /// The scenario's KTAP result line.
    pub fn result_line(&self, number: usize, name: &str) -> String {
        if self.ok {
            format!("ok {number} {name}")
        } else {
            format!(
                "not ok {number} {name} # {}",
                self.reason.replace('\n', " ")
            )
        }
    }
}

fn diag(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| format!("# {l}")).collect()
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
    let mut lines = vec!["KTAP version 1".to_string(), format!("1..{}", guests.len())];
    let mut totals = Totals::default();
    let mut failed = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        // The guest's own KTAP, nested one level further.
        lines.extend(
            g.ktap_text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("  {l}")),
        );
        for k in &g.tolerated {
            lines.push(format!("# tolerated known kernel report: {k}"));
        }
        if g.killed && g.splats.is_empty() {
            // Killed on purpose, mid-test (e.g. a peer that dies mid-stream).
            lines.push(format!(
                "ok {} {} # SKIP killed on request, as the scenario wants",
                i + 1,
                g.name
            ));
            totals.skip += 1;
            continue;
        }
        let mut t = g.ktap.leaf_totals();
        let mut problems = g.problems();
        if t.fail > 0 {
            problems.insert(0, format!("{} selftest(s) failed", t.fail));
        }
        if t.pass + t.fail + t.skip == 0 && problems.is_empty() {
            problems.push("no selftest ran".into());
        }
        if problems.is_empty() {
            lines.push(format!("ok {} {}", i + 1, g.name));
        } else {
            if t.fail == 0 {
                // The guest failed as a whole: count that once.
                t.fail += 1;
            }
            lines.extend(diag(&g.failure_report(&problems.join("; "), repro)));
            lines.push(format!("not ok {} {}", i + 1, g.name));
            failed.push(format!("{}: {}", g.name, problems[0]));
        }
        totals.merge(t);
    }
    Verdict {
        ok: failed.is_empty(),
        reason: failed.join("; "),
        lines,
        totals,
    }
}

/// The runner's own tests: the guest must fail (`want_failure`) or time out,
/// and the runner must report it with the console tail and a reproducer.
fn judge_meta(guests: &[GuestReport], repro: &str, want_failure: bool) -> Verdict {
    let mut lines = Vec::new();
    let mut wrong = Vec::new();
    for g in guests {
        let t = g.ktap.leaf_totals();
        lines.push(format!(
            "# guest '{}': ending {:?}, harness exit {:?}, KTAP {}",
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
        lines.push(format!(
            "# the runner's report ({} lines, console tail of {tail_len}):",
            rep.len()
        ));
        lines.extend(rep.iter().take(3).map(|l| format!("#   {l}")));
        lines.push(format!(
            "#   ... {}",
            rep.last().cloned().unwrap_or_default()
        ));
    }
    let ok = wrong.is_empty();
    lines.extend(wrong.iter().map(|w| format!("# wrong: {w}")));
    Verdict {
        ok,
        reason: wrong.join("; "),
        lines,
        totals: Totals {
            pass: usize::from(ok),
            fail: usize::from(!ok),
            skip: 0,
        },
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
            splats: find_splats(console).0,
            tolerated: find_splats(console).1,
            console_tail: lines,
            console_path: "/tmp/console.log".into(),
            qemu_log: String::new(),
            ktap_text: ktap_text.into(),
            timeout: Duration::from_secs(5),
            reaped: true,
            killed: false,
            reached_user_space: true,
            fault_before_module: fault_before_module(console),
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
        // After the module loaded: the driver's, whatever the frames say.
        let late = "[ 2.0] ivshmem: loading out-of-tree module taints kernel.\n\
                    [ 3.0] Oops: int3: 0000 [#1] SMP NOPTI\n[ 3.0] </TASK>\n";
        assert_eq!(fault_before_module(late), None);
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
            v.totals,
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
        assert_eq!(v.totals.fail, 1);
        assert!(v.lines.iter().any(|l| l.contains("console tail")));
        assert!(v.lines.iter().any(|l| l == "# boot"));
        assert!(v.lines.iter().any(|l| l.contains("reproduce: repro x")));
    }

    #[test]
    fn kernel_splat_fails_a_passing_guest() {
        let console = "boot\n[    1.0] WARNING: CPU: 0 PID: 1 at foo.c:1 bar\n";
        let v = judge_pass(&[guest(PASS, Ending::Exited(Some(0)), console)], "r");
        assert!(!v.ok);
        assert!(v.reason.contains("kernel complained"), "{}", v.reason);
    }

    #[test]
    fn known_foreign_reports_are_tolerated_only_without_driver_frames() {
        let report = |extra: &str| {
            format!(
                "[ 1.0] WARNING: possible circular locking dependency detected\n\
                 [ 1.0] irq/24-pciehp is trying to acquire lock: (&ctrl->reset_lock)\n\
                 [ 1.0] holding (pci_rescan_remove_lock)\n\
                 [ 1.0]  pciehp_unconfigure_device+0x144/0x1d0\n{extra}\
                 [ 1.0]  </TASK>\n[ 2.0] WARNING: CPU: 0 PID: 1 at x.c:1 y\n"
            )
        };
        let (splats, tolerated) = find_splats(&report(""));
        assert_eq!(tolerated.len(), 1);
        assert_eq!(
            splats.len(),
            1,
            "the later, unrelated WARN still counts: {splats:?}"
        );
        let (splats, tolerated) = find_splats(&report("[ 1.0]  ivshmem_fault+0x1/0x2 [ivshmem]\n"));
        assert!(tolerated.is_empty());
        assert_eq!(splats.len(), 2);
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
}
