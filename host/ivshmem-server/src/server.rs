//! The event loop: accepting peers, handing out eventfds, announcing joins
//! and leaves, and writing each client's messages as its socket takes them.
//!
//! # What a client costs
//!
//! A client's pending output is not a queue of messages but a position in
//! the list of live peers, in the order they joined: everything from there
//! on is still to be sent (for a new client that is its whole handshake:
//! the peers before it, then its own vectors; later, the peers that joined
//! after it). Descriptors are looked up when a message is written, so
//! nothing a client has not read keeps a descriptor open in the server: a
//! peer's eventfds are closed as soon as it leaves, and a join that a
//! client never got is simply never sent (nor the matching leave). The
//! only list is that of the departed peers whose leave a client still has
//! to be told, one `u16` each, at most one per peer it was told about.
//!
//! So a client that stops reading costs O(1) memory, whatever the churn,
//! and the descriptors in flight to it (sent, not yet received) are bounded
//! by its socket's send buffer ([`SEND_BUFFER`]).
//!
//! # Back-pressure
//!
//! Linux charges descriptors in flight to the sending user against its
//! `RLIMIT_NOFILE` (unless it has `CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN`).
//! When clients that do not read have used that up, `sendmsg` fails with
//! `ETOOMANYREFS`; `EMFILE`, `ENFILE`, `ENOBUFS` and `ENOMEM` are the
//! server's resources too. None of these is the fault of the client being
//! written to: its messages are kept and retried every [`RETRY_INTERVAL`]
//! until the resource is back.
//!
//! Clients that do not read can be the cause: what is queued to them counts
//! against the budget until they read it or close their socket (closing the
//! server's end does not give it back). So during a shortage a client that
//! has read nothing for [`STUCK_TIMEOUT`] is dropped: it gets nothing more,
//! and sees end of file. A new peer's handshake then waits for clients that
//! do not read at most about [`STUCK_TIMEOUT`] plus [`RETRY_INTERVAL`], plus
//! however long they keep what was already queued to them.
//!
//! The exception to holding: a client alone, part way through its own
//! vectors with no other peer's to count from, would take a pause for their
//! end; it is dropped instead, so that its handshake fails clearly.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ivshmem_proto::{MSG_LEN, PROTOCOL_VERSION, PeerId, SHM_MESSAGE, send_part};
use log::{Level, debug, error, info, warn};
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{EventfdFlags, Timespec, eventfd};
use rustix::io::Errno;
use rustix::net::sockopt;

use crate::ids::IdAllocator;
use crate::ratelimit::{BURST, PER_SECOND, RateLimit};

const TOKEN_LISTEN: u64 = 0;
const TOKEN_STOP: u64 = 1;
/// Accepts per wake-up, so that a flood of connections cannot starve the
/// peers already connected.
const ACCEPT_BATCH: usize = 64;
/// How often writes held back by a shortage of the server's resources
/// (descriptors in flight, descriptors, kernel memory) are retried.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// During a shortage of the server's resources, a client that has read
/// nothing for this long is dropped: what it does not read may be what the
/// server is short of (descriptors in flight), and every new peer's
/// handshake waits for it.
pub const STUCK_TIMEOUT: Duration = Duration::from_secs(1);
/// `SO_SNDBUF` of each client's socket. Linux doubles it and charges about
/// 768 bytes per 8-byte message, so about 64 messages (and as many
/// descriptors) can wait in a client's socket; the default (208 KiB) let
/// a client that does not read pin 278.
pub const SEND_BUFFER: usize = 24 << 10;
/// The capacity an emptied list of pending leaves keeps.
const IDLE_LEAVES_CAPACITY: usize = 16;

/// Why a peer is dropped.
#[derive(Debug, Clone, Copy)]
enum DropReason {
    Closed,
    Data(usize),
    ReadError(Errno),
    SendError(Errno),
    QueueFull(usize),
    /// A lone client's own vectors held back by a shortage.
    LoneHandshake(Errno),
    /// Read nothing for this long during a shortage.
    NotReading(Duration),
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Closed => write!(f, "disconnected"),
            DropReason::Data(n) => write!(
                f,
                "sent {n} byte(s) of data (clients must not send anything)"
            ),
            DropReason::ReadError(e) => write!(f, "read error: {e}"),
            DropReason::SendError(e) => write!(f, "send error: {e}"),
            DropReason::QueueFull(n) => write!(
                f,
                "more than {n} descriptors beyond its handshake wait for it (the client is not reading its socket)"
            ),
            DropReason::NotReading(d) => write!(
                f,
                "it has read nothing for {:.1} s while the server is short of resources (the \
                 descriptors queued to it count against the server's budget)",
                d.as_secs_f64()
            ),
            DropReason::LoneHandshake(e) => write!(
                f,
                "its handshake was cut short: {e} ({}); alone, it would take the vectors it got \
                 so far for all it has",
                explain_shortage(*e)
            ),
        }
    }
}

