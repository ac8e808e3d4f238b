//! A client of the ivshmem server: the handshake and later announcements.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::fs::fstat;
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::msg::{Message, MsgReader, wait_fd};
use crate::shm::SharedMemory;
use crate::{MAX_PEER_ID, PROTOCOL_VERSION, PeerId, SHM_MESSAGE};

/// How [`Client::connect_with`] reads the handshake.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The number of vectors the server gives each peer, if known.
    ///
    /// The protocol never states it. When other peers are connected it is
    /// the number of descriptors each of them came with; when this client is
    /// alone, the handshake is taken to end once no more of this client's
    /// own vectors arrive within [`ConnectOptions::settle`].
    pub vectors: Option<usize>,
    /// How long to wait for more own vectors when their number is unknown.
    pub settle: Duration,
    /// Limit for the whole handshake; `None` waits forever.
    pub timeout: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            vectors: None,
            settle: Duration::from_millis(100),
            timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// What an announcement from the server changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer's next vector: `vector` 0 means the peer just joined.
    PeerVector {
        /// The peer.
        peer: PeerId,
        /// The vector's index.
        vector: usize,
    },
    /// A peer left; its vectors' descriptors were closed.
    PeerLeft {
        /// The peer.
        peer: PeerId,
        /// How many vectors it had.
        vectors: usize,
    },
    /// One of this client's own vectors arrived after the handshake was
    /// considered complete (only when the vector count had to be guessed).
    OwnVector {
        /// The vector's index.
        vector: usize,
    },
}

/// A connected client: its id, the shared memory, its own vectors and those
/// of every other peer.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    reader: MsgReader,
    id: PeerId,
    shm: OwnedFd,
    shm_size: u64,
    vectors: Vec<OwnedFd>,
    peers: BTreeMap<PeerId, Vec<OwnedFd>>,
    pending: VecDeque<Message>,
}

fn peer_id(value: i64) -> Result<PeerId> {
    if (0..=i64::from(MAX_PEER_ID)).contains(&value) {
        Ok(value as PeerId)
    } else {
        Err(Error::InvalidId(value))
    }
}

