//! Tests that need something from the machine: a hugetlbfs mount with a
//! free page, QEMU, thousands of descriptors, a server that the kernel's
//! limit on descriptors in flight applies to (run as nobody when the
//! tests run as root).
//!
//! Whether such a test can run is known only when the tests run: each
//! first checks what it needs, and when that is missing it is reported as
//! *ignored* (which `make check` reports as skipped) with the reason
//! printed as `SKIP name: reason`; when it is there, the test runs, and
//! fails if what it tests does not work. They run under libtest-mimic
//! through the `needs` crate (userspace-test/needs), which says why.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{ServerProc, TempDir, cap_eff, converge, raise_nofile, vm_rss_kib};
use ivshmem_proto::{Client, ConnectOptions, Event, MsgReader, PeerId};
use needs::{Arguments, needs as trial};

const LONG: Duration = Duration::from_secs(10);

fn main() {
    if let Some(n) = std::env::var_os(PIN_ENV) {
        pin(n.to_str().and_then(|n| n.parse().ok()).expect(PIN_ENV));
    }
    let args = Arguments::from_args();
    let trials = vec![
        trial(
            &args,
            "hugetlbfs_directory",
            hugetlbfs_with_free_pages(),
            hugetlbfs_directory,
        ),
        trial(
            &args,
            "more_than_1024_simultaneous_peers",
            descriptors_for_many_peers(),
            more_than_1024_simultaneous_peers,
        ),
        trial(
            &args,
            "max_peers_idle_peers_within_an_rss_limit",
            resources_for_max_peers(),
            max_peers_idle_peers_within_an_rss_limit,
        ),
        trial(
            &args,
            "stuck_clients_cannot_get_a_reading_peer_dropped",
            in_flight_limit_applies(),
            stuck_clients_cannot_get_a_reading_peer_dropped,
        ),
        trial(
            &args,
            "clients_that_do_not_read_stall_a_handshake_for_a_bounded_time",
            in_flight_limit_applies(),
            clients_that_do_not_read_stall_a_handshake_for_a_bounded_time,
        ),
        trial(
            &args,
            "a_lone_client_never_undercounts_its_vectors_in_a_shortage",
            in_flight_limit_applies(),
            a_lone_client_never_undercounts_its_vectors_in_a_shortage,
        ),
        trial(
            &args,
            "qemu_ivshmem_doorbell_is_a_peer",
            find_qemu(),
            qemu_ivshmem_doorbell_is_a_peer,
        ),
    ];
    needs::run(&args, trials);
}

/// Tests that use thousands of descriptors or the kernel's budget of
/// descriptors in flight run one at a time.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Raises this process's open file limit to the hard limit (which the
/// servers it starts inherit); fails if that is below `n`.
fn needs_descriptors(n: u64) -> Result<(), String> {
    let limit = raise_nofile();
    if limit < n {
        return Err(format!(
            "needs {n} open files, the hard limit is {limit} (ulimit -Hn)"
        ));
    }
    Ok(())
}

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
/// The capabilities that lift the kernel's limit on descriptors in flight.
const UNLIMITED_IN_FLIGHT: u64 = 1 << CAP_SYS_ADMIN | 1 << CAP_SYS_RESOURCE;
/// The user a root test runs a server as, so that the limit applies.
const NOBODY: u32 = 65534;

/// Whether a server started by this test is subject to the kernel's limit
/// on descriptors in flight (`ETOOMANYREFS` beyond `RLIMIT_NOFILE` of
/// them, per user): as root, by running it as nobody; as another user,
/// if that user lacks `CAP_SYS_RESOURCE` and `CAP_SYS_ADMIN`. Gives the
/// uid to run the server as, if any.
fn in_flight_limit_applies() -> Result<Option<u32>, String> {
    let caps = cap_eff("self");
    if rustix::process::geteuid().is_root() {
        let needed = 1 << CAP_SETUID | 1 << CAP_SETGID;
        if caps & needed == needed {
            return Ok(Some(NOBODY));
        }
        return Err(
            "root without CAP_SETUID and CAP_SETGID cannot run the server as another user, \
             and root's descriptors in flight may be unlimited"
                .into(),
        );
    }
    if caps & UNLIMITED_IN_FLIGHT != 0 {
        return Err(
            "this user has CAP_SYS_RESOURCE or CAP_SYS_ADMIN: the kernel does not limit its \
             descriptors in flight"
                .into(),
        );
    }
    Ok(None)
}

