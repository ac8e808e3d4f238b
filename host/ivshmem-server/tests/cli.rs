//! The server binary's command line, QEMU's quirks, daemon mode, the pid
//! file, signals and socket ownership.

mod common;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    SERVER, ServerProc, ShmName, TempDir, eventually, no_spawn_in_flight, output, run_server,
    signal, spawn, wait_timeout,
};
use ivshmem_proto::{Client, SharedMemory};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn help_lists_the_reference_flags() {
    let out = run_server(&["-h"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["-h", "-v", "-F", "-p", "-S", "-M", "-m", "-l", "-n"] {
        assert!(
            text.contains(&format!("{flag}, ")),
            "help lacks {flag}:\n{text}"
        );
    }
    assert!(text.contains("/tmp/ivshmem_socket"));
    assert!(text.contains("/var/run/ivshmem-server.pid"));
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    let dir = TempDir::new();
    let sock = dir.path().join("sock");
    let sock = sock.to_str().unwrap();
    let shm = ShmName::new();
    let cases: &[(&[&str], &str)] = &[
        (&["-F", "-n", "0"], "0 is not in 1..=256"),
        (&["-F", "-n", "257"], "257 is not in 1..=256"),
        (&["-F", "-n", "two"], "invalid value 'two'"),
        (&["-F", "-l", "3X"], "unknown unit \"X\""),
        (&["-F", "-l", ""], "empty size"),
        (&["-F", "-l", "16E"], "too large"),
        (&["-F", "-M", "a", "-m", "/tmp"], "cannot be used with"),
        (&["-F", "--max-peers", "0"], "0 is not in 1..=65536"),
        (&["-F", "--max-peers", "65537"], "65537 is not in 1..=65536"),
        (&["-F", "--max-queue", "0"], "0 is not in 1.."),
        (&["-F", "-x"], "unexpected argument '-x'"),
        (&["-F", "-S"], "a value is required"),
        (
            &["-F", "-S", sock, "-M", &shm.0, "-l", "0"],
            "size must not be 0",
        ),
        (
            &["-F", "-S", sock, "-M", "a/b"],
            "invalid POSIX shared memory name",
        ),
        (
            &["-F", "-S", sock, "-m", "/nonexistent/dir"],
            "cannot open directory /nonexistent/dir",
        ),
        (
            &["-F", "-S", "/nonexistent/dir/sock", "-M", &shm.0],
            "cannot bind socket /nonexistent/dir/sock",
        ),
    ];
    for (args, msg) in cases {
        let out = run_server(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: expected {msg:?} in:\n{err}");
    }
    assert!(!Path::new(sock).exists(), "a failed start left its socket");
}

#[test]
fn sizes_round_up_to_powers_of_two_and_take_suffixes() {
    for (arg, size, rounded) in [
        ("3M", 4u64 << 20, true),
        ("4M", 4 << 20, false),
        ("4194304", 4 << 20, false),
        ("1K", 1024, false),
        ("1000", 1024, true),
        ("1.5m", 2 << 20, true),
        ("0x100000", 1 << 20, false),
    ] {
        let mut s = ServerProc::start(&["-l", arg]);
        let c = s.connect(1);
        assert_eq!(c.shm_size(), size, "-l {arg}");
        let meta = std::fs::metadata(s.shm.as_ref().unwrap().path()).unwrap();
        assert_eq!(meta.len(), size, "-l {arg}: /dev/shm object size");
        assert_eq!(
            s.wait_log("size rounded up", Duration::from_millis(50)),
            rounded,
            "-l {arg}: rounding notice"
        );
    }
}

#[test]
fn default_size_and_vectors_are_qemus() {
    let s = ServerProc::start(&[]);
    let c = Client::connect(&s.sock).unwrap();
    assert_eq!(c.shm_size(), 4 << 20);
    assert_eq!(c.vectors().len(), 1);
}

#[test]
fn a_live_server_keeps_its_socket() {
    let s = ServerProc::start(&[]);
    let shm = ShmName::new();
    let out = run_server(&["-F", "-S", s.sock.to_str().unwrap(), "-M", &shm.0]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another server is already listening"), "{err}");
    // The first server still serves on it.
    let c = s.connect(1);
    assert_eq!(c.shm_size(), 4 << 20);
}

/// A 4 MiB server's memory, mapped by a client of it, with a marker at
/// 3 MiB that [`assert_marked`] checks.
fn marked_memory(s: &ServerProc) -> (Client, SharedMemory) {
    let c = s.connect(1);
    let mem = c.map_shared_memory().unwrap();
    mem.write(3 << 20, b"data at 3 MiB").unwrap();
    (c, mem)
}

/// The memory [`marked_memory`] marked still has its size and its marker.
/// The size is checked first: reading a shrunk object would SIGBUS.
fn assert_marked(name: &ShmName, mem: &SharedMemory) {
    let size = std::fs::metadata(name.path()).unwrap().len();
    assert_eq!(size, 4 << 20, "the live server's memory was resized");
    let mut buf = [0u8; 13];
    mem.read(3 << 20, &mut buf).unwrap();
    assert_eq!(&buf, b"data at 3 MiB");
}

#[test]
fn a_refused_second_server_leaves_the_live_memory_alone() {
    let s = ServerProc::start(&["-l", "4M"]);
    let name = s.shm.as_ref().unwrap();
    let (_c, mem) = marked_memory(&s);

    // A second server on the same socket and memory, with another size.
    let out = run_server(&[
        "-F",
        "-S",
        s.sock.to_str().unwrap(),
        "-M",
        &name.0,
        "-l",
        "1M",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another server is already listening"), "{err}");
    assert!(!err.contains("resizing"), "{err}");

    assert_marked(name, &mem);
    mem.write((4 << 20) - 4, b"end!").unwrap();
    // New peers still get the whole region.
    assert_eq!(s.connect(1).shm_size(), 4 << 20);
}

/// A second server on another socket, for the same POSIX memory.
fn second_server(
    name: &ShmName,
    size: &str,
) -> Result<ServerProc, (Vec<String>, Option<std::process::ExitStatus>)> {
    ServerProc::try_start(&["-M", &name.0, "-l", size])
}

#[test]
fn memory_in_use_is_not_resized_by_a_server_on_another_socket() {
    let a = ServerProc::start(&["-l", "4M"]);
    let name = a.shm.as_ref().unwrap();
    let (_c, mem) = marked_memory(&a);

    let (log, status) = second_server(name, "1M")
        .err()
        .expect("the second server started");
    let log = log.join("\n");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(
        log.contains("is in use") && log.contains("not resized"),
        "{log}"
    );
    assert_marked(name, &mem);

    // The same size is fine: both serve the same memory.
    let b = second_server(name, "4M").unwrap_or_else(|(log, _)| panic!("{}", log.join("\n")));
    let other = b.connect(1).map_shared_memory().unwrap();
    assert_marked(name, &other);
}

#[test]
fn memory_a_guest_still_maps_is_not_resized_after_its_server_died() {
    let mut a = ServerProc::start(&["-l", "4M"]);
    let name = a.shm.take().unwrap();
    // A client (QEMU) keeps the memory's descriptor, which it got from the
    // server, after the server is gone.
    let c = a.connect(1);
    let mem = c.map_shared_memory().unwrap();
    a.terminate();

    let (log, _) = second_server(&name, "1M")
        .err()
        .expect("the memory was resized under its user");
    assert!(log.join("\n").contains("is in use"), "{}", log.join("\n"));
    assert_eq!(std::fs::metadata(name.path()).unwrap().len(), 4 << 20);

    // Once its last user is gone, it may be resized. (Closed while no
    // other test starts a process, which would hold a copy until exec.)
    no_spawn_in_flight(|| {
        drop(mem);
        drop(c);
    });
    let b = second_server(&name, "1M").unwrap_or_else(|(log, _)| panic!("{}", log.join("\n")));
    assert_eq!(b.connect(1).shm_size(), 1 << 20);
    assert_eq!(std::fs::metadata(name.path()).unwrap().len(), 1 << 20);
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = TempDir::new();
    let sock = dir.path().join("sock");
    // A socket file nobody listens on, as a killed server leaves behind.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(UnixStream::connect(&sock).is_err());
    let mut s = ServerProc::start_at(dir, sock, &[])
        .unwrap_or_else(|(log, st)| panic!("did not start ({st:?}):\n{}", log.join("\n")));
    assert!(s.wait_log("removing stale socket", LONG));
    let c = s.connect(1);
    assert_eq!(c.id(), 0);
}

#[test]
fn a_socket_left_by_a_killed_server_is_replaced() {
    let mut first = ServerProc::start(&[]);
    let sock = first.sock.clone();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(sock.exists());
    let dir = TempDir::new();
    let mut s = ServerProc::start_at(dir, sock.clone(), &[])
        .unwrap_or_else(|(log, st)| panic!("did not start ({st:?}):\n{}", log.join("\n")));
    assert!(s.wait_log("removing stale socket", LONG));
    assert_eq!(s.connect(1).id(), 0);
}

/// D9: servers started at once on one path, over a stale socket. Each
/// probes, removes and binds; unless that is one step for one of them at a
/// time, two can both remove and bind, and the first is left serving on a
/// socket file that is no longer there. Exactly one must win; the others
/// exit 1 saying another server listens there.
#[test]
fn servers_started_at_once_on_one_path_let_exactly_one_win() {
    const SERVERS: usize = 6;
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let dir = TempDir::new();
        let sock = dir.path().join("sock");
        drop(UnixListener::bind(&sock).unwrap());
        let shm = ShmName::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut children = Vec::new();
        for i in 0..SERVERS {
            let mut child = spawn(
                Command::new(SERVER)
                    .args(["-F", "-S", sock.to_str().unwrap(), "-M", &shm.0])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            );
            let stderr = child.stderr.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send((i, Some(line)));
                }
                let _ = tx.send((i, None));
            });
            children.push(ChildGuard(child));
        }
        drop(tx);
        // Each either serves (says so) or exits (end of its stderr).
        let mut listening = Vec::new();
        let mut refused = Vec::new();
        let mut logs = vec![Vec::new(); SERVERS];
        while listening.len() + refused.len() < SERVERS {
            let (i, line) = rx
                .recv_timeout(LONG)
                .unwrap_or_else(|_| panic!("round {round}: servers undecided; logs: {logs:#?}"));
            match line {
                Some(l) => {
                    if l.starts_with("ivshmem-server: listening on") {
                        listening.push(i);
                    }
                    logs[i].push(l);
                }
                None if !listening.contains(&i) => refused.push(i),
                None => {}
            }
        }
        assert_eq!(listening.len(), 1, "round {round}: logs: {logs:#?}");
        for &i in &refused {
            let st = wait_timeout(&mut children[i].0, LONG).expect("a refused server exits");
            assert_eq!(st.code(), Some(1), "round {round}: {:?}", logs[i]);
            assert!(
                logs[i]
                    .iter()
                    .any(|l| l.contains("another server is already listening")),
                "round {round}: {:?}",
                logs[i]
            );
        }
        // The winner serves on the socket file that is there.
        // (The losers' probes took the first ids.)
        let c = Client::connect(&sock)
            .unwrap_or_else(|e| panic!("round {round}: {e:?}; logs: {logs:#?}"));
        assert_eq!(c.vectors().len(), 1);
        assert!(children[listening[0]].0.try_wait().unwrap().is_none());
    }
}

/// The step behind `servers_started_at_once_on_one_path_let_exactly_one_win`,
/// without timing: while another server holds `SOCKET.lock` (it is between
/// its probe and its bind, or serving), a server leaves even a stale
/// socket alone and exits 1.
#[test]
fn a_server_holding_the_path_lock_keeps_even_a_stale_socket() {
    let dir = TempDir::new();
    let sock = dir.path().join("sock");
    drop(UnixListener::bind(&sock).unwrap());
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&sock).unwrap());
    let lock = std::fs::File::create(ivshmem_server::socket::lock_path(&sock)).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let shm = ShmName::new();
    let out = run_server(&["-F", "-S", sock.to_str().unwrap(), "-M", &shm.0]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another server is already listening"), "{err}");
    assert!(!err.contains("removing stale socket"), "{err}");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&sock).unwrap()),
        ino,
        "the socket was replaced"
    );
    // Once it is let go, the next server takes over, and removes both
    // files at exit.
    drop(lock);
    let mut s = ServerProc::start_at(dir, sock.clone(), &[])
        .unwrap_or_else(|(log, st)| panic!("did not start ({st:?}):\n{}", log.join("\n")));
    assert!(s.wait_log("removing stale socket", LONG));
    assert!(s.terminate().success());
    assert_eq!(std::fs::read_dir(s.dir.path()).unwrap().count(), 0);
}

