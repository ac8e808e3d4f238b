//! The client binary against an in-process server.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ivshmem_proto::{Client, ConnectOptions, Event};
use ivshmem_server::{Config, ShmBacking};
use rustix::process::{Pid, Signal, kill_process};

const CLIENT: &str = env!("CARGO_BIN_EXE_ivshmem-client");
const LONG: Duration = Duration::from_secs(10);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A server running in a thread of the test, on a private socket and shm.
struct Server {
    dir: PathBuf,
    sock: PathBuf,
    shm: String,
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    fn start(vectors: u32) -> Self {
        let name = format!(
            "ivshmem-client-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("sock");
        let mut config = Config::new(&sock);
        config.backing = ShmBacking::Posix(name.clone());
        config.vectors = vectors;
        let (stop_r, stop_w) = rustix::pipe::pipe().unwrap();
        let (ready_tx, ready_rx) = channel();
        let thread = std::thread::spawn(move || {
            let (mut server, bound, _shm) = config.start()?;
            ready_tx.send(()).unwrap();
            let r = server.run(stop_r.as_fd());
            bound.remove();
            r
        });
        if ready_rx.recv_timeout(LONG).is_err() {
            panic!("server failed: {:?}", thread.join());
        }
        Self {
            dir,
            sock,
            shm: name,
            stop: Some(stop_w),
            thread: Some(thread),
        }
    }

    fn connect(&self, vectors: usize) -> Client {
        Client::connect_with(
            &self.sock,
            &ConnectOptions {
                vectors: Some(vectors),
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(CLIENT);
        c.arg("-S").arg(&self.sock);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let child = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = Pid::from_child(&child);
        // Collects its output as it comes (it may be larger than a pipe).
        let (tx, rx) = channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        match rx.recv_timeout(LONG) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = kill_process(pid, Signal::KILL);
                panic!("ivshmem-client {args:?} did not exit");
            }
        }
    }

    /// The client with `args` (none: the interactive shell), its stdin
    /// and its stdout piped: the child, its stdin and its stdout's lines.
    fn shell(&self, args: &[&str]) -> (Child, ChildStdin, Lines) {
        let mut shell = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = shell.stdin.take().unwrap();
        let lines = Lines::new(shell.stdout.take().unwrap());
        (shell, stdin, lines)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ivshmem-client {args:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(w) = self.stop.take() {
            let _ = rustix::io::write(&w, b"x");
        }
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.unwrap().unwrap();
            }
        }
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.shm));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends the shell one command line and returns the next line it prints.
fn ask(stdin: &mut impl Write, lines: &Lines, command: &str) -> String {
    writeln!(stdin, "{command}").unwrap();
    lines.next()
}

/// Lines of a child's stdout, readable with a timeout.
struct Lines(Receiver<String>);

impl Lines {
    fn new(out: ChildStdout) -> Self {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }

    fn next(&self) -> String {
        self.0
            .recv_timeout(LONG)
            .expect("no output line within the timeout")
    }

    /// Skips lines until one contains `needle`; returns it.
    fn until(&self, needle: &str) -> String {
        loop {
            let l = self.next();
            if l.contains(needle) {
                return l;
            }
        }
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("client did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn join(c: &mut Client) -> u16 {
    match c.next_event_timeout(Some(LONG)).unwrap() {
        Some(Event::PeerVector { peer, vector: 0 }) => peer,
        other => panic!("expected a join, got {other:?}"),
    }
}

#[test]
fn info_and_peers_text_and_json() {
    let s = Server::start(2);
    let _a = s.connect(2);
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["info", "--json"])).unwrap();
    assert_eq!(json["id"], 1);
    assert_eq!(json["shm_size"], 4 << 20);
    assert_eq!(json["vectors"], 2);
    assert_eq!(
        json["peers"],
        serde_json::json!([{ "id": 0, "vectors": 2 }])
    );

    let text = s.ok(&["info"]);
    assert_eq!(
        text,
        "id: 2\nshm_size: 4194304\nvectors: 2\npeers: 0 (2 vectors)\n"
    );
    assert_eq!(s.ok(&["peers"]), "0 2\n");
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["peers", "--json"])).unwrap();
    assert_eq!(json, serde_json::json!([{ "id": 0, "vectors": 2 }]));

    let dump = s.ok(&["dump"]);
    assert!(
        dump.starts_with("our_id = 5\n  vector 0 is enabled (fd="),
        "{dump}"
    );
    assert!(
        dump.contains("peer_id = 0\n  vector 0 is enabled"),
        "{dump}"
    );
}

#[test]
fn alone_the_vector_count_is_found_without_help() {
    let s = Server::start(3);
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["info", "--json"])).unwrap();
    assert_eq!(json["vectors"], 3);
    assert_eq!(json["peers"], serde_json::json!([]));
}