/// Whether a failed write is a shortage of the server's own resources
/// rather than something wrong with the client written to.
fn is_server_shortage(e: Errno) -> bool {
    matches!(
        e,
        Errno::TOOMANYREFS | Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM
    )
}

fn explain_shortage(e: Errno) -> &'static str {
    match e {
        Errno::TOOMANYREFS => {
            "the descriptors in flight to clients that have not read them count against this \
             server's open file limit, and it is used up"
        }
        Errno::MFILE | Errno::NFILE => "out of file descriptors",
        _ => "out of kernel memory",
    }
}

/// What a client has not read of what was written to its socket (the
/// kernel's memory for it, `SIOCOUTQ`): 0 when it has read everything.
fn unread(sock: &UnixStream) -> Result<usize, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) on a socket stores one `int` through the pointer, which
    // points to `n`, alive and writable for the whole call; the descriptor is
    // borrowed from `sock`, open for the duration.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            // SIOCOUTQ, which Linux defines as TIOCOUTQ.
            libc::TIOCOUTQ,
            &mut n as *mut libc::c_int,
        )
    };
    if r < 0 {
        return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// A connected peer as the others see it: its id and eventfds. The only
/// owner of the eventfds: they close when the peer leaves.
#[derive(Debug)]
struct Live {
    id: PeerId,
    vectors: Vec<OwnedFd>,
}

/// Where a client's output stands in the list of live peers: the next
/// message is vector `vector` of the peer that joined with `serial`, or,
/// if that one left, vector 0 of the next peer that joined after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    serial: u64,
    vector: usize,
}

/// The next message for a client, and what sending it advances.
#[derive(Debug)]
struct Pick<'a> {
    value: i64,
    fd: Option<BorrowedFd<'a>>,
    step: Step,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Prefix,
    Leave,
    Vector { at: Cursor, last: bool },
}

/// A write in progress.
#[derive(Debug, Clone, Copy)]
enum Sending {
    /// The rest of a message already begun.
    Rest { bytes: [u8; MSG_LEN], done: usize },
    /// A new message.
    Next { bytes: [u8; MSG_LEN], step: Step },
}

/// How far a flush got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Everything is sent.
    Drained,
    /// The socket is full: wait for EPOLLOUT.
    Blocked,
    /// The server is short of a resource: retry later.
    Held(Errno),
}

#[derive(Debug)]
struct Peer {
    sock: UnixStream,
    serial: u64,
    /// Messages of the version, id, shared memory prefix already sent.
    prefix_sent: u8,
    cursor: Cursor,
    /// Departed peers this client was told about and must hear left.
    leaves: VecDeque<PeerId>,
    /// The rest of a message whose first bytes (and descriptor) are sent.
    partial: Option<([u8; MSG_LEN], usize)>,
    /// Descriptors still to be sent to it.
    backlog: usize,
    /// Drop it once `backlog` exceeds this.
    limit: usize,
    /// EPOLLOUT is registered: the socket buffer was full.
    waiting_out: bool,
    /// Its writes are held back by a shortage of the server's resources.
    held: bool,
    /// It was sent every vector of another peer, so it can tell how many
    /// vectors a peer has.
    counted: bool,
    /// During a shortage: its unread output (`SIOCOUTQ`) at the last check,
    /// and since when that has not gone down.
    unread: usize,
    unread_since: Option<Instant>,
    /// Will be dropped at the next reap.
    doomed: bool,
}

impl Peer {
    fn new(sock: UnixStream, serial: u64, backlog: usize, limit: usize) -> Self {
        Self {
            sock,
            serial,
            prefix_sent: 0,
            cursor: Cursor {
                serial: 0,
                vector: 0,
            },
            leaves: VecDeque::new(),
            partial: None,
            backlog,
            limit,
            waiting_out: false,
            held: false,
            counted: false,
            unread: 0,
            unread_since: None,
            doomed: false,
        }
    }