impl Client {
    /// Connects to the server's socket at `path` and reads the handshake.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect_with(path, &ConnectOptions::default())
    }

    /// Like [`Client::connect`], with options.
    pub fn connect_with(path: impl AsRef<Path>, opts: &ConnectOptions) -> Result<Self> {
        let sock =
            UnixStream::connect(path).map_err(|e| Error::io("connecting to the server", e))?;
        Self::handshake(sock, opts)
    }

    /// Reads the handshake from an already connected stream.
    pub fn handshake(sock: UnixStream, opts: &ConnectOptions) -> Result<Self> {
        let deadline = opts.timeout.map(|t| Instant::now() + t);
        let mut reader = MsgReader::new();
        let mut recv = |deadline: Option<Instant>| -> Result<Option<Message>> {
            loop {
                if let Some(m) = reader.poll_msg(&sock)? {
                    return Ok(Some(m));
                }
                let ready = wait_fd(sock.as_fd(), PollFlags::IN, deadline)
                    .map_err(|e| Error::io("waiting for the server", e))?;
                if !ready {
                    return Ok(None);
                }
            }
        };

        // 1. Protocol version, without descriptor.
        let m = recv(deadline)?.ok_or(Error::Timeout("the protocol version"))?;
        if m.value != PROTOCOL_VERSION {
            return Err(Error::BadVersion(m.value));
        }
        if m.fd.is_some() {
            return Err(Error::UnexpectedFd {
                value: m.value,
                what: "protocol version",
            });
        }

        // 2. Our id, without descriptor.
        let m = recv(deadline)?.ok_or(Error::Timeout("this client's id"))?;
        let id = peer_id(m.value)?;
        if m.fd.is_some() {
            return Err(Error::UnexpectedFd {
                value: m.value,
                what: "client id",
            });
        }

        // 3. -1 with the shared memory.
        let m = recv(deadline)?.ok_or(Error::Timeout("the shared memory"))?;
        if m.value != SHM_MESSAGE {
            return Err(Error::ExpectedShm(m.value));
        }
        let shm = m.fd.ok_or(Error::MissingFd {
            value: m.value,
            what: "shared memory",
        })?;
        let shm_size = fstat(&shm)
            .map_err(|e| Error::io("fstat of the shared memory", e))?
            .st_size as u64;

        // 4. Other peers' vectors, then our own.
        let mut vectors = Vec::new();
        let mut peers: BTreeMap<PeerId, Vec<OwnedFd>> = BTreeMap::new();
        let mut pending = VecDeque::new();
        let mut expected = opts.vectors;
        loop {
            if expected.is_some_and(|n| vectors.len() >= n) {
                break;
            }
            let settling = expected.is_none() && !vectors.is_empty();
            let wait_until = if settling {
                let s = Instant::now() + opts.settle;
                Some(deadline.map_or(s, |d| d.min(s)))
            } else {
                deadline
            };
            let Some(m) = recv(wait_until)? else {
                if settling {
                    break;
                }
                return Err(Error::Timeout("this client's own vectors"));
            };
            match (m.value, m.fd) {
                (v, Some(fd)) if v == i64::from(id) => {
                    vectors.push(fd);
                    if expected.is_none() {
                        // Every peer already there came with all its vectors.
                        expected = peers.values().map(Vec::len).max();
                    }
                }
                (v, Some(fd)) if vectors.is_empty() && v != SHM_MESSAGE => {
                    peers.entry(peer_id(v)?).or_default().push(fd);
                }
                (value, fd) => {
                    // Not part of the handshake: an announcement.
                    pending.push_back(Message { value, fd });
                    break;
                }
            }
        }

        Ok(Self {
            sock,
            reader,
            id,
            shm,
            shm_size,
            vectors,
            peers,
            pending,
        })
    }

    /// This client's peer id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The shared memory descriptor.
    pub fn shm_fd(&self) -> BorrowedFd<'_> {
        self.shm.as_fd()
    }

    /// Size of the shared memory, from `fstat` of its descriptor.
    pub fn shm_size(&self) -> u64 {
        self.shm_size
    }

    /// Maps the shared memory.
    pub fn map_shared_memory(&self) -> Result<SharedMemory> {
        SharedMemory::map(&self.shm, self.shm_size)
    }

    /// This client's own vectors: the server signals them when a peer rings
    /// this client.
    pub fn vectors(&self) -> &[OwnedFd] {
        &self.vectors
    }

    /// The other peers and their vectors' descriptors.
    pub fn peers(&self) -> &BTreeMap<PeerId, Vec<OwnedFd>> {
        &self.peers
    }

    /// The socket, e.g. to wait for announcements with poll or epoll.
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Whether announcements are already buffered, so waiting on the socket
    /// could miss them: call [`Client::try_next_event`] first.
    pub fn has_buffered_events(&self) -> bool {
        !self.pending.is_empty()
    }

    fn apply(&mut self, m: Message) -> Result<Event> {
        if m.value == SHM_MESSAGE {
            return Err(Error::UnexpectedShm);
        }
        let peer = peer_id(m.value)?;
        match m.fd {
            Some(fd) if peer == self.id => {
                self.vectors.push(fd);
                Ok(Event::OwnVector {
                    vector: self.vectors.len() - 1,
                })
            }
            Some(fd) => {
                let v = self.peers.entry(peer).or_default();
                v.push(fd);
                Ok(Event::PeerVector {
                    peer,
                    vector: v.len() - 1,
                })
            }
            None if peer == self.id => Err(Error::OwnLeave(peer)),
            None => match self.peers.remove(&peer) {
                Some(v) => Ok(Event::PeerLeft {
                    peer,
                    vectors: v.len(),
                }),
                None => Err(Error::UnknownPeerLeft(peer)),
            },
        }
    }

    /// Processes the next announcement without blocking; `Ok(None)` when
    /// none is available. [`Error::Closed`] means the server went away.
    pub fn try_next_event(&mut self) -> Result<Option<Event>> {
        if let Some(m) = self.pending.pop_front() {
            return self.apply(m).map(Some);
        }
        match self.reader.poll_msg(&self.sock)? {
            Some(m) => self.apply(m).map(Some),
            None => Ok(None),
        }
    }

    /// Waits up to `timeout` (forever if `None`) for the next announcement.
    pub fn next_event_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(e) = self.try_next_event()? {
                return Ok(Some(e));
            }
            let ready = wait_fd(self.sock.as_fd(), PollFlags::IN, deadline)
                .map_err(|e| Error::io("waiting for the server", e))?;
            if !ready {
                return Ok(None);
            }
        }
    }

    /// Waits for the next announcement.
    pub fn next_event(&mut self) -> Result<Event> {
        loop {
            if let Some(e) = self.next_event_timeout(None)? {
                return Ok(e);
            }
        }
    }

    fn vector_fd(&self, peer: PeerId, vector: usize) -> Result<BorrowedFd<'_>> {
        let v = if peer == self.id {
            &self.vectors
        } else {
            self.peers.get(&peer).ok_or(Error::NoSuchPeer(peer))?
        };
        v.get(vector)
            .map(|fd| fd.as_fd())
            .ok_or(Error::NoSuchVector {
                peer,
                vector,
                count: v.len(),
            })
    }

    /// Rings `vector` of `peer` (this client's own id rings itself).
    pub fn ring(&self, peer: PeerId, vector: usize) -> Result<()> {
        ring_eventfd(self.vector_fd(peer, vector)?)
    }

    /// Rings every vector of `peer`; returns how many.
    pub fn ring_all_vectors(&self, peer: PeerId) -> Result<usize> {
        let count = if peer == self.id {
            self.vectors.len()
        } else {
            self.peers.get(&peer).ok_or(Error::NoSuchPeer(peer))?.len()
        };
        for v in 0..count {
            self.ring(peer, v)?;
        }
        Ok(count)
    }

    /// Rings every vector of every other peer; returns how many were rung.
    pub fn ring_all(&self) -> Result<usize> {
        let mut n = 0;
        for fds in self.peers.values() {
            for fd in fds {
                ring_eventfd(fd.as_fd())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Reads and clears one of this client's own vectors without blocking:
    /// how many times it was rung since the last read, or `None` if not.
    pub fn take_notifications(&self, vector: usize) -> Result<Option<u64>> {
        let fd = self.vector_fd(self.id, vector)?;
        try_read_eventfd(fd).map_err(|e| Error::io("reading an eventfd", e))
    }
}

/// Rings an eventfd: adds 1 to its counter.
pub fn ring_eventfd(fd: BorrowedFd<'_>) -> Result<()> {
    loop {
        match rustix::io::write(fd, &1u64.to_ne_bytes()) {
            Ok(8) => return Ok(()),
            Ok(_) => {
                return Err(Error::io(
                    "ringing an eventfd",
                    std::io::Error::from(std::io::ErrorKind::WriteZero),
                ));
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(Error::io("ringing an eventfd", e)),
        }
    }
}

/// Reads an eventfd's counter without blocking, whether or not the
/// descriptor is in non-blocking mode (a flag shared by every process that
/// holds it, and which QEMU sets). `Ok(None)` when the counter is zero.
pub fn try_read_eventfd(fd: BorrowedFd<'_>) -> std::io::Result<Option<u64>> {
    loop {
        let ready = wait_fd(fd, PollFlags::IN, Some(Instant::now()))?;
        if !ready {
            return Ok(None);
        }
        let mut buf = [0u8; 8];
        match rustix::io::read(fd, &mut buf) {
            Ok(8) => return Ok(Some(u64::from_ne_bytes(buf))),
            Ok(n) => {
                return Err(std::io::Error::other(format!(
                    "short read of {n} bytes from an eventfd"
                )));
            }
            // Someone else read it between poll and read.
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{send_msg, send_part};
    use rustix::event::{EventfdFlags, eventfd};
    use rustix::fs::{MemfdFlags, ftruncate, memfd_create};

    fn efd() -> OwnedFd {
        eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()
    }

    fn shm(size: u64) -> OwnedFd {
        let fd = memfd_create("ivshmem-proto-test", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&fd, size).unwrap();
        fd
    }

    fn opts() -> ConnectOptions {
        ConnectOptions {
            timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        }
    }

    /// Sends the first three handshake messages.
    fn preamble(s: &UnixStream, id: i64, shm_fd: &OwnedFd) {
        send_msg(s, 0, None).unwrap();
        send_msg(s, id, None).unwrap();
        send_msg(s, -1, Some(shm_fd.as_fd())).unwrap();
    }

    #[test]
    fn full_handshake_with_peers_and_events() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let mem = shm(1 << 20);
        preamble(&srv, 5, &mem);
        // Peers 1 and 3, two vectors each, then our own two.
        let fds: Vec<OwnedFd> = (0..6).map(|_| efd()).collect();
        for (i, id) in [1, 1, 3, 3, 5, 5].into_iter().enumerate() {
            send_msg(&srv, id, Some(fds[i].as_fd())).unwrap();
        }
        // A later join of peer 7 (2 vectors) and the leave of peer 1.
        let more: Vec<OwnedFd> = (0..2).map(|_| efd()).collect();
        send_msg(&srv, 7, Some(more[0].as_fd())).unwrap();
        send_msg(&srv, 7, Some(more[1].as_fd())).unwrap();
        send_msg(&srv, 1, None).unwrap();

        let mut c = Client::handshake(cli, &opts()).unwrap();
        assert_eq!(c.id(), 5);
        assert_eq!(c.shm_size(), 1 << 20);
        assert_eq!(c.vectors().len(), 2);
        assert_eq!(c.peers().keys().copied().collect::<Vec<_>>(), [1, 3]);
        assert!(c.peers().values().all(|v| v.len() == 2));

        assert_eq!(
            c.next_event().unwrap(),
            Event::PeerVector { peer: 7, vector: 0 }
        );
        assert_eq!(
            c.next_event().unwrap(),
            Event::PeerVector { peer: 7, vector: 1 }
        );
        assert_eq!(
            c.next_event().unwrap(),
            Event::PeerLeft {
                peer: 1,
                vectors: 2
            }
        );
        assert_eq!(c.peers().keys().copied().collect::<Vec<_>>(), [3, 7]);
        assert_eq!(c.try_next_event().unwrap(), None);

        // Ringing peer 3 vector 1 reaches the eventfd the "server" holds.
        c.ring(3, 1).unwrap();
        assert_eq!(try_read_eventfd(fds[3].as_fd()).unwrap(), Some(1));
        assert_eq!(try_read_eventfd(fds[2].as_fd()).unwrap(), None);
        assert!(matches!(c.ring(3, 2), Err(Error::NoSuchVector { .. })));
        assert!(matches!(c.ring(9, 0), Err(Error::NoSuchPeer(9))));

        // Our own vector 0 is the "server's" fds[4].
        ring_eventfd(fds[4].as_fd()).unwrap();
        ring_eventfd(fds[4].as_fd()).unwrap();
        assert_eq!(c.take_notifications(0).unwrap(), Some(2));
        assert_eq!(c.take_notifications(0).unwrap(), None);

        drop(srv);
        assert!(matches!(c.next_event(), Err(Error::Closed)));
    }

    #[test]
    fn alone_handshake_settles_and_late_vector_is_an_event() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let mem = shm(4096);
        preamble(&srv, 0, &mem);
        let own = [efd(), efd()];
        send_msg(&srv, 0, Some(own[0].as_fd())).unwrap();
        let o = ConnectOptions {
            settle: Duration::from_millis(50),
            ..opts()
        };
        let mut c = Client::handshake(cli, &o).unwrap();
        assert_eq!(c.vectors().len(), 1);
        assert!(!c.has_buffered_events());
        send_msg(&srv, 0, Some(own[1].as_fd())).unwrap();
        assert_eq!(c.next_event().unwrap(), Event::OwnVector { vector: 1 });
    }

    #[test]
    fn join_that_ends_a_settling_handshake_is_buffered() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let mem = shm(4096);
        preamble(&srv, 0, &mem);
        let (own, other) = (efd(), efd());
        send_msg(&srv, 0, Some(own.as_fd())).unwrap();
        send_msg(&srv, 1, Some(other.as_fd())).unwrap();
        let mut c = Client::handshake(cli, &opts()).unwrap();
        assert_eq!(c.vectors().len(), 1);
        assert!(c.peers().is_empty());
        assert!(c.has_buffered_events());
        assert_eq!(
            c.try_next_event().unwrap(),
            Some(Event::PeerVector { peer: 1, vector: 0 })
        );
        assert!(!c.has_buffered_events());
    }

    #[test]
    fn known_vector_count_needs_no_settling() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let mem = shm(4096);
        preamble(&srv, 2, &mem);
        let own = efd();
        send_msg(&srv, 2, Some(own.as_fd())).unwrap();
        let o = ConnectOptions {
            vectors: Some(1),
            settle: Duration::from_secs(100),
            ..opts()
        };
        let t = Instant::now();
        let c = Client::handshake(cli, &o).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(c.vectors().len(), 1);
    }

    #[test]
    fn bad_version() {
        let (srv, cli) = UnixStream::pair().unwrap();
        send_msg(&srv, 1, None).unwrap();
        assert!(matches!(
            Client::handshake(cli, &opts()),
            Err(Error::BadVersion(1))
        ));
    }

    #[test]
    fn version_with_fd() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let e = efd();
        send_msg(&srv, 0, Some(e.as_fd())).unwrap();
        assert!(matches!(
            Client::handshake(cli, &opts()),
            Err(Error::UnexpectedFd { value: 0, .. })
        ));
    }

    #[test]
    fn id_with_fd_and_invalid_ids() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let e = efd();
        send_msg(&srv, 0, None).unwrap();
        send_msg(&srv, 3, Some(e.as_fd())).unwrap();
        assert!(matches!(
            Client::handshake(cli, &opts()),
            Err(Error::UnexpectedFd { value: 3, .. })
        ));
        for bad in [-1, -2, 65536, i64::MAX] {
            let (srv, cli) = UnixStream::pair().unwrap();
            send_msg(&srv, 0, None).unwrap();
            send_msg(&srv, bad, None).unwrap();
            match Client::handshake(cli, &opts()) {
                Err(Error::InvalidId(v)) => assert_eq!(v, bad),
                other => panic!("id {bad}: expected InvalidId, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_shm_fd() {
        let (srv, cli) = UnixStream::pair().unwrap();
        send_msg(&srv, 0, None).unwrap();
        send_msg(&srv, 0, None).unwrap();
        send_msg(&srv, -1, None).unwrap();
        assert!(matches!(
            Client::handshake(cli, &opts()),
            Err(Error::MissingFd { value: -1, .. })
        ));
    }

    #[test]
    fn shm_message_out_of_place() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let e = efd();
        send_msg(&srv, 0, None).unwrap();
        send_msg(&srv, 0, None).unwrap();
        send_msg(&srv, 4, Some(e.as_fd())).unwrap();
        assert!(matches!(
            Client::handshake(cli, &opts()),
            Err(Error::ExpectedShm(4))
        ));
    }

    #[test]
    fn truncated_handshakes() {
        // Closed after the version, in the middle of the id, after the shm.
        let (srv, cli) = UnixStream::pair().unwrap();
        send_msg(&srv, 0, None).unwrap();
        drop(srv);
        assert!(matches!(
            Client::handshake(cli, &opts()),
            Err(Error::Closed)
        ));

        let (srv, cli) = UnixStream::pair().unwrap();
        send_msg(&srv, 0, None).unwrap();
        send_part(srv.as_fd(), &[1, 0, 0], None, false).unwrap();
        drop(srv);
        assert!(matches!(
            Client::handshake(cli, &opts()),
            Err(Error::Truncated { got: 3 })
        ));

        let (srv, cli) = UnixStream::pair().unwrap();
        let mem = shm(4096);
        preamble(&srv, 0, &mem);
        drop(srv);
        assert!(matches!(
            Client::handshake(cli, &opts()),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn handshake_timeout() {
        let (srv, cli) = UnixStream::pair().unwrap();
        send_msg(&srv, 0, None).unwrap();
        let o = ConnectOptions {
            timeout: Some(Duration::from_millis(50)),
            ..opts()
        };
        assert!(matches!(Client::handshake(cli, &o), Err(Error::Timeout(_))));
        drop(srv);
    }

    #[test]
    fn malformed_announcements() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let mem = shm(4096);
        preamble(&srv, 0, &mem);
        let own = efd();
        send_msg(&srv, 0, Some(own.as_fd())).unwrap();
        let mut c = Client::handshake(
            cli,
            &ConnectOptions {
                vectors: Some(1),
                ..opts()
            },
        )
        .unwrap();
        send_msg(&srv, 9, None).unwrap();
        assert!(matches!(c.next_event(), Err(Error::UnknownPeerLeft(9))));
        send_msg(&srv, 0, None).unwrap();
        assert!(matches!(c.next_event(), Err(Error::OwnLeave(0))));
        send_msg(&srv, -1, Some(mem.as_fd())).unwrap();
        assert!(matches!(c.next_event(), Err(Error::UnexpectedShm)));
        send_msg(&srv, -7, None).unwrap();
        assert!(matches!(c.next_event(), Err(Error::InvalidId(-7))));
        // The stream is still usable after those.
        let e = efd();
        send_msg(&srv, 4, Some(e.as_fd())).unwrap();
        assert_eq!(
            c.next_event().unwrap(),
            Event::PeerVector { peer: 4, vector: 0 }
        );
        // A message cut short by the server's death.
        send_part(srv.as_fd(), &[4, 0], None, false).unwrap();
        drop(srv);
        assert!(matches!(c.next_event(), Err(Error::Truncated { got: 2 })));
    }

    #[test]
    fn leave_right_after_handshake_is_kept_for_later() {
        let (srv, cli) = UnixStream::pair().unwrap();
        let mem = shm(4096);
        preamble(&srv, 1, &mem);
        let (p, own) = (efd(), efd());
        send_msg(&srv, 0, Some(p.as_fd())).unwrap();
        send_msg(&srv, 1, Some(own.as_fd())).unwrap();
        send_msg(&srv, 0, None).unwrap();
        let mut c = Client::handshake(cli, &opts()).unwrap();
        assert_eq!(c.peers().len(), 1);
        assert_eq!(
            c.try_next_event().unwrap(),
            Some(Event::PeerLeft {
                peer: 0,
                vectors: 1
            })
        );
        assert!(c.peers().is_empty());
    }
}
