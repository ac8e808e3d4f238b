//! The event loop: accepting peers, handing out eventfds, announcing joins
//! and leaves, and queueing output per client.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;

use anyhow::{Context, Result};
use ivshmem_proto::{MSG_LEN, PROTOCOL_VERSION, PeerId, SHM_MESSAGE, send_part};
use log::{debug, error, info, warn};
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;

use crate::ids::IdAllocator;

const TOKEN_LISTEN: u64 = 0;
const TOKEN_STOP: u64 = 1;
/// Accepts per wake-up, so that a flood of connections cannot starve the
/// peers already connected.
const ACCEPT_BATCH: usize = 64;

/// One queued message.
#[derive(Debug)]
struct Out {
    value: i64,
    fd: Option<Rc<OwnedFd>>,
}

/// Why a peer is dropped.
#[derive(Debug, Clone, Copy)]
enum DropReason {
    Closed,
    Data(usize),
    ReadError(Errno),
    SendError(Errno),
    QueueFull(usize),
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
                "output queue exceeded {n} messages (the client is not reading its socket)"
            ),
        }
    }
}

#[derive(Debug)]
struct Peer {
    sock: UnixStream,
    serial: u64,
    vectors: Vec<Rc<OwnedFd>>,
    queue: VecDeque<Out>,
    /// Bytes of the queue's first message already sent.
    sent: usize,
    limit: usize,
    /// EPOLLOUT is registered: the socket buffer was full.
    waiting_out: bool,
    /// Will be dropped at the next reap.
    doomed: bool,
}

impl Peer {
    fn token(&self, id: PeerId) -> u64 {
        (self.serial << 16) | u64::from(id)
    }

    /// Queues a message; false if that overflows the queue.
    fn push(&mut self, value: i64, fd: Option<Rc<OwnedFd>>) -> bool {
        self.queue.push_back(Out { value, fd });
        self.queue.len() <= self.limit
    }