    fn token(&self, id: PeerId) -> u64 {
        (self.serial << 16) | u64::from(id)
    }

    /// Whether the handshake is complete: the cursor is past its own
    /// vectors.
    fn handshake_done(&self) -> bool {
        self.cursor.serial > self.serial
    }

    /// Whether it is part way through its own vectors with no other peer's
    /// complete set to count from: a client alone cannot tell the end of
    /// its vectors but by their stopping (`ConnectOptions::settle`), so a
    /// pause here would make it undercount.
    fn lone_in_own_vectors(&self) -> bool {
        !self.counted && self.cursor.serial == self.serial && self.cursor.vector > 0
    }

    /// Whether any vector of the peer that joined with `serial` was sent.
    fn was_told(&self, serial: u64) -> bool {
        self.cursor > Cursor { serial, vector: 0 }
    }

    /// The next message: the prefix; then the peers in the order they
    /// joined, itself included (the handshake); once the handshake is done,
    /// pending leaves come first, unless a peer's vectors are half sent.
    fn pick<'a>(
        &self,
        id: PeerId,
        live: &'a BTreeMap<u64, Live>,
        shm: BorrowedFd<'a>,
    ) -> Option<Pick<'a>> {
        let prefix = |value, fd| {
            Some(Pick {
                value,
                fd,
                step: Step::Prefix,
            })
        };
        match self.prefix_sent {
            0 => return prefix(PROTOCOL_VERSION, None),
            1 => return prefix(i64::from(id), None),
            2 => return prefix(SHM_MESSAGE, Some(shm)),
            _ => {}
        }
        if self.cursor.vector == 0 && self.handshake_done() {
            if let Some(&left) = self.leaves.front() {
                return Some(Pick {
                    value: i64::from(left),
                    fd: None,
                    step: Step::Leave,
                });
            }
        }
        let (&serial, peer) = live.range(self.cursor.serial..).next()?;
        let vector = if serial == self.cursor.serial {
            self.cursor.vector
        } else {
            0
        };
        let fd = peer.vectors.get(vector)?;
        Some(Pick {
            value: i64::from(peer.id),
            fd: Some(fd.as_fd()),
            step: Step::Vector {
                at: Cursor { serial, vector },
                last: vector + 1 == peer.vectors.len(),
            },
        })
    }

    /// Records that a picked message went out (at least its first byte).
    fn advance(&mut self, step: Step) {
        match step {
            Step::Prefix => self.prefix_sent += 1,
            Step::Leave => {
                self.leaves.pop_front();
            }
            Step::Vector { at, last } => {
                self.backlog = self.backlog.saturating_sub(1);
                if last && at.serial != self.serial {
                    self.counted = true;
                }
                self.cursor = if last {
                    Cursor {
                        serial: at.serial + 1,
                        vector: 0,
                    }
                } else {
                    Cursor {
                        serial: at.serial,
                        vector: at.vector + 1,
                    }
                };
            }
        }
    }

    /// Records that `n` bytes (at least 1) of `what` went out.
    fn sent(&mut self, what: Sending, n: usize) {
        let (bytes, done) = match what {
            Sending::Rest { bytes, done } => (bytes, done + n),
            Sending::Next { bytes, step } => {
                self.advance(step);
                (bytes, n)
            }
        };
        self.partial = (done < MSG_LEN).then_some((bytes, done));
    }

    /// Sends what the socket takes.
    fn flush(
        &mut self,
        id: PeerId,
        live: &BTreeMap<u64, Live>,
        shm: BorrowedFd<'_>,
    ) -> Result<Flow, Errno> {
        loop {
            let (result, what) = if let Some((bytes, done)) = self.partial {
                let r = send_part(self.sock.as_fd(), &bytes[done..], None, true);
                (r, Sending::Rest { bytes, done })
            } else if let Some(pick) = self.pick(id, live, shm) {
                let bytes = pick.value.to_le_bytes();
                // The descriptor rides on the first byte of its message.
                let r = send_part(self.sock.as_fd(), &bytes, pick.fd, true);
                (
                    r,
                    Sending::Next {
                        bytes,
                        step: pick.step,
                    },
                )
            } else {
                break;
            };
            match result {
                Ok(0) => return Err(Errno::IO),
                Ok(n) => self.sent(what, n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(Flow::Blocked),
                Err(e) if is_server_shortage(e) => return Ok(Flow::Held(e)),
                Err(e) => return Err(e),
            }
        }
        // Drained: give back what a burst of departures made the list of
        // leaves grow to.
        if self.leaves.capacity() > IDLE_LEAVES_CAPACITY {
            self.leaves.shrink_to(IDLE_LEAVES_CAPACITY);
        }
        Ok(Flow::Drained)
    }
}