/// Kills a child on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_non_socket_file_is_not_replaced() {
    let dir = TempDir::new();
    let path = dir.path().join("sock");
    std::fs::write(&path, b"precious").unwrap();
    let shm = ShmName::new();
    let out = run_server(&["-F", "-S", path.to_str().unwrap(), "-M", &shm.0]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("exists and is not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn foreground_sigint_and_sigterm_remove_socket_and_pidfile() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = TempDir::new();
        let pidfile = dir.path().join("pid");
        let sock = dir.path().join("sock");
        let pid_arg = pidfile.to_str().unwrap().to_owned();
        let mut s = ServerProc::start_at(dir, sock.clone(), &["-p", &pid_arg])
            .unwrap_or_else(|(log, st)| panic!("did not start ({st:?}):\n{}", log.join("\n")));
        let content = std::fs::read_to_string(&pidfile).unwrap();
        assert_eq!(content, format!("{}\n", s.pid()));
        let _c = s.connect(1);
        signal(s.pid(), sig);
        let st = wait_timeout(&mut s.child, LONG).expect("server exits on the signal");
        assert!(st.success(), "signal {sig}: {st:?}");
        assert!(!sock.exists(), "socket left behind after signal {sig}");
        assert!(!pidfile.exists(), "pid file left behind after signal {sig}");
    }
}