/// For the shortage tests: the server's open file limit, so its budget of
/// descriptors in flight: room for its own (2 per peer, up to 64 churning
/// peers accepted in one go, about 350) but not for what `STUCK` stuck
/// clients pin (about 64 each).
const SHORT_LIMIT: u64 = 512;
/// Clients that connect and never read.
const STUCK: usize = 100;
/// Peers that join and leave while they are stuck.
const CYCLES: usize = 200;

/// The server never dropped these peers (which read all along).
fn assert_not_dropped(s: &ServerProc, ids: &[PeerId]) {
    let log = s.log();
    for id in ids {
        assert!(
            !log.iter()
                .any(|l| l.contains(&format!("peer {id} dropped"))),
            "a reading peer was dropped:\n{}",
            log.join("\n")
        );
    }
}

/// `STUCK` clients that connect and never read.
fn stuck_clients(s: &ServerProc) -> Vec<UnixStream> {
    (0..STUCK)
        .map(|_| UnixStream::connect(&s.sock).unwrap())
        .collect()
}

/// H3: clients that do not read pin descriptors in flight until the
/// server's budget (its `RLIMIT_NOFILE`, for a user without
/// `CAP_SYS_RESOURCE`) is used up, and `sendmsg` fails with `ETOOMANYREFS`
/// for everyone. That is back-pressure: a healthy peer that reads is not
/// dropped, and gets everything once the stuck clients are gone.
fn stuck_clients_cannot_get_a_reading_peer_dropped(user: Option<u32>) {
    let _heavy = heavy();
    let mut s = confined_server(user, SHORT_LIMIT);
    let caps = cap_eff(&s.pid().to_string());
    assert_eq!(
        caps & UNLIMITED_IN_FLIGHT,
        0,
        "the server runs with CAP_SYS_ADMIN or CAP_SYS_RESOURCE: the limit does not apply"
    );

    let mut observer = s.connect(1);
    let stuck = stuck_clients(&s);
    // Churn: peers that read version and id (no descriptors: those get
    // through) and leave.
    churn_into_shortage(&mut s, &mut observer, CYCLES);
    assert!(s.log().iter().any(|l| l.contains("Too many references")));

    // The stuck clients go: their unread descriptors return to the budget
    // and everything held for the observer flows.
    drop(stuck);
    let mut late = s.connect(1);
    converge(&mut observer, &[late.id()]);
    // Stuck clients the server had not yet seen leave were in its handshake.
    converge(&mut late, &[observer.id()]);
    late.ring(observer.id(), 0).unwrap();
    assert_eq!(observer.take_notifications(0).unwrap(), Some(1));
    observer.ring(late.id(), 0).unwrap();
    assert_eq!(late.take_notifications(0).unwrap(), Some(1));
    assert!(s.wait_log("the shortage is over", LONG));
    // Stuck clients may have been dropped for reading nothing during the
    // shortage (see clients_that_do_not_read_stall_a_handshake_for_a_bounded_time);
    // the peers that read never are, and nobody is refused.
    assert_not_dropped(&s, &[observer.id(), late.id()]);
    let log = s.log();
    assert!(
        !log.iter().any(|l| l.contains("refused")),
        "server log:\n{}",
        log.join("\n")
    );
}

/// Set in the environment of this test binary run as a helper: pin that
/// many descriptors in flight.
const PIN_ENV: &str = "IVSHMEM_TEST_PIN_IN_FLIGHT";