/// Writes held back by a shortage of the server's resources.
#[derive(Debug, Default)]
struct Shortage {
    /// The peers to retry (id and serial; stale entries are skipped).
    held: Vec<(PeerId, u64)>,
    /// The listening socket is not watched: accept failed for lack of
    /// resources and no reserve descriptor was left.
    listen_paused: bool,
    /// Since when, for the log.
    since: Option<Instant>,
    next_retry: Option<Instant>,
}

impl Shortage {
    fn active(&self) -> bool {
        !self.held.is_empty() || self.listen_paused
    }

    fn start(&mut self, what: fmt::Arguments<'_>, e: Errno) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            warn!(
                "{what}: {e} ({}); holding the messages and retrying every {} ms",
                explain_shortage(e),
                RETRY_INTERVAL.as_millis()
            );
        }
        self.next_retry
            .get_or_insert_with(|| Instant::now() + RETRY_INTERVAL);
    }
}

/// Everything but the peers' connection state, so that a peer can be
/// flushed while the list of live peers is read.
#[derive(Debug)]
struct Hub {
    epoll: OwnedFd,
    listener: UnixListener,
    shm: OwnedFd,
    vectors: usize,
    max_queue: usize,
    max_peers: usize,
    /// The connected peers' eventfds, by the serial number of their
    /// connection: the order in which they joined.
    live: BTreeMap<u64, Live>,
    dead: Vec<(PeerId, u64, DropReason)>,
    shortage: Shortage,
}

impl Hub {
    fn doom(&mut self, id: PeerId, peer: &mut Peer, why: DropReason) {
        if !peer.doomed {
            peer.doomed = true;
            self.dead.push((id, peer.serial, why));
        }
    }

    /// Sends what can be sent, watches for room when the socket is full,
    /// and schedules a retry when the server is short of resources.
    fn flush(&mut self, id: PeerId, peer: &mut Peer) {
        if peer.doomed {
            return;
        }
        let blocked = match peer.flush(id, &self.live, self.shm.as_fd()) {
            Ok(Flow::Drained) => {
                peer.held = false;
                false
            }
            Ok(Flow::Blocked) => {
                peer.held = false;
                true
            }
            Ok(Flow::Held(e)) if peer.lone_in_own_vectors() => {
                // Holding would let it settle with fewer vectors than it
                // has: it sees end of file instead, and fails clearly.
                return self.doom(id, peer, DropReason::LoneHandshake(e));
            }
            Ok(Flow::Held(e)) => {
                if !peer.held {
                    peer.held = true;
                    self.shortage.held.push((id, peer.serial));
                }
                self.shortage
                    .start(format_args!("cannot write to peer {id}"), e);
                false
            }
            Err(Errno::PIPE | Errno::CONNRESET) => {
                return self.doom(id, peer, DropReason::Closed);
            }
            Err(e) => return self.doom(id, peer, DropReason::SendError(e)),
        };
        if blocked != peer.waiting_out {
            let mut flags = EventFlags::IN | EventFlags::RDHUP;
            if blocked {
                flags |= EventFlags::OUT;
                debug!("peer {id}: socket full, {} descriptors to go", peer.backlog);
            } else {
                debug!("peer {id}: socket no longer full");
            }
            if let Err(e) = epoll::modify(
                &self.epoll,
                &peer.sock,
                EventData::new_u64(peer.token(id)),
                flags,
            ) {
                return self.doom(id, peer, DropReason::SendError(e));
            }
            peer.waiting_out = blocked;
        }
    }

    fn pause_listening(&mut self, e: Errno) {
        if !self.shortage.listen_paused {
            self.shortage.listen_paused = true;
            if let Err(e) = epoll::modify(
                &self.epoll,
                &self.listener,
                EventData::new_u64(TOKEN_LISTEN),
                EventFlags::empty(),
            ) {
                error!("cannot pause the listening socket: {e}");
            }
        }
        self.shortage
            .start(format_args!("cannot accept connections"), e);
    }
}