/// The signals a process catches (`SigCgt` in /proc/PID/status).
fn caught_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no SigCgt in /proc/{pid}/status"))
}

/// D9: SIGTERM and SIGINT are caught before the socket exists, so that a
/// signal while the server starts (here: stuck opening a pid file that is
/// a FIFO, after binding) still removes the socket.
#[test]
fn a_sigterm_during_startup_removes_the_socket() {
    let dir = TempDir::new();
    let sock = dir.path().join("sock");
    let fifo = dir.path().join("pid");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let shm = ShmName::new();
    let mut child = spawn(
        Command::new(SERVER)
            .args(["-F", "-S", sock.to_str().unwrap(), "-M", &shm.0])
            .arg("-p")
            .arg(&fifo)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let pid = child.id();
    let _guard = DaemonGuard(Some(pid));
    // Opening the FIFO for writing blocks until someone opens it for
    // reading: the server stays where it is, socket bound, until then.
    assert!(
        eventually(LONG, || sock.exists()),
        "the server never bound its socket"
    );
    let caught = caught_signals(pid);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        assert_ne!(
            caught & 1 << (sig - 1),
            0,
            "signal {sig} is not caught once the socket exists (SigCgt {caught:x})"
        );
    }
    signal(pid, libc::SIGTERM);
    // Let the server on: opening the FIFO's other end lets it write its
    // pid. It serves, sees the signal, reads the pid file back (without
    // blocking: the pid is still in the pipe, as this end reads nothing)
    // and removes it as its own.
    let reader = std::fs::File::open(&fifo).unwrap();
    let st = wait_timeout(&mut child, LONG).expect("server exits on the signal");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(st.success(), "{st:?}: {err}");
    assert!(!sock.exists(), "socket left behind: {err}");
    assert!(err.contains("signal received, shutting down"), "{err}");
    assert!(!fifo.exists(), "pid file left behind: {err}");
    drop(reader);
}