/// The helper: sends `n` descriptors into a socket nobody reads, which
/// charges them to this user's descriptors in flight, says `pinned` on
/// stdout and holds them until stdin ends.
fn pin(n: usize) -> ! {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    use std::io::{IoSlice, Read, Write};
    use std::mem::MaybeUninit;
    use std::os::fd::AsFd;
    const CHUNK: usize = 200;
    let (tx, rx) = UnixStream::pair().unwrap();
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK);
        let fds = vec![efd.as_fd(); k];
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(k))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        sendmsg(&tx, &[IoSlice::new(b"x")], &mut control, SendFlags::empty()).unwrap();
        left -= k;
    }
    let mut out = std::io::stdout();
    out.write_all(b"pinned\n").unwrap();
    out.flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop((tx, rx));
    std::process::exit(0)
}

/// Churns `cycles` peers that read version and id (no descriptors: those
/// get through) and leave, while `observer` keeps reading, until the server
/// reports that it ran out of descriptors in flight.
fn churn_into_shortage(s: &mut ServerProc, observer: &mut Client, cycles: usize) {
    for _ in 0..cycles {
        let c = UnixStream::connect(&s.sock).unwrap();
        c.set_read_timeout(Some(LONG)).unwrap();
        let mut r = MsgReader::new();
        assert_eq!(r.read_msg(&c).unwrap().value, 0);
        r.read_msg(&c).unwrap();
        drop(c);
        while observer.try_next_event().unwrap().is_some() {}
    }
    assert!(
        s.wait_log("holding the messages and retrying", LONG),
        "the server never ran out of descriptors in flight: this test tested nothing"
    );
}

