//! Socket activation: a listening socket passed by a service manager
//! (systemd's `LISTEN_PID`/`LISTEN_FDS`, descriptor 3) is served instead of
//! binding `-S`, and its file is left to the manager at exit.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::{SERVER, ShmName, TempDir, signal, wait_timeout};
use ivshmem_proto::{Client, ConnectOptions};

const LONG: Duration = Duration::from_secs(10);

/// Starts the server through `sh`, which sets `LISTEN_PID` to its own pid
/// and execs the server (same pid) with `listener` as descriptor 3.
fn spawn_activated(
    listener: &UnixListener,
    listen_fds: &str,
    args: &[&str],
) -> (Child, Receiver<String>) {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("export LISTEN_PID=$$ LISTEN_FDS=$0; exec \"$@\"")
        .arg(listen_fds)
        .arg(SERVER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: Between fork and exec the closure only makes async-signal-safe
    // system calls (dup2, fcntl) on descriptors it does not own otherwise; it
    // allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("cannot spawn the server");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Collects log lines until one contains `needle` (or the log ends).
fn wait_line(rx: &Receiver<String>, needle: &str) -> (bool, Vec<String>) {
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(LONG) {
        let hit = line.contains(needle);
        seen.push(line);
        if hit {
            return (true, seen);
        }
    }
    (false, seen)
}

#[test]
fn a_passed_socket_is_served_and_left_to_the_manager() {
    let dir = TempDir::new();
    let path = dir.path().join("activated.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let shm = ShmName::new();
    // -S names a directory that does not exist: binding it would fail, so
    // a server that comes up is serving the passed socket.
    let (mut child, rx) = spawn_activated(
        &listener,
        "1",
        &["-F", "-S", "/nonexistent/dir/sock", "-M", &shm.0, "-n", "2"],
    );
    let (up, log) = wait_line(&rx, "listening on");
    assert!(up, "the server did not come up; log:\n{}", log.join("\n"));
    let line = log.last().cloned().unwrap_or_default();
    assert!(
        line.contains(&format!(
            "listening on {} (passed by the service manager)",
            path.display()
        )),
        "{line}"
    );
    let client = Client::connect_with(
        &path,
        &ConnectOptions {
            vectors: Some(2),
            timeout: Some(LONG),
            ..Default::default()
        },
    )
    .expect("a client connects through the passed socket");
    assert_eq!(client.vectors().len(), 2);
    drop(client);
    signal(child.id(), libc::SIGTERM);
    let status = wait_timeout(&mut child, LONG).expect("the server ignored SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(path.exists(), "the manager's socket file was removed");
}

#[test]
fn more_than_one_passed_socket_is_refused() {
    let dir = TempDir::new();
    let listener = UnixListener::bind(dir.path().join("a.sock")).unwrap();
    let shm = ShmName::new();
    let sock = dir.path().join("sock");
    let (mut child, rx) = spawn_activated(
        &listener,
        "2",
        &["-F", "-S", sock.to_str().unwrap(), "-M", &shm.0],
    );
    let status = wait_timeout(&mut child, LONG).expect("the server did not exit");
    let log: Vec<String> = rx.iter().collect();
    assert!(!status.success());
    assert!(
        log.iter().any(|l| l.contains("takes exactly one")),
        "{}",
        log.join("\n")
    );
    assert!(!sock.exists(), "the server bound -S anyway");
}