    /// Sends what the socket takes; returns whether data is left over.
    fn flush(&mut self) -> Result<bool, Errno> {
        while let Some(front) = self.queue.front() {
            let bytes = front.value.to_le_bytes();
            // The descriptor rides on the first byte of its message.
            let fd = if self.sent == 0 {
                front.fd.as_deref().map(AsFd::as_fd)
            } else {
                None
            };
            match send_part(self.sock.as_fd(), &bytes[self.sent..], fd, true) {
                Ok(0) => return Err(Errno::IO),
                Ok(n) => {
                    self.sent += n;
                    if self.sent >= MSG_LEN {
                        self.queue.pop_front();
                        self.sent = 0;
                    }
                }
                Err(Errno::AGAIN) => return Ok(true),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        // Drained: give back what a burst (a handshake: every peer's
        // eventfds) made the queue grow to. Keeping it cost about 40 KiB
        // per peer with 4096 peers, 171 MiB in all (make bench).
        if self.queue.capacity() > IDLE_QUEUE_CAPACITY {
            self.queue.shrink_to(IDLE_QUEUE_CAPACITY);
        }
        Ok(false)
    }
}

/// The capacity a peer's empty output queue keeps: room for a few peers
/// joining at once without reallocating.
const IDLE_QUEUE_CAPACITY: usize = 64;

/// The ivshmem server's state.
#[derive(Debug)]
pub struct Server {
    epoll: OwnedFd,
    listener: UnixListener,
    shm: Rc<OwnedFd>,
    vectors: usize,
    max_queue: usize,
    peers: BTreeMap<PeerId, Peer>,
    ids: IdAllocator,
    next_serial: u64,
    /// A spare descriptor, given up to accept-and-close a connection when
    /// the process is out of descriptors (otherwise the pending connection
    /// would wake the loop forever).
    reserve: Option<OwnedFd>,
    dead: Vec<(PeerId, u64, DropReason)>,
}

fn open_reserve() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

impl Server {
    /// A server handing out `shm`, with `vectors` eventfds per peer, that
    /// drops a client whose queue grows `max_queue` messages beyond its
    /// handshake. `listener` must be non-blocking.
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
            epoll,
            listener,
            shm: Rc::new(shm),
            vectors,
            max_queue,
            peers: BTreeMap::new(),
            ids: IdAllocator::new(),
            next_serial: 1,
            reserve: open_reserve(),
            dead: Vec::new(),
        })
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Serves until `stop` becomes readable (or hangs up).
    pub fn run(&mut self, stop: BorrowedFd<'_>) -> Result<()> {
        epoll::add(
            &self.epoll,
            stop,
            EventData::new_u64(TOKEN_STOP),
            EventFlags::IN,
        )
        .context("cannot watch the stop descriptor")?;
        let mut events = Vec::with_capacity(256);
        loop {
            events.clear();
            match epoll::wait(&self.epoll, spare_capacity(&mut events), None) {
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
                        let _ = epoll::delete(&self.epoll, stop);
                        return Ok(());
                    }
                    token => self.peer_ready(token, flags),
                }
                self.reap();
            }
        }
    }

    fn accept_ready(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_peer(stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(Errno::CONNABORTED.raw_os_error()) => {}
                Err(e)
                    if e.raw_os_error() == Some(Errno::MFILE.raw_os_error())
                        || e.raw_os_error() == Some(Errno::NFILE.raw_os_error()) =>
                {
                    self.shed_connection(&e);
                    return;
                }
                Err(e) => {
                    error!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Out of descriptors: accept the pending connection with the reserve
    /// descriptor and close it, so it does not wake the loop forever.
    fn shed_connection(&mut self, err: &std::io::Error) {
        if self.reserve.take().is_some() {
            if let Ok((stream, _)) = self.listener.accept() {
                drop(stream);
            }
            self.reserve = open_reserve();
        }
        warn!(
            "refused a connection: out of file descriptors ({err}); {} peers connected",
            self.peers.len()
        );
    }

    fn add_peer(&mut self, stream: UnixStream) {
        let Some(id) = self.ids.alloc() else {
            warn!(
                "refused a connection: all {} peer ids are in use",
                IdAllocator::CAPACITY
            );
            return;
        };
        if let Err(e) = stream.set_nonblocking(true) {
            warn!("refused a connection: cannot make its socket non-blocking: {e}");
            self.ids.free(id);
            return;
        }
        let mut vectors = Vec::with_capacity(self.vectors);
        for _ in 0..self.vectors {
            match eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK) {
                Ok(fd) => vectors.push(Rc::new(fd)),
                Err(e) => {
                    warn!("refused a connection: cannot create an eventfd: {e}");
                    self.ids.free(id);
                    return;
                }
            }
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let mut peer = Peer {
            sock: stream,
            serial,
            vectors,
            queue: VecDeque::new(),
            sent: 0,
            limit: usize::MAX,
            waiting_out: false,
            doomed: false,
        };
        if let Err(e) = epoll::add(
            &self.epoll,
            &peer.sock,
            EventData::new_u64(peer.token(id)),
            EventFlags::IN | EventFlags::RDHUP,
        ) {
            warn!("refused a connection: cannot watch its socket: {e}");
            self.ids.free(id);
            return;
        }

        // The handshake: version, id, shared memory, the others' vectors,
        // then its own.
        peer.push(PROTOCOL_VERSION, None);
        peer.push(i64::from(id), None);
        peer.push(SHM_MESSAGE, Some(self.shm.clone()));
        for (&other_id, other) in &self.peers {
            for fd in &other.vectors {
                peer.push(i64::from(other_id), Some(fd.clone()));
            }
        }
        for fd in peer.vectors.clone() {
            peer.push(i64::from(id), Some(fd));
        }
        peer.limit = peer.queue.len().saturating_add(self.max_queue);

        // Tell the others.
        for (&other_id, other) in self.peers.iter_mut() {
            if other.doomed {
                continue;
            }
            let mut fits = true;
            for fd in &peer.vectors {
                fits &= other.push(i64::from(id), Some(fd.clone()));
            }
            if !fits {
                doom(
                    &mut self.dead,
                    other_id,
                    other,
                    DropReason::QueueFull(other.limit),
                );
            } else if !other.waiting_out {
                flush_peer(&self.epoll, &mut self.dead, other_id, other);
            }
        }

        debug!(
            "peer {id}: connection accepted, {} handshake messages queued",
            peer.queue.len()
        );
        flush_peer(&self.epoll, &mut self.dead, id, &mut peer);
        self.peers.insert(id, peer);
        info!("peer {id} connected ({} peers)", self.peers.len());
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
            match rustix::io::read(&peer.sock, &mut buf) {
                Ok(0) => return doom(&mut self.dead, id, peer, DropReason::Closed),
                Ok(n) => return doom(&mut self.dead, id, peer, DropReason::Data(n)),
                Err(Errno::AGAIN) | Err(Errno::INTR) => {}
                Err(Errno::CONNRESET) => {
                    return doom(&mut self.dead, id, peer, DropReason::Closed);
                }
                Err(e) => return doom(&mut self.dead, id, peer, DropReason::ReadError(e)),
            }
        }
        if flags.contains(EventFlags::OUT) {
            flush_peer(&self.epoll, &mut self.dead, id, peer);
        }
    }

    /// Drops doomed peers and tells the others, which may doom more.
    fn reap(&mut self) {
        while let Some((id, serial, reason)) = self.dead.pop() {
            if self.peers.get(&id).is_none_or(|p| p.serial != serial) {
                continue;
            }
            let Some(peer) = self.peers.remove(&id) else {
                continue;
            };
            let _ = epoll::delete(&self.epoll, &peer.sock);
            self.ids.free(id);
            match reason {
                DropReason::Closed => info!("peer {id} disconnected ({} peers)", self.peers.len()),
                r => warn!("peer {id} dropped: {r} ({} peers left)", self.peers.len()),
            }
            if !peer.queue.is_empty() {
                debug!("peer {id}: {} unsent messages discarded", peer.queue.len());
            }
            drop(peer);
            for (&other_id, other) in self.peers.iter_mut() {
                if other.doomed {
                    continue;
                }
                if !other.push(i64::from(id), None) {
                    doom(
                        &mut self.dead,
                        other_id,
                        other,
                        DropReason::QueueFull(other.limit),
                    );
                } else if !other.waiting_out {
                    flush_peer(&self.epoll, &mut self.dead, other_id, other);
                }
            }
        }
    }
}

fn doom(dead: &mut Vec<(PeerId, u64, DropReason)>, id: PeerId, peer: &mut Peer, why: DropReason) {
    if !peer.doomed {
        peer.doomed = true;
        dead.push((id, peer.serial, why));
    }
}

/// Sends what can be sent and watches for room when the socket is full.
fn flush_peer(
    epoll_fd: &OwnedFd,
    dead: &mut Vec<(PeerId, u64, DropReason)>,
    id: PeerId,
    peer: &mut Peer,
) {
    if peer.doomed {
        return;
    }
    match peer.flush() {
        Ok(blocked) => {
            if blocked != peer.waiting_out {
                let mut flags = EventFlags::IN | EventFlags::RDHUP;
                if blocked {
                    flags |= EventFlags::OUT;
                    debug!(
                        "peer {id}: socket full, {} messages queued",
                        peer.queue.len()
                    );
                } else {
                    debug!("peer {id}: queue drained");
                }
                if let Err(e) = epoll::modify(
                    epoll_fd,
                    &peer.sock,
                    EventData::new_u64(peer.token(id)),
                    flags,
                ) {
                    return doom(dead, id, peer, DropReason::SendError(e));
                }
                peer.waiting_out = blocked;
            }
        }
        Err(e) => doom(dead, id, peer, DropReason::SendError(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_queue_gives_back_its_memory() {
        let (sock, other) = UnixStream::pair().expect("socketpair");
        sock.set_nonblocking(true).expect("non-blocking");
        let mut peer = Peer {
            sock,
            serial: 0,
            vectors: Vec::new(),
            queue: VecDeque::new(),
            sent: 0,
            limit: usize::MAX,
            waiting_out: false,
            doomed: false,
        };
        // A handshake-sized burst: 4096 peers with one vector each.
        for i in 0..4096 {
            assert!(peer.push(i, None));
        }
        assert!(peer.queue.capacity() >= 4096);
        // The client reads everything; the server flushes whenever its
        // socket has room, as its event loop does on EPOLLOUT.
        let reader = std::thread::spawn(move || {
            let mut other = other;
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut other, &mut all).map(|_| all.len())
        });
        while peer.flush().expect("flush") {
            let mut fds = [rustix::event::PollFd::new(
                &peer.sock,
                rustix::event::PollFlags::OUT,
            )];
            rustix::event::poll(&mut fds, None).expect("poll");
        }
        assert!(peer.queue.is_empty());
        assert!(
            peer.queue.capacity() <= IDLE_QUEUE_CAPACITY,
            "capacity {} kept after draining",
            peer.queue.capacity()
        );
        drop(peer);
        let got = reader.join().expect("reader").expect("read");
        assert_eq!(got, 4096 * MSG_LEN);
    }
}