#[test]
fn ring_reaches_a_waiting_client() {
    let s = Server::start(2);
    let mut waiter = s
        .cmd()
        .args(["wait", "--count", "3", "--timeout", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(waiter.stdout.take().unwrap());
    let id = lines.next();
    let id = id.strip_prefix("id ").expect("first line is the id");
    s.ok(&["ring", id, "1"]);
    s.ok(&["ring", id, "all"]);
    let mut total = 0;
    let mut per_vector = [0u64; 2];
    while total < 3 {
        let l = lines.next();
        let rest = l.strip_prefix("notify vector=").expect(&l);
        let (v, c) = rest.split_once(" count=").unwrap();
        let (v, c): (usize, u64) = (v.parse().unwrap(), c.parse().unwrap());
        per_vector[v] += c;
        total += c;
    }
    assert_eq!(per_vector, [1, 2]);
    assert!(wait_exit(&mut waiter).success());
}

#[test]
fn wait_filters_a_vector_and_times_out() {
    let s = Server::start(2);
    let mut a = s.connect(2);
    let mut waiter = s
        .cmd()
        .args(["wait", "--count", "1", "--vector", "1", "--timeout", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(waiter.stdout.take().unwrap());
    let id: u16 = lines.next()["id ".len()..].parse().unwrap();
    assert_eq!(join(&mut a), id);
    let _ = a.next_event_timeout(Some(LONG)).unwrap(); // its vector 1
    a.ring(id, 0).unwrap(); // not counted
    a.ring(id, 1).unwrap();
    assert_eq!(lines.next(), "notify vector=1 count=1");
    assert!(wait_exit(&mut waiter).success());

    let out = s.run(&["wait", "--count", "1", "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timeout: 0 notification(s) received of 1")
    );

    let out = s.run(&["wait", "--vector", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no vector 5"));
}

#[test]
fn ring_all_and_errors() {
    let s = Server::start(2);
    let a = s.connect(2);
    let b = s.connect(2);
    s.ok(&["ring-all"]);
    for c in [&a, &b] {
        for v in 0..2 {
            assert_eq!(c.take_notifications(v).unwrap(), Some(1));
        }
    }
    let out = s.run(&["ring", "999", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no peer 999"));
    let out = s.run(&["ring", "0", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("peer 0 has no vector 7 (it has 2)"));
    assert_eq!(a.take_notifications(0).unwrap(), None);
}

#[test]
fn write_then_read_shared_memory() {
    let s = Server::start(1);
    let a = s.connect(1);
    s.ok(&["write", "0x1000", "hello world"]);
    assert_eq!(s.ok(&["read", "4096", "11"]), "hello world");
    let hex = s.ok(&["read", "4096", "5", "--hex"]);
    assert_eq!(
        hex,
        "0000000000001000  68 65 6c 6c 6f                                   |hello|\n"
    );
    // Other peers see it.
    let mut buf = [0u8; 5];
    a.map_shared_memory().unwrap().read(4096, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    // At the very end, and just past it.
    s.ok(&["write", "4194303", "Z"]);
    let out = s.run(&["read", "4194303", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the 4194304-byte shared memory")
    );
}

#[test]
fn cannot_connect_is_an_error_naming_the_os_error_once() {
    let out = Command::new(CLIENT)
        .args(["-S", "/nonexistent/sock", "info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "ivshmem-client: error: cannot connect to /nonexistent/sock: connecting to the server: \
         No such file or directory (os error 2)"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// Checks that a run failed with a message, not a panic or a signal.
fn assert_clear_error(out: &Output, code: i32, msg: &str, args: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {:?}\n{err}",
        out.status
    );
    assert!(err.contains(msg), "{args:?}: expected {msg:?} in:\n{err}");
    assert!(!err.contains("panicked"), "{args:?}:\n{err}");
}

#[test]
fn bad_timeouts_are_usage_errors_not_panics() {
    let s = Server::start(1);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--connect-timeout", "-1", "info"],
            "-1 seconds is negative",
        ),
        (&["--connect-timeout=-1", "info"], "-1 seconds is negative"),
        (
            &["--connect-timeout", "nan", "info"],
            "\"nan\" is not a number of seconds",
        ),
        (
            &["--connect-timeout", "inf", "info"],
            "inf seconds is too long (at most 1000000000)",
        ),
        (
            &["--connect-timeout", "1e30", "info"],
            "1e30 seconds is too long",
        ),
        (&["--connect-timeout", "0", "info"], "must be more than 0"),
        (
            &["--connect-timeout", "soon", "info"],
            "\"soon\" is not a number of seconds",
        ),
        (
            &["wait", "--timeout", "1e20"],
            "1e20 seconds is too long (at most 1000000000)",
        ),
        (&["wait", "--timeout", "-1"], "-1 seconds is negative"),
        (
            &["wait", "--timeout", "NaN"],
            "\"NaN\" is not a number of seconds",
        ),
    ];
    for (args, msg) in cases {
        assert_clear_error(&s.run(args), 2, msg, args);
    }
    // Fractions and the largest value are fine.
    s.ok(&["--connect-timeout", "0.5", "info"]);
    let out = s.run(&["wait", "--count", "1", "--timeout", "0"]);
    assert_eq!(out.status.code(), Some(3));
    let out = s.run(&["--connect-timeout", "1e9", "peers"]);
    assert!(out.status.success());
}

#[test]
fn read_checks_bounds_before_allocating() {
    let s = Server::start(1);
    for args in [
        &["read", "0", "100G"][..],
        &["read", "0", "0xffffffffffffffff"],
        &["read", "4M", "1"],
        &["read", "1", "4M"],
        &["read", "0xfffffffffffffff0", "32", "--hex"],
    ] {
        assert_clear_error(
            &s.run(args),
            1,
            "outside the 4194304-byte shared memory",
            args,
        );
    }
    // The whole region, in chunks: every byte, in order.
    s.ok(&["write", "0", "first"]);
    s.ok(&["write", "4194299", "last!"]);
    let all = s.run(&["read", "0", "4M"]);
    assert!(all.status.success());
    assert_eq!(all.stdout.len(), 4 << 20);
    assert_eq!(&all.stdout[..5], b"first");
    assert_eq!(&all.stdout[(4 << 20) - 5..], b"last!");
    // A hex dump across chunks keeps its offsets.
    let hex = s.ok(&["read", "0x10000", "0x20020", "--hex"]);
    let lines: Vec<&str> = hex.lines().collect();
    assert_eq!(lines.len(), 0x20020 / 16);
    assert!(
        lines[0].starts_with("0000000000010000  00 00"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0x1000].starts_with("0000000000020000  "),
        "{}",
        lines[0x1000]
    );
    assert!(lines.last().unwrap().starts_with("0000000000030010  "));
    // Nothing at the very end is fine.
    assert_eq!(s.ok(&["read", "4M", "0"]), "");
}

#[test]
fn shell_runs_reference_commands_and_prints_notifications() {
    let s = Server::start(2);
    let mut a = s.connect(2);
    let (mut shell, mut stdin, lines) = s.shell(&[]);
    let hello = lines.next();
    assert!(hello.contains("as peer 1"), "{hello}");
    assert_eq!(join(&mut a), 1);

    assert_eq!(ask(&mut stdin, &lines, "dump"), "our_id = 1");
    lines.until("peer_id = 0");

    // int PEER VECTOR, then int PEER all, then int all; two per line.
    writeln!(stdin, "int 0 1").unwrap();
    writeln!(stdin, "int 0 all; info").unwrap();
    lines.until("id 1 shm_size 4194304 vectors 2 peers 1");
    assert_eq!(a.take_notifications(0).unwrap(), Some(1));
    assert_eq!(a.take_notifications(1).unwrap(), Some(2));
    assert_eq!(ask(&mut stdin, &lines, "int all"), "notified 2 vector(s)");
    assert_eq!(a.take_notifications(0).unwrap(), Some(1));

    // Notifications to the shell are printed as they come.
    let _ = a.next_event_timeout(Some(LONG)).unwrap(); // shell's vector 1
    a.ring(1, 1).unwrap();
    assert_eq!(lines.next(), "receive notification on vector 1 (count 1)");

    // Peers joining and leaving are reported.
    let c = s.connect(2);
    assert_eq!(lines.next(), format!("new peer {}", c.id()));
    assert_eq!(lines.next(), format!("peer {}: vector 1", c.id()));
    drop(c);
    assert_eq!(lines.next(), "peer 2 left");

    assert_eq!(
        ask(&mut stdin, &lines, "write 10 two words"),
        "wrote 9 byte(s) at 10"
    );
    assert_eq!(ask(&mut stdin, &lines, "read 10 10"), "two words\\x00");
    assert_eq!(
        ask(&mut stdin, &lines, "read 0 100G"),
        "error: access of 107374182400 bytes at offset 0 is outside the 4194304-byte shared memory"
    );
    assert_eq!(ask(&mut stdin, &lines, "int 9 0"), "error: no peer 9");
    assert_eq!(
        ask(&mut stdin, &lines, "bogus"),
        "invalid command, type help"
    );
    assert_eq!(
        ask(&mut stdin, &lines, "help"),
        "dump: dump peers (including us)"
    );
    writeln!(stdin, "quit").unwrap();
    assert!(wait_exit(&mut shell).success());
    drop(stdin);
    // After peer 2's join and leave, the shell's own leave.
    let events: Vec<Event> = (0..4)
        .map(|_| a.next_event_timeout(Some(LONG)).unwrap().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            Event::PeerVector { peer: 2, vector: 0 },
            Event::PeerVector { peer: 2, vector: 1 },
            Event::PeerLeft {
                peer: 2,
                vectors: 2
            },
            Event::PeerLeft {
                peer: 1,
                vectors: 2
            },
        ]
    );
}

#[test]
fn shell_exits_at_end_of_input_and_when_the_server_goes() {
    let s = Server::start(1);
    let (mut shell, mut stdin, lines) = s.shell(&["shell"]);
    lines.until("as peer 0");
    write!(stdin, "info").unwrap(); // no newline: still run at EOF
    drop(stdin);
    lines.until("id 0 shm_size");
    assert!(wait_exit(&mut shell).success());

    let (mut shell, _stdin, lines) = s.shell(&[]);
    lines.until("as peer 1");
    drop(s);
    lines.until("disconnected from server");
    assert_eq!(wait_exit(&mut shell).code(), Some(1));
}