/// A one-vector server running as `user` (if any, in a directory that user
/// can write) with its open file limit at `limit`.
fn confined_server(user: Option<u32>, limit: u64) -> ServerProc {
    let dir = TempDir::new();
    if user.is_some() {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let sock = dir.path().join("sock");
    ServerProc::start_with(dir, sock, &["-n", "1"], |cmd| confine(cmd, user, limit))
        .unwrap_or_else(|(log, st)| panic!("did not start ({st:?}):\n{}", log.join("\n")))
}

/// Runs `cmd` as `user` (if any) with the open file limit at `limit`.
fn confine(cmd: &mut Command, user: Option<u32>, limit: u64) {
    // SAFETY: Between fork and exec the closure only makes async-signal-safe
    // system calls, and touches no lock or allocator.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(uid) = user {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// D10: a client alone on the server cannot learn the number of vectors
/// from other peers; it takes its own vectors to end when no more come
/// within `settle`. In a shortage of descriptors in flight the server held
/// the rest of them and retried 100 ms later, so such a client settled
/// with fewer vectors than it has, and said nothing. It must get them all
/// or fail clearly.
///
/// The shortage is made exact: a helper running as the server's user pins
/// all but 8 of the server's budget (its open file limit), so the server
/// can send the shared memory and 8 of the client's 32 vectors, then
/// `sendmsg` fails with `ETOOMANYREFS`.
fn a_lone_client_never_undercounts_its_vectors_in_a_shortage(user: Option<u32>) {
    use std::io::BufRead;
    const LIMIT: u64 = 256;
    const ROOM: u64 = 8;
    const VECTORS: usize = 32;
    let _heavy = heavy();
    let mut helper = Command::new(std::env::current_exe().unwrap());
    helper
        .env(PIN_ENV, (LIMIT - ROOM).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // The helper's own limit stays high: only the server's is low.
    confine(&mut helper, user, raise_nofile());
    let mut helper = Pinner(helper.spawn().unwrap());
    let mut line = String::new();
    std::io::BufReader::new(helper.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "pinned\n");

    let dir = TempDir::new();
    if user.is_some() {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let sock = dir.path().join("sock");
    let vectors = VECTORS.to_string();
    let mut s = ServerProc::start_with(dir, sock, &["-n", &vectors], |cmd| {
        confine(cmd, user, LIMIT)
    })
    .unwrap_or_else(|(log, st)| panic!("did not start ({st:?}):\n{}", log.join("\n")));
    let conn = UnixStream::connect(&s.sock).unwrap();
    // The server runs into the shortage before the client reads a byte.
    assert!(
        s.wait_log("Too many references", LONG),
        "the server never ran short of descriptors in flight: this test tested nothing"
    );
    // Any settle time shorter than the shortage; 50 ms makes it certain
    // that the server's retry (every 100 ms) comes too late.
    let got = Client::handshake(
        conn,
        &ConnectOptions {
            vectors: None,
            settle: Duration::from_millis(50),
            timeout: Some(LONG),
        },
    );
    match got {
        Ok(c) => assert_eq!(
            c.vectors().len(),
            VECTORS,
            "the lone client settled with {} of its {VECTORS} vectors",
            c.vectors().len()
        ),
        Err(ivshmem_proto::Error::Closed) => {
            assert!(s.wait_log("peer 0 dropped: its handshake", LONG));
        }
        Err(e) => panic!("handshake: {e:?}"),
    }
    // Once the shortage is over, a lone client gets everything.
    drop(helper);
    let c = Client::connect_with(&s.sock, &ConnectOptions::default()).unwrap();
    assert_eq!(c.vectors().len(), VECTORS);
}

/// The pinning helper, ended (and so its descriptors let go) on drop.
struct Pinner(Child);

impl Drop for Pinner {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Holds sockets that never read, and closes each one as soon as the
/// server hangs up on it (as a client does that sees its server go away).
/// Stops, closing the rest, when the returned socket is dropped; its join
/// handle gives how many the server hung up on.
fn close_on_hangup(mut socks: Vec<UnixStream>) -> (UnixStream, std::thread::JoinHandle<usize>) {
    use rustix::event::{PollFd, PollFlags, poll};
    let (stop, stopped) = UnixStream::pair().unwrap();
    let watcher = std::thread::spawn(move || {
        let mut hung_up = 0;
        loop {
            let mut fds: Vec<PollFd<'_>> = socks
                .iter()
                .map(|s| PollFd::new(s, PollFlags::RDHUP))
                .collect();
            fds.push(PollFd::new(&stopped, PollFlags::IN));
            poll(&mut fds, None).unwrap();
            let gone = |f: &PollFd<'_>| f.revents().intersects(PollFlags::RDHUP | PollFlags::HUP);
            if !fds.last().unwrap().revents().is_empty() {
                return hung_up;
            }
            let keep: Vec<bool> = fds[..socks.len()].iter().map(|f| !gone(f)).collect();
            drop(fds);
            let before = socks.len();
            let mut k = keep.iter();
            socks.retain(|_| *k.next().unwrap());
            hung_up += before - socks.len();
        }
    });
    (stop, watcher)
}

/// H3, the rest: clients that do not read pin descriptors in flight until
/// the server's budget is used up, and a new peer's handshake waits. A
/// client that has read nothing for 1 s while the server is short is
/// dropped; once it lets go of what was queued to it (here: it closes its
/// socket when the server hangs up), the handshake goes on. Before, such
/// clients were dropped only after --max-queue (2^18) more descriptors,
/// and the handshake waited for as long as they stayed.
fn clients_that_do_not_read_stall_a_handshake_for_a_bounded_time(user: Option<u32>) {
    let _heavy = heavy();
    let mut s = confined_server(user, SHORT_LIMIT);
    let mut observer = s.connect(1);
    let stuck = stuck_clients(&s);
    let (stop, watcher) = close_on_hangup(stuck);
    churn_into_shortage(&mut s, &mut observer, CYCLES);
    // The new peer's handshake, in a thread: the observer goes on reading
    // meanwhile (a peer that reads is never dropped).
    let path = s.sock.clone();
    let (done, done_r) = UnixStream::pair().unwrap();
    let handshake = std::thread::spawn(move || {
        let started = Instant::now();
        let late = Client::connect_with(
            &path,
            &ConnectOptions {
                vectors: Some(1),
                timeout: Some(LONG),
                ..Default::default()
            },
        );
        drop(done);
        (late, started.elapsed())
    });
    loop {
        use rustix::event::{PollFd, PollFlags, poll};
        while observer.try_next_event().unwrap().is_some() {}
        let mut fds = [
            PollFd::new(observer.socket(), PollFlags::IN),
            PollFd::new(&done_r, PollFlags::IN),
        ];
        poll(&mut fds, None).unwrap();
        if !fds[1].revents().is_empty() {
            break;
        }
    }
    let (late, took) = handshake.join().unwrap();
    let late = late.unwrap_or_else(|e| panic!("handshake during the shortage: {e:?}"));
    eprintln!("handshake during the shortage took {took:?}");
    converge(&mut observer, &[late.id()]);
    late.ring(observer.id(), 0).unwrap();
    assert_eq!(observer.take_notifications(0).unwrap(), Some(1));
    assert!(s.wait_log("dropped: it has read nothing for", LONG));
    drop(stop);
    let hung_up = watcher.join().unwrap();
    assert!(hung_up > 0, "no stuck client was hung up on");
    assert_not_dropped(&s, &[observer.id(), late.id()]);
}

/// A mounted hugetlbfs with free pages of its size, if any.
fn hugetlbfs_with_free_pages() -> Result<(String, u64), String> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| e.to_string())?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let default_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(2048);
    let mut seen = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[2] != "hugetlbfs" {
            continue;
        }
        let kb = f[3]
            .split(',')
            .find_map(|o| o.strip_prefix("pagesize="))
            .and_then(|p| {
                let (n, unit) = p.split_at(p.find(|c: char| !c.is_ascii_digit())?);
                let n: u64 = n.parse().ok()?;
                Some(match unit {
                    "K" | "k" => n,
                    "M" | "m" => n << 10,
                    "G" | "g" => n << 20,
                    _ => return None,
                })
            })
            .unwrap_or(default_kb);
        let free: u64 = std::fs::read_to_string(format!(
            "/sys/kernel/mm/hugepages/hugepages-{kb}kB/free_hugepages"
        ))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
        seen.push(format!("{} ({kb} kB pages, {free} free)", f[1]));
        if free >= 1 && rustix::fs::access(f[1], rustix::fs::Access::WRITE_OK).is_ok() {
            return Ok((f[1].to_owned(), kb << 10));
        }
    }
    Err(if seen.is_empty() {
        "no hugetlbfs mounted".into()
    } else {
        format!(
            "no writable hugetlbfs with a free page: {}",
            seen.join(", ")
        )
    })
}

fn hugetlbfs_directory((dir, page): (String, u64)) {
    // Half a huge page: rounded up to a whole one, with a notice.
    let half = (page / 2).to_string();
    let mut s = ServerProc::start(&["-m", &dir, "-l", &half]);
    let a = s.connect(1);
    assert_eq!(a.shm_size(), page);
    assert!(s.wait_log("is hugetlbfs", LONG));
    let m = a.map_shared_memory().unwrap();
    m.write(0, b"huge").unwrap();
    let b = s.connect(1);
    let mut buf = [0u8; 4];
    b.map_shared_memory().unwrap().read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"huge");
}

/// Reads the first three handshake messages and checks them; drops the shm.
fn minimal_handshake(sock: &UnixStream, reader: &mut MsgReader) -> PeerId {
    let v = reader.read_msg(sock).unwrap();
    assert_eq!((v.value, v.fd.is_some()), (0, false));
    let id = reader.read_msg(sock).unwrap();
    assert!(id.fd.is_none());
    let shm = reader.read_msg(sock).unwrap();
    assert_eq!(shm.value, -1);
    assert!(shm.fd.is_some());
    id.value as PeerId
}

const MANY_PEERS: usize = 1100;

/// The test holds a socket per peer plus the last one's 1100 eventfds; the
/// server a socket and an eventfd per peer.
fn descriptors_for_many_peers() -> Result<(), String> {
    needs_descriptors((2 * MANY_PEERS + 64) as u64)
}

fn more_than_1024_simultaneous_peers(_: ()) {
    const PEERS: usize = MANY_PEERS;
    let _heavy = heavy();
    let s = ServerProc::start(&["-n", "1"]);

    // Peer 0 reads its whole (short) handshake: it has its own vector.
    let first = s.connect(1);
    assert_eq!(first.id(), 0);

    // The others read only version, id and shared memory, then nothing:
    // the rest of their handshake and every later join stays queued.
    let mut socks = Vec::with_capacity(PEERS);
    for i in 1..PEERS - 1 {
        let sock = UnixStream::connect(&s.sock).unwrap();
        let mut r = MsgReader::new();
        assert_eq!(minimal_handshake(&sock, &mut r) as usize, i);
        socks.push(sock);
    }

    // The last one reads its full handshake: 1099 peers, one vector each.
    let last = s.connect(1);
    assert_eq!(last.id() as usize, PEERS - 1);
    assert_eq!(last.peers().len(), PEERS - 1);
    assert!(last.peers().values().all(|v| v.len() == 1));
    assert_eq!(last.vectors().len(), 1);

    // The server watches well over 1024 descriptors: sockets + eventfds.
    let fds = s.fd_count();
    assert!(fds > 2 * PEERS, "server has {fds} descriptors open");

    // And still delivers: the last peer rings the first.
    last.ring(0, 0).unwrap();
    assert_eq!(first.take_notifications(0).unwrap(), Some(1));
    let log = s.log();
    assert!(
        !log.iter()
            .any(|l| l.contains("refused") || l.contains("dropped")),
        "server log: {log:?}"
    );
    drop(socks);
}

/// The default --max-peers.
const MAX_PEERS: usize = 4096;
/// What the server may use with that many idle peers, in KiB. Measured:
/// 266 MB before a client's pending output became a cursor.
const RSS_LIMIT_KIB: u64 = 16 << 10;
/// Descriptors in flight that an idle peer may pin (its socket buffer).
const IN_FLIGHT_PER_PEER: u64 = 64;

fn resources_for_max_peers() -> Result<(), String> {
    // The test holds a socket per peer and, at the end, a client with
    // every peer's eventfd; the server a socket and an eventfd per peer.
    needs_descriptors(2 * MAX_PEERS as u64 + 128)?;
    let caps = cap_eff("self");
    if caps & UNLIMITED_IN_FLIGHT == 0 {
        let need = MAX_PEERS as u64 * IN_FLIGHT_PER_PEER + 1024;
        let limit = raise_nofile();
        if limit < need {
            return Err(format!(
                "{MAX_PEERS} idle peers pin up to {} descriptors in flight, which Linux counts \
                 against the server's open file limit ({limit}) for a user without \
                 CAP_SYS_RESOURCE",
                MAX_PEERS as u64 * IN_FLIGHT_PER_PEER
            ));
        }
    }
    Ok(())
}

/// As many peers as --max-peers allows by default, each reading only
/// version, id and shared memory (the worst case for memory before: each
/// kept its whole handshake queued, O(N²)): the server stays within an
/// RSS limit, refuses one more clearly, and serves a new peer once one
/// left.
fn max_peers_idle_peers_within_an_rss_limit(_: ()) {
    let _heavy = heavy();
    let mut s = ServerProc::start(&["-n", "1"]);
    let before = vm_rss_kib(s.pid());
    let started = Instant::now();
    let mut idle = Vec::with_capacity(MAX_PEERS);
    for i in 0..MAX_PEERS {
        let sock = UnixStream::connect(&s.sock).unwrap();
        sock.set_read_timeout(Some(LONG)).unwrap();
        let mut r = MsgReader::new();
        assert_eq!(minimal_handshake(&sock, &mut r) as usize, i);
        idle.push(sock);
    }
    let took = started.elapsed();
    let rss = vm_rss_kib(s.pid());
    let fds = s.fd_count();
    eprintln!(
        "{MAX_PEERS} idle peers connected in {took:.1?}: server VmRSS {before} KiB before, \
         {rss} KiB after, {fds} descriptors"
    );
    assert!(
        rss <= RSS_LIMIT_KIB,
        "server VmRSS {rss} KiB with {MAX_PEERS} idle peers, limit {RSS_LIMIT_KIB} KiB"
    );
    assert!(fds > 2 * MAX_PEERS, "server has {fds} descriptors open");

    // One more is refused, with a clear message; it sees end of file.
    let extra = UnixStream::connect(&s.sock).unwrap();
    extra.set_read_timeout(Some(LONG)).unwrap();
    assert!(matches!(
        MsgReader::new().read_msg(&extra),
        Err(ivshmem_proto::Error::Closed)
    ));
    assert!(s.wait_log(
        "refused a connection: 4096 peers connected, the most allowed (--max-peers)",
        LONG
    ));

    // Once one leaves, a peer that reads everything gets in, and learns
    // of every other.
    drop(idle.pop());
    let opts = ConnectOptions {
        vectors: Some(1),
        timeout: Some(LONG),
        ..Default::default()
    };
    let deadline = Instant::now() + LONG;
    let late = loop {
        // Refused (end of file) until the server has seen the leave.
        match Client::connect_with(&s.sock, &opts) {
            Ok(c) => break c,
            Err(ivshmem_proto::Error::Closed) if Instant::now() < deadline => {}
            Err(e) => panic!("cannot connect once a peer left: {e:?}"),
        }
    };
    assert_eq!(late.peers().len(), MAX_PEERS - 1);
    let rss = vm_rss_kib(s.pid());
    assert!(
        rss <= RSS_LIMIT_KIB,
        "server VmRSS {rss} KiB after a {MAX_PEERS}-peer handshake, limit {RSS_LIMIT_KIB} KiB"
    );
    let log = s.log();
    assert!(
        !log.iter().any(|l| l.contains("dropped")),
        "server log: {log:?}"
    );
}

const QEMU: &str = "qemu-system-x86_64";

fn find_qemu() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(QEMU))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{QEMU} not found in PATH or /usr/bin"))
}

