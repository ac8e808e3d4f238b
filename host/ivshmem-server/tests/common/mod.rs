//! Running the real server binary in tests, and cleaning up after it even
//! when a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ivshmem_proto::{Client, ConnectOptions, PeerId};

pub const SERVER: &str = env!("CARGO_BIN_EXE_ivshmem-server");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Held while a process starts. From clone to exec, a child holds a copy of
/// every descriptor of this multi-threaded test binary, other tests' too;
/// a test that needs its descriptors gone (a lock on shared memory released,
/// a FIFO's end closed) closes them under [`no_spawn_in_flight`].
static SPAWN: Mutex<()> = Mutex::new(());

/// Starts `cmd`. When this returns, the child has exec'd and holds only the
/// descriptors meant for it.
pub fn spawn(cmd: &mut Command) -> Child {
    let _g = SPAWN.lock().unwrap_or_else(PoisonError::into_inner);
    cmd.spawn().expect("cannot spawn")
}

/// Runs `cmd` to completion and collects its output, as
/// [`Command::output`] does, started through [`spawn`].
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    spawn(cmd).wait_with_output().expect("cannot wait")
}

/// Runs `f` while no process is being started, so that descriptors closed in
/// `f` are closed everywhere.
pub fn no_spawn_in_flight<R>(f: impl FnOnce() -> R) -> R {
    let _g = SPAWN.lock().unwrap_or_else(PoisonError::into_inner);
    f()
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory, removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(unique("ivshmem-test"));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A POSIX shared memory name, unlinked on drop.
#[derive(Debug)]
pub struct ShmName(pub String);

impl ShmName {
    pub fn new() -> Self {
        Self(unique("ivshmem-test"))
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/dev/shm").join(&self.0)
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// A foreground server on a socket in its own temporary directory.
pub struct ServerProc {
    pub child: Child,
    pub sock: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
    pub shm: Option<ShmName>,
    pub dir: TempDir,
}

impl ServerProc {
    /// Starts `ivshmem-server -F -S DIR/sock` with a fresh `-M` name unless
    /// `args` chooses `-m`/`-M`, and waits until it listens.
    pub fn start(args: &[&str]) -> Self {
        Self::try_start(args).unwrap_or_else(|(log, status)| {
            panic!(
                "server did not start ({status:?}); its log:\n{}",
                log.join("\n")
            )
        })
    }

    /// Like `start`, but returns the log and exit status if it does not
    /// come up.
    pub fn try_start(args: &[&str]) -> Result<Self, (Vec<String>, Option<ExitStatus>)> {
        let dir = TempDir::new();
        let sock = dir.path().join("sock");
        Self::start_at(dir, sock, args)
    }

    pub fn start_at(
        dir: TempDir,
        sock: PathBuf,
        args: &[&str],
    ) -> Result<Self, (Vec<String>, Option<ExitStatus>)> {
        Self::start_with(dir, sock, args, |_| {})
    }

    /// Like `start_at`, with `adjust` applied to the command before it is
    /// spawned (limits, credentials).
    pub fn start_with(
        dir: TempDir,
        sock: PathBuf,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Result<Self, (Vec<String>, Option<ExitStatus>)> {
        let mut cmd = Command::new(SERVER);
        cmd.arg("-F").arg("-S").arg(&sock);
        let shm = if args.iter().any(|a| *a == "-m" || *a == "-M") {
            None
        } else {
            let name = ShmName::new();
            cmd.arg("-M").arg(&name.0);
            Some(name)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = spawn(&mut cmd);
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = channel();
        let log2 = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut me = Self {
            child,
            sock,
            log,
            lines,
            shm,
            dir,
        };
        if me.wait_log("listening on", Duration::from_secs(10)) {
            Ok(me)
        } else {
            let status = me.child.try_wait().ok().flatten();
            let _ = me.child.kill();
            let status = status.or_else(|| me.child.wait().ok());
            // The reader ends at the end of the dead server's stderr, with
            // its last lines collected.
            let _ = reader.join();
            Err((me.log(), status))
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle` (also one logged earlier).
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> bool {
        if self.log().iter().any(|l| l.contains(needle)) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Connects a client that knows the vector count.
    pub fn connect(&self, vectors: usize) -> Client {
        Client::connect_with(
            &self.sock,
            &ConnectOptions {
                vectors: Some(vectors),
                timeout: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("connect: {e:?}; server log:\n{}", self.log().join("\n")))
    }

    /// Open descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), libc::SIGTERM);
        wait_timeout(&mut self.child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("server ignored SIGTERM; log:\n{}", self.log().join("\n")))
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}\n---", self.log().join("\n"));
        }
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: The kill(2) system call takes only integers and touches no memory
    // of this process; the caller passes the pid of a server it started.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}) failed");
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the server binary to completion (for argument errors).
pub fn run_server(args: &[&str]) -> Output {
    let mut child = spawn(
        Command::new(SERVER)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
        let _ = child.kill();
        panic!("ivshmem-server {args:?} did not exit");
    }
    child.wait_with_output().unwrap()
}

/// Polls `cond` until true or timeout.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads announcements until `c` knows exactly the peers `want`.
pub fn converge(c: &mut Client, want: &[PeerId]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.peers().keys().copied().eq(want.iter().copied()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event_timeout(Some(left)) {
            Ok(Some(_)) => {}
            Ok(None) => panic!(
                "client {} knows peers {:?}, expected {want:?}",
                c.id(),
                c.peers().keys().collect::<Vec<_>>()
            ),
            Err(e) => panic!("client {}: {e:?}", c.id()),
        }
    }
}

/// The resident memory of a process in KiB (`VmRSS`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The effective capabilities of a process (`CapEff`).
pub fn cap_eff(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in /proc/{pid}/status"))
}

/// Raises this process's open file soft limit to the hard limit; returns it.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