/// The ivshmem server's state.
#[derive(Debug)]
pub struct Server {
    hub: Hub,
    peers: BTreeMap<PeerId, Peer>,
    ids: IdAllocator,
    next_serial: u64,
    /// A spare descriptor, given up to accept-and-close a connection when
    /// the process is out of descriptors (otherwise the pending connection
    /// would wake the loop forever).
    reserve: Option<OwnedFd>,
    logs: ConnectionLogs,
}

/// The rate limits of the lines that connections cause.
#[derive(Debug)]
struct ConnectionLogs {
    /// Peers connecting and disconnecting.
    peers: RateLimit,
    /// Connections refused.
    refused: RateLimit,
    /// Peers dropped.
    dropped: RateLimit,
}

impl ConnectionLogs {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            peers: RateLimit::new(
                "messages about peers connecting or disconnecting",
                Level::Info,
                BURST,
                PER_SECOND,
                now,
            ),
            refused: RateLimit::new(
                "messages about refused connections",
                Level::Warn,
                BURST,
                PER_SECOND,
                now,
            ),
            dropped: RateLimit::new(
                "messages about dropped peers",
                Level::Warn,
                BURST,
                PER_SECOND,
                now,
            ),
        }
    }

    fn all(&mut self) -> [&mut RateLimit; 3] {
        [&mut self.peers, &mut self.refused, &mut self.dropped]
    }

    fn next_report(&mut self) -> Option<Instant> {
        self.all().iter().filter_map(|r| r.next_report()).min()
    }

    fn flush(&mut self, now: Instant) {
        for r in self.all() {
            r.flush(now);
        }
    }
}

fn open_reserve() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

impl Server {
    /// A server handing out `shm`, with `vectors` eventfds per peer, that
    /// drops a client once more than `max_queue` descriptors beyond its
    /// handshake wait for it. `listener` must be non-blocking. At most
    /// [`IdAllocator::CAPACITY`] peers; see [`Server::set_max_peers`].
    pub fn new(
        listener: UnixListener,
        shm: OwnedFd,
        vectors: usize,
        max_queue: usize,
    ) -> Result<Self> {
        let epoll = epoll::create(CreateFlags::CLOEXEC).context("cannot create epoll")?;
        epoll::add(
            &epoll,
            &listener,
            EventData::new_u64(TOKEN_LISTEN),
            EventFlags::IN,
        )
        .context("cannot watch the listening socket")?;
        Ok(Self {
            hub: Hub {
                epoll,
                listener,
                shm,
                vectors,
                max_queue,
                max_peers: IdAllocator::CAPACITY,
                live: BTreeMap::new(),
                dead: Vec::new(),
                shortage: Shortage::default(),
            },
            peers: BTreeMap::new(),
            ids: IdAllocator::new(),
            next_serial: 1,
            reserve: open_reserve(),
            logs: ConnectionLogs::new(),
        })
    }

