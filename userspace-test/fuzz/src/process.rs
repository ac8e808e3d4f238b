//! The fuzzer's processes: forking them, running each one's threads,
//! and gathering their reports through pipes.

use crate::config::Config;
use crate::report::Report;
use crate::rng::thread_seed;
use crate::signals::{SIGBUS, install_handlers};
use crate::worker::Worker;
use std::sync::atomic::{AtomicI32, Ordering};

/// Runs the threads of process `p`; returns their report.
fn run_process(cfg: &Config, p: usize, calls: u64) -> Report {
    install_handlers();
    let tids: Vec<AtomicI32> = (0..cfg.threads).map(|_| AtomicI32::new(0)).collect();
    let mut total = Report::default();
    let reports: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let tids = &tids;
                let share =
                    calls / cfg.threads as u64 + u64::from((t as u64) < calls % cfg.threads as u64);
                s.spawn(move || {
                    // SAFETY: The gettid call has no preconditions and cannot
                    // fail.
                    tids[t].store(unsafe { libc::gettid() }, Ordering::Relaxed);
                    let mut w = Worker::new(cfg, thread_seed(cfg.seed, p, t), tids);
                    w.run(share);
                    tids[t].store(0, Ordering::Relaxed);
                    w.report
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for r in &reports {
        total.merge(r);
    }
    total.sigbus = SIGBUS.load(Ordering::Relaxed);
    total
}

/// A fuzzing run in progress: its processes, each with the pipe its
/// report comes through.
#[derive(Debug)]
pub struct Running {
    seed: u64,
    kids: Vec<(usize, libc::pid_t, std::fs::File)>,
}

/// Starts the fuzzer: `cfg.procs` processes forked from the caller, each
/// with `cfg.threads` threads, sharing out `cfg.calls`. The caller should
/// be single-threaded when it calls this (a test harness, or `main`).
pub fn spawn(cfg: &Config) -> std::io::Result<Running> {
    if cfg.procs == 0 || cfg.threads == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "procs and threads must be at least 1",
        ));
    }
    let mut running = Running {
        seed: cfg.seed,
        kids: Vec::new(),
    };
    for p in 0..cfg.procs {
        let calls =
            cfg.calls / cfg.procs as u64 + u64::from((p as u64) < cfg.calls % cfg.procs as u64);
        let mut fds = [0; 2];
        // SAFETY: The `fds` is a local array of the two ints pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::other(format!(
                "pipe: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: The child runs the fuzzer in threads of its own and `_exit`s,
        // never returning into the caller; it prints nothing (no stdout lock),
        // and glibc's fork leaves malloc usable in the child even when the
        // caller has other threads.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::other(format!(
                "fork: {}",
                std::io::Error::last_os_error()
            )));
        }
        if pid == 0 {
            // SAFETY: The `fds[0]` is the pipe's read end, just made and owned
            // by no Rust object, so closing the child's copy affects nothing
            // else.
            unsafe { libc::close(fds[0]) };
            let text = run_process(cfg, p, calls).to_text();
            let mut off = 0;
            while off < text.len() {
                // SAFETY: The bytes written are `text[off..]`, a live String's
                // remaining bytes, and the length passed is theirs; `fds[1]` is
                // the child's open write end.
                let n =
                    unsafe { libc::write(fds[1], text[off..].as_ptr().cast(), text.len() - off) };
                if n <= 0 {
                    break;
                }
                off += n as usize;
            }
            // SAFETY: The `_exit` call has no preconditions; in the child it
            // ends the process at once, without running the parent's
            // destructors.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: The `fds[1]` is the write end, owned by no Rust object and
        // needed only by the child; `fds[0]` is the read end, open and owned by
        // nothing else, so the `File` becomes its only owner.
        let f = unsafe {
            libc::close(fds[1]);
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0])
        };
        running.kids.push((p, pid, f));
    }
    Ok(running)
}

impl Running {
    /// Waits for every process; fails if one died (of a signal, or
    /// without its report).
    pub fn wait(mut self) -> std::io::Result<Report> {
        let mut total = Report::default();
        let mut failures = Vec::new();
        for (p, pid, mut f) in std::mem::take(&mut self.kids) {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut f, &mut text);
            let mut status = 0;
            // SAFETY: The `pid` is a child forked above and not reaped yet;
            // `status` is a local int the call writes.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) {
                failures.push(format!(
                    "process {p} (seed {:#x}) died of signal {}",
                    self.seed,
                    libc::WTERMSIG(status)
                ));
            } else if let Some(r) = Report::from_text(&text) {
                if r.fork_deaths > 0 {
                    failures.push(format!(
                        "process {p} (seed {:#x}): {} of its {} forked children died of a signal",
                        self.seed, r.fork_deaths, r.forks
                    ));
                }
                total.merge(&r);
            } else {
                failures.push(format!("process {p} sent no report"));
            }
        }
        if failures.is_empty() {
            Ok(total)
        } else {
            Err(std::io::Error::other(failures.join("; ")))
        }
    }
}

/// Runs the fuzzer to the end: [`spawn`], then [`Running::wait`].
pub fn run(cfg: &Config) -> std::io::Result<Report> {
    spawn(cfg)?.wait()
}

impl Drop for Running {
    /// A run dropped without [`Running::wait`] (its caller failed early)
    /// kills and reaps its processes, so that none outlives it holding the
    /// devices open.
    fn drop(&mut self) {
        for (_, pid, _) in self.kids.drain(..) {
            let mut status = 0;
            // SAFETY: The `pid` is a child forked by `spawn` and not reaped
            // yet (`wait` takes the children it reaps out of `kids`); kill
            // takes no pointers and `status` is a local int waitpid writes.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
        }
    }
}