/// Kills QEMU on drop and shows its stderr if the test failed.
struct Qemu(Option<Child>);

impl Qemu {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let _ = child.kill();
        let out = child.wait_with_output();
        if let (Ok(out), true) = (out, std::thread::panicking()) {
            eprintln!(
                "--- qemu stderr ---\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn qemu_ivshmem_doorbell_is_a_peer(qemu: PathBuf) {
    let s = ServerProc::start(&["-n", "2"]);
    let mut observer = s.connect(2);
    assert_eq!(observer.id(), 0);

    let chardev = format!("socket,path={},id=ch", s.sock.display());
    let mut vm = Qemu(Some(
        Command::new(&qemu)
            .args([
                "-M",
                "pc",
                "-accel",
                "tcg",
                "-nodefaults",
                "-display",
                "none",
                "-S",
            ])
            .args(["-chardev", &chardev])
            .args(["-device", "ivshmem-doorbell,chardev=ch,vectors=2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run qemu"),
    ));

    // QEMU realizes the device and reads the handshake: it joins as peer 1
    // with two vectors.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(st)) = vm.child().try_wait() {
            panic!("qemu exited early with {st}");
        }
        match observer
            .next_event_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap()
        {
            Some(e) => seen.push(e),
            None if Instant::now() >= deadline => panic!("qemu never joined; got {seen:?}"),
            None => {}
        }
    }
    assert_eq!(
        seen,
        [
            Event::PeerVector { peer: 1, vector: 0 },
            Event::PeerVector { peer: 1, vector: 1 }
        ]
    );

    // A client connecting now sees QEMU among the peers, with 2 vectors.
    let late = s.connect(2);
    assert_eq!(late.peers().get(&1).map(Vec::len), Some(2));
    assert_eq!(late.peers().get(&0).map(Vec::len), Some(2));
    // Ringing QEMU's vectors is accepted (no guest runs to notice).
    late.ring(1, 0).unwrap();
    late.ring(1, 1).unwrap();
    drop(late);
    assert!(matches!(
        observer
            .next_event_timeout(Some(Duration::from_secs(5)))
            .unwrap(),
        Some(Event::PeerVector { peer: 2, .. })
    ));

    // QEMU dies: everyone hears that peer 1 left.
    vm.child().kill().unwrap();
    vm.child().wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match observer.next_event_timeout(Some(left)).unwrap() {
            Some(Event::PeerLeft { peer: 1, vectors }) => {
                assert_eq!(vectors, 2);
                break;
            }
            Some(_) => {} // peer 2's remaining join/leave messages
            None => panic!("no leave announcement for QEMU"),
        }
    }
    assert!(!observer.peers().contains_key(&1));
}