    /// Refuses connections beyond `max` peers (at most
    /// [`IdAllocator::CAPACITY`]).
    pub fn set_max_peers(&mut self, max: usize) {
        self.hub.max_peers = max.min(IdAllocator::CAPACITY);
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Serves until `stop` becomes readable (or hangs up).
    pub fn run(&mut self, stop: BorrowedFd<'_>) -> Result<()> {
        epoll::add(
            &self.hub.epoll,
            stop,
            EventData::new_u64(TOKEN_STOP),
            EventFlags::IN,
        )
        .context("cannot watch the stop descriptor")?;
        let mut events = Vec::with_capacity(256);
        loop {
            events.clear();
            let wake = match (self.hub.shortage.next_retry, self.logs.next_report()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = wake.map(|t| {
                let left = t.saturating_duration_since(Instant::now());
                Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                })
            });
            match epoll::wait(
                &self.hub.epoll,
                spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e).context("epoll_wait failed"),
            }
            for ev in &events {
                let (token, flags) = (ev.data.u64(), ev.flags);
                match token {
                    TOKEN_LISTEN => self.accept_ready(),
                    TOKEN_STOP => {
                        debug!("stop requested");
                        let _ = epoll::delete(&self.hub.epoll, stop);
                        return Ok(());
                    }
                    token => self.peer_ready(token, flags),
                }
                self.reap();
            }
            if self
                .hub
                .shortage
                .next_retry
                .is_some_and(|t| Instant::now() >= t)
            {
                self.retry();
                self.reap();
            }
            self.logs.flush(Instant::now());
        }
    }

    /// Retries what a shortage of resources held back.
    fn retry(&mut self) {
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
        let shortage = &mut self.hub.shortage;
        shortage.next_retry = None;
        if shortage.listen_paused {
            shortage.listen_paused = false;
            if let Err(e) = epoll::modify(
                &self.hub.epoll,
                &self.hub.listener,
                EventData::new_u64(TOKEN_LISTEN),
                EventFlags::IN,
            ) {
                error!("cannot watch the listening socket again: {e}");
            }
        }
        self.drop_stuck();
        for (id, serial) in std::mem::take(&mut self.hub.shortage.held) {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.serial != serial || !peer.held {
                continue;
            }
            peer.held = false;
            self.hub.flush(id, peer);
        }
        let shortage = &mut self.hub.shortage;
        if !shortage.active() {
            if let Some(since) = shortage.since.take() {
                info!(
                    "the shortage is over after {:.1} s; writes to every peer resumed",
                    since.elapsed().as_secs_f64()
                );
            }
            for peer in self.peers.values_mut() {
                peer.unread_since = None;
            }
        }
    }

    /// During a shortage, at each retry: dooms the clients that have read
    /// nothing for [`STUCK_TIMEOUT`]. What is queued to a client counts
    /// against the server's descriptors in flight until it reads it or
    /// closes its socket; dropped, it gets nothing more, and sees end of
    /// file once it reads.
    fn drop_stuck(&mut self) {
        let now = Instant::now();
        for (&id, peer) in self.peers.iter_mut() {
            if peer.doomed {
                continue;
            }
            let q = match unread(&peer.sock) {
                Ok(q) => q,
                Err(e) => {
                    debug!("peer {id}: cannot query its unread output: {e}");
                    continue;
                }
            };
            // Writes only add to it; only the client's reading takes away.
            let reading = q == 0 || q < peer.unread;
            peer.unread = q;
            if reading {
                peer.unread_since = None;
                continue;
            }
            let since = *peer.unread_since.get_or_insert(now);
            let idle = now.saturating_duration_since(since);
            if idle >= STUCK_TIMEOUT {
                self.hub.doom(id, peer, DropReason::NotReading(idle));
            }
        }
    }

    fn accept_ready(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            match self.hub.listener.accept() {
                Ok((stream, _)) => self.add_peer(stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let errno = Errno::from_io_error(&e).unwrap_or(Errno::IO);
                    if errno == Errno::CONNABORTED {
                        continue;
                    }
                    if is_server_shortage(errno) {
                        self.shed_connection(errno);
                    } else {
                        error!("accept failed: {e}");
                    }
                    return;
                }
            }
        }
    }

    /// Out of resources: accept the pending connection with the reserve
    /// descriptor and close it, so that it does not wake the loop forever;
    /// without a reserve, stop watching the listening socket for a while.
    fn shed_connection(&mut self, err: Errno) {
        if self.reserve.take().is_some() {
            if let Ok((stream, _)) = self.hub.listener.accept() {
                drop(stream);
            }
            self.reserve = open_reserve();
            self.logs.refused.log(
                Instant::now(),
                format_args!(
                    "refused a connection: {err} ({}); {} peers connected",
                    explain_shortage(err),
                    self.peers.len()
                ),
            );
        } else {
            self.hub.pause_listening(err);
        }
    }

    fn add_peer(&mut self, stream: UnixStream) {
        if self.peers.len() >= self.hub.max_peers {
            self.logs.refused.log(
                Instant::now(),
                format_args!(
                    "refused a connection: {} peers connected, the most allowed (--max-peers)",
                    self.peers.len()
                ),
            );
            return;
        }
        let Some(id) = self.ids.alloc() else {
            self.logs.refused.log(
                Instant::now(),
                format_args!(
                    "refused a connection: all {} peer ids are in use",
                    IdAllocator::CAPACITY
                ),
            );
            return;
        };
        if let Err(e) = stream.set_nonblocking(true) {
            self.logs.refused.log(
                Instant::now(),
                format_args!("refused a connection: cannot make its socket non-blocking: {e}"),
            );
            self.ids.free(id);
            return;
        }
        if let Err(e) = sockopt::set_socket_send_buffer_size(&stream, SEND_BUFFER) {
            debug!("peer {id}: cannot set SO_SNDBUF: {e}");
        }
        let mut vectors = Vec::with_capacity(self.hub.vectors);
        for _ in 0..self.hub.vectors {
            match eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK) {
                Ok(fd) => vectors.push(fd),
                Err(e) => {
                    self.logs.refused.log(
                        Instant::now(),
                        format_args!("refused a connection: cannot create an eventfd: {e}"),
                    );
                    self.ids.free(id);
                    return;
                }
            }
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        // The handshake: every live peer's vectors, its own included.
        let backlog = (self.hub.live.len() + 1) * self.hub.vectors;
        let limit = backlog.saturating_add(self.hub.max_queue);
        let mut peer = Peer::new(stream, serial, backlog, limit);
        if let Err(e) = epoll::add(
            &self.hub.epoll,
            &peer.sock,
            EventData::new_u64(peer.token(id)),
            EventFlags::IN | EventFlags::RDHUP,
        ) {
            self.logs.refused.log(
                Instant::now(),
                format_args!("refused a connection: cannot watch its socket: {e}"),
            );
            self.ids.free(id);
            return;
        }
        self.hub.live.insert(serial, Live { id, vectors });

        // Tell the others: their cursors reach the new peer by themselves.
        for (&other_id, other) in self.peers.iter_mut() {
            if other.doomed {
                continue;
            }
            other.backlog += self.hub.vectors;
            // (Not while a shortage of the server's holds its writes back:
            // that is not its fault.)
            if other.backlog > other.limit && !other.held {
                let max = self.hub.max_queue;
                self.hub.doom(other_id, other, DropReason::QueueFull(max));
            } else if !other.waiting_out && !other.held {
                self.hub.flush(other_id, other);
            }
        }

        debug!("peer {id}: connection accepted, {backlog} descriptors to send");
        self.hub.flush(id, &mut peer);
        self.peers.insert(id, peer);
        let n = self.peers.len();
        self.logs.peers.log(
            Instant::now(),
            format_args!("peer {id} connected ({n} peers)"),
        );
    }

    fn peer_ready(&mut self, token: u64, flags: EventFlags) {
        let id = (token & 0xffff) as PeerId;
        let serial = token >> 16;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.serial != serial || peer.doomed {
            return; // an event for an earlier holder of this id
        }
        if flags.intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR)
        {
            let mut buf = [0u8; 64];
            let why = match rustix::io::read(&peer.sock, &mut buf) {
                Ok(0) | Err(Errno::CONNRESET) => Some(DropReason::Closed),
                Ok(n) => Some(DropReason::Data(n)),
                Err(Errno::AGAIN) | Err(Errno::INTR) => None,
                Err(e) => Some(DropReason::ReadError(e)),
            };
            if let Some(why) = why {
                return self.hub.doom(id, peer, why);
            }
        }
        if flags.contains(EventFlags::OUT) && !peer.held {
            self.hub.flush(id, peer);
        }
    }

    /// Drops doomed peers and tells the others, which may doom more.
    fn reap(&mut self) {
        while let Some((id, serial, reason)) = self.hub.dead.pop() {
            if self.peers.get(&id).is_none_or(|p| p.serial != serial) {
                continue;
            }
            let Some(peer) = self.peers.remove(&id) else {
                continue;
            };
            let _ = epoll::delete(&self.hub.epoll, &peer.sock);
            // Its eventfds close here: nothing else holds them.
            self.hub.live.remove(&serial);
            self.ids.free(id);
            let n = self.peers.len();
            let now = Instant::now();
            match reason {
                DropReason::Closed => self
                    .logs
                    .peers
                    .log(now, format_args!("peer {id} disconnected ({n} peers)")),
                r => self
                    .logs
                    .dropped
                    .log(now, format_args!("peer {id} dropped: {r} ({n} peers left)")),
            }
            drop(peer);
            let vectors = self.hub.vectors;
            for (&other_id, other) in self.peers.iter_mut() {
                if other.doomed {
                    continue;
                }
                // What of the departed peer's vectors never went out
                // needs no announcing, and none of them needs no leave.
                let untold = if !other.was_told(serial) {
                    vectors
                } else if other.cursor.serial == serial {
                    let untold = vectors - other.cursor.vector;
                    other.cursor = Cursor {
                        serial: serial + 1,
                        vector: 0,
                    };
                    untold
                } else {
                    0
                };
                other.backlog = other.backlog.saturating_sub(untold);
                if untold == vectors {
                    continue;
                }
                other.leaves.push_back(id);
                if !other.waiting_out {
                    // Also when held: a client that left may have returned
                    // the descriptors in flight to it.
                    self.hub.flush(other_id, other);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(serial: u64) -> (Peer, UnixStream) {
        let (sock, other) = UnixStream::pair().expect("socketpair");
        sock.set_nonblocking(true).expect("non-blocking");
        (Peer::new(sock, serial, 0, usize::MAX), other)
    }

    fn live(peers: &[(u64, PeerId, usize)]) -> BTreeMap<u64, Live> {
        peers
            .iter()
            .map(|&(serial, id, n)| {
                let vectors = (0..n)
                    .map(|_| eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd"))
                    .collect();
                (serial, Live { id, vectors })
            })
            .collect()
    }

    /// Values of the messages a peer would send, in order, without a
    /// socket: picks and advances until nothing is left.
    fn script(
        p: &mut Peer,
        id: PeerId,
        live: &BTreeMap<u64, Live>,
        shm: BorrowedFd<'_>,
    ) -> Vec<(i64, bool)> {
        let mut out = Vec::new();
        while let Some(pick) = p.pick(id, live, shm) {
            out.push((pick.value, pick.fd.is_some()));
            p.advance(pick.step);
        }
        out
    }

    #[test]
    fn handshake_then_later_joins_in_join_order() {
        let shm = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        // Peers 7 (serial 1) and 3 (serial 2) were there; 5 is us (serial
        // 3); 9 joined after us (serial 4).
        let l = live(&[(1, 7, 2), (2, 3, 2), (3, 5, 2), (4, 9, 2)]);
        let (mut p, _o) = peer(3);
        let got = script(&mut p, 5, &l, shm.as_fd());
        let want: Vec<(i64, bool)> = [(0, false), (5, false), (-1, true)]
            .into_iter()
            .chain([7, 7, 3, 3, 5, 5, 9, 9].map(|v| (v, true)))
            .collect();
        assert_eq!(got, want);
        assert!(p.handshake_done());
    }

    #[test]
    fn leaves_wait_for_the_handshake_and_for_a_half_sent_peer() {
        let shm = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let l = live(&[(1, 7, 2), (3, 5, 2), (4, 9, 2)]);
        let (mut p, _o) = peer(3);
        p.leaves.push_back(2);
        let got = script(&mut p, 5, &l, shm.as_fd());
        let values: Vec<i64> = got.iter().map(|m| m.0).collect();
        // Leave of 2 only after the own vectors; then the join of 9.
        assert_eq!(values, [0, 5, -1, 7, 7, 5, 5, 2, 9, 9]);

        // Half way through peer 9's vectors, a leave waits for the rest.
        let (mut p, _o) = peer(3);
        p.prefix_sent = 3;
        p.cursor = Cursor {
            serial: 4,
            vector: 1,
        };
        p.leaves.push_back(2);
        let values: Vec<i64> = script(&mut p, 5, &l, shm.as_fd())
            .iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(values, [9, 2]);
    }

    #[test]
    fn told_means_at_least_one_vector_went_out() {
        let (mut p, _o) = peer(3);
        p.cursor = Cursor {
            serial: 4,
            vector: 0,
        };
        assert!(p.was_told(3));
        assert!(!p.was_told(4));
        p.cursor.vector = 1;
        assert!(p.was_told(4));
        assert!(!p.was_told(5));
    }

    #[test]
    fn a_drained_list_of_leaves_gives_back_its_memory() {
        let shm = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let l = live(&[(1, 0, 1)]);
        let (mut p, other) = peer(1);
        p.prefix_sent = 3;
        p.cursor = Cursor {
            serial: 2,
            vector: 0,
        };
        // A burst: 4096 peers left at once.
        p.leaves.extend((1..=4096).map(|i| i as PeerId));
        assert!(p.leaves.capacity() >= 4096);
        let reader = std::thread::spawn(move || {
            let mut other = other;
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut other, &mut all).map(|_| all.len())
        });
        while p.flush(0, &l, shm.as_fd()).expect("flush") == Flow::Blocked {
            let mut fds = [rustix::event::PollFd::new(
                &p.sock,
                rustix::event::PollFlags::OUT,
            )];
            rustix::event::poll(&mut fds, None).expect("poll");
        }
        assert!(p.leaves.is_empty());
        assert!(
            p.leaves.capacity() <= IDLE_LEAVES_CAPACITY,
            "capacity {} kept after draining",
            p.leaves.capacity()
        );
        drop(p);
        let got = reader.join().expect("reader").expect("read");
        assert_eq!(got, 4096 * MSG_LEN);
    }
}