#[test]
fn foreground_without_p_writes_no_pidfile() {
    let mut s = ServerProc::start(&[]);
    // The socket and its lock file.
    assert_eq!(std::fs::read_dir(s.dir.path()).unwrap().count(), 2);
    assert!(s.terminate().success());
    assert_eq!(std::fs::read_dir(s.dir.path()).unwrap().count(), 0);
}

/// Kills a daemon by pid on drop, in case the test fails half way.
struct DaemonGuard(Option<u32>);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: The kill(2) system call takes only integers and touches
            // no memory of this process; `pid` is the daemon this test started,
            // read from its pid file.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

fn process_gone(pid: u32) -> bool {
    // Gone, or a zombie waiting for a reaper that may not exist here.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[test]
fn daemon_mode_writes_pidfile_and_cleans_up_on_sigterm() {
    let dir = TempDir::new();
    let sock = dir.path().join("sock");
    let pidfile = dir.path().join("server.pid");
    let logfile = dir.path().join("server.log");
    let shm = ShmName::new();
    let mut guard = DaemonGuard(None);
    let out = output(
        Command::new(SERVER)
            .args(["-S", sock.to_str().unwrap(), "-M", &shm.0, "-n", "2"])
            .arg("-p")
            .arg(&pidfile)
            .arg("--log-file")
            .arg(&logfile)
            .stdin(Stdio::null()),
    );
    assert!(
        out.status.success(),
        "daemon start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ready as soon as the starting command returns.
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("pid file written before the starting process exits")
        .trim()
        .parse()
        .unwrap();
    guard.0 = Some(pid);
    assert!(!process_gone(pid));
    assert!(sock.exists());
    // Detached: its own session.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let (sid, pgrp) = (fields[3], fields[2]);
    assert_ne!(
        sid,
        pid.to_string(),
        "the daemon must not be a session leader"
    );
    assert_eq!(pgrp, sid);
    // stdio detached from our pipes.
    let fd1 = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
    assert_eq!(fd1, Path::new("/dev/null"));

    let c = Client::connect(&sock).unwrap();
    assert_eq!(c.vectors().len(), 2);
    drop(c);

    signal(pid, libc::SIGTERM);
    assert!(
        eventually(LONG, || process_gone(pid)),
        "daemon ignored SIGTERM"
    );
    guard.0 = None;
    assert!(
        eventually(LONG, || !pidfile.exists()),
        "pid file left behind"
    );
    assert!(!sock.exists(), "socket left behind");
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(log.contains("listening on"), "log file:\n{log}");
    assert!(log.contains("peer 0 connected"), "log file:\n{log}");
    assert!(log.contains("shutting down"), "log file:\n{log}");
}

#[test]
fn daemon_startup_errors_reach_the_terminal() {
    let dir = TempDir::new();
    let sock = dir.path().join("sock");
    let shm = ShmName::new();
    // The pid file cannot be written: the daemon reports it and exits.
    let out = output(
        Command::new(SERVER)
            .args(["-S", sock.to_str().unwrap(), "-M", &shm.0])
            .args(["-p", "/nonexistent/dir/pid", "--log-file"])
            .arg(dir.path().join("log"))
            .stdin(Stdio::null()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write pid file /nonexistent/dir/pid"),
        "{err}"
    );
    assert!(
        eventually(LONG, || !sock.exists()),
        "failed daemon left its socket"
    );
}
