//! The wire format: one little-endian `i64` per message, optionally with one
//! file descriptor passed as `SCM_RIGHTS` on the first byte of the message.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

use crate::error::{Error, Result};

/// Length of one message on the wire.
pub const MSG_LEN: usize = 8;

/// How many descriptors one read makes room for. The protocol never sends
/// more than one per message; room for a few more lets us see (and reject)
/// a stream that does, instead of having the kernel silently drop them.
const RECV_FDS: usize = 4;

/// One decoded message.
#[derive(Debug)]
pub struct Message {
    /// The value: a protocol version, a peer id, or -1 for shared memory.
    pub value: i64,
    /// The descriptor that came with it, if any.
    pub fd: Option<OwnedFd>,
}

/// Sends part of a message: `bytes` with `fd` attached, if any.
///
/// Use this with `fd` only for the first part of a message: the receiver
/// attributes the descriptor to the message whose bytes it arrives with.
/// Never raises `SIGPIPE`. With `nonblocking`, the call fails with
/// [`Errno::AGAIN`] instead of waiting for room in the socket buffer.
///
/// Returns how many bytes were sent; on a stream socket the descriptor was
/// sent if and only if this is at least 1.
pub fn send_part(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
    nonblocking: bool,
) -> rustix::io::Result<usize> {
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    let iov = [IoSlice::new(bytes)];
    let fds;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if let Some(fd) = fd {
        fds = [fd];
        let pushed = control.push(SendAncillaryMessage::ScmRights(&fds));
        debug_assert!(pushed, "control buffer sized for one descriptor");
    }
    sendmsg(sock, &iov, &mut control, flags)
}

/// Sends one whole message, waiting for room in the socket buffer if needed
/// (also on a non-blocking socket).
pub fn send_msg(sock: impl AsFd, value: i64, fd: Option<BorrowedFd<'_>>) -> Result<()> {
    let sock = sock.as_fd();
    let bytes = value.to_le_bytes();
    let mut sent = 0;
    while sent < MSG_LEN {
        // The descriptor goes with the first byte sent.
        let attach = if sent == 0 { fd } else { None };
        match send_part(sock, &bytes[sent..], attach, false) {
            Ok(0) => {
                return Err(Error::io(
                    "sending a message",
                    std::io::Error::from(std::io::ErrorKind::WriteZero),
                ));
            }
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => wait_fd(sock, PollFlags::OUT, None)
                .map_err(|e| Error::io("waiting to send a message", e))
                .map(drop)?,
            Err(e) => return Err(Error::io("sending a message", e)),
        }
    }
    Ok(())
}

/// Waits until `fd` is ready for `flags` or until `deadline`. Returns false
/// on timeout.
pub(crate) fn wait_fd(
    fd: BorrowedFd<'_>,
    flags: PollFlags,
    deadline: Option<Instant>,
) -> rustix::io::Result<bool> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                Some(Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                }))
            }
        };
        let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One `recvmsg` into `buf`; returns the byte count, the descriptors that
/// came along and whether the kernel truncated the control data.
fn recv_part(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> rustix::io::Result<(usize, Vec<OwnedFd>, bool)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(RECV_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let r = recvmsg(sock, &mut iov, &mut control, flags)?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    Ok((r.bytes, fds, r.flags.contains(ReturnFlags::CTRUNC)))
}

/// Incremental decoder for one stream: keeps the bytes and descriptor of a
/// message that arrived in pieces, so it works on non-blocking sockets.
///
/// It never reads past the end of the current message, so a descriptor is
/// always attributed to the message it was sent with, even when the sender
/// split the message or the kernel delivered it in pieces.
#[derive(Debug, Default)]
pub struct MsgReader {
    buf: [u8; MSG_LEN],
    filled: usize,
    fd: Option<OwnedFd>,
}

impl MsgReader {
    /// A reader at a message boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether part of a message has been read.
    pub fn is_partial(&self) -> bool {
        self.filled > 0 || self.fd.is_some()
    }

    /// Reads without blocking (whatever the socket's mode); `Ok(None)` means
    /// no complete message is available yet.
    pub fn poll_msg(&mut self, sock: impl AsFd) -> Result<Option<Message>> {
        self.read(sock.as_fd(), true)
    }

    /// Reads one complete message, blocking until it arrives (also on a
    /// non-blocking socket).
    pub fn read_msg(&mut self, sock: impl AsFd) -> Result<Message> {
        let sock = sock.as_fd();
        loop {
            if let Some(m) = self.read(sock, false)? {
                return Ok(m);
            }
            wait_fd(sock, PollFlags::IN, None)
                .map_err(|e| Error::io("waiting for a message", e))?;
        }
    }

    fn read(&mut self, sock: BorrowedFd<'_>, nonblocking: bool) -> Result<Option<Message>> {
        while self.filled < MSG_LEN {
            let (n, fds, truncated) =
                match recv_part(sock, &mut self.buf[self.filled..], nonblocking) {
                    Ok(r) => r,
                    Err(Errno::INTR) => continue,
                    Err(Errno::AGAIN) => return Ok(None),
                    Err(e) => return Err(Error::io("receiving a message", e)),
                };
            if truncated {
                self.reset();
                return Err(Error::ControlTruncated);
            }
            for fd in fds {
                if self.fd.replace(fd).is_some() {
                    self.reset();
                    return Err(Error::ExtraFd);
                }
            }
            if n == 0 {
                let got = self.filled;
                self.reset();
                return Err(if got == 0 {
                    Error::Closed
                } else {
                    Error::Truncated { got }
                });
            }
            self.filled += n;
        }
        let value = i64::from_le_bytes(self.buf);
        let fd = self.fd.take();
        self.filled = 0;
        Ok(Some(Message { value, fd }))
    }

    fn reset(&mut self) {
        self.filled = 0;
        self.fd = None;
    }
}

/// Reads one complete message, blocking until it arrives.
///
/// A message that arrives in pieces is put back together. A descriptor that
/// arrives with any piece of the message belongs to it. Fails with
/// [`Error::Closed`] on end of stream between messages and with
/// [`Error::Truncated`] on end of stream inside one.
pub fn recv_msg(sock: impl AsFd) -> Result<(i64, Option<OwnedFd>)> {
    let m = MsgReader::new().read_msg(sock)?;
    Ok((m.value, m.fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::{EventfdFlags, eventfd};
    use rustix::fs::fstat;
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
    }

    fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
        let (a, b) = (fstat(a).unwrap(), fstat(b).unwrap());
        a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    #[test]
    fn roundtrip_with_and_without_fd() {
        let (a, b) = pair();
        let efd = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        send_msg(&a, 0, None).unwrap();
        send_msg(&a, -1, Some(efd.as_fd())).unwrap();
        send_msg(&a, 65535, None).unwrap();
        send_msg(&a, i64::MIN, None).unwrap();
        assert!(matches!(recv_msg(&b).unwrap(), (0, None)));
        let (v, fd) = recv_msg(&b).unwrap();
        assert_eq!(v, -1);
        assert!(same_file(&fd.unwrap(), &efd));
        assert!(matches!(recv_msg(&b).unwrap(), (65535, None)));
        assert!(matches!(recv_msg(&b).unwrap(), (i64::MIN, None)));
        drop(a);
        assert!(matches!(recv_msg(&b), Err(Error::Closed)));
    }

    #[test]
    fn encoding_is_little_endian() {
        let (a, b) = pair();
        send_msg(&a, 0x0102_0304_0506_0708, None).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(rustix::io::read(&b, &mut buf).unwrap(), 8);
        assert_eq!(buf, [8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn message_split_across_reads_with_fd_on_first_part() {
        let (a, b) = pair();
        let efd = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let bytes = 42i64.to_le_bytes();
        assert_eq!(
            send_part(a.as_fd(), &bytes[..3], Some(efd.as_fd()), false).unwrap(),
            3
        );
        let mut r = MsgReader::new();
        // Only 3 bytes so far: no message yet, but the fd is held.
        assert!(r.poll_msg(&b).unwrap().is_none());
        assert!(r.is_partial());
        assert_eq!(send_part(a.as_fd(), &bytes[3..], None, false).unwrap(), 5);
        let m = r.poll_msg(&b).unwrap().unwrap();
        assert_eq!(m.value, 42);
        assert!(same_file(&m.fd.unwrap(), &efd));
        assert!(!r.is_partial());
    }

    #[test]
    fn fd_arriving_with_second_part_belongs_to_the_message() {
        let (a, b) = pair();
        let efd = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let bytes = 7i64.to_le_bytes();
        send_part(a.as_fd(), &bytes[..1], None, false).unwrap();
        send_part(a.as_fd(), &bytes[1..], Some(efd.as_fd()), false).unwrap();
        send_msg(&a, 8, None).unwrap();
        let (v, fd) = recv_msg(&b).unwrap();
        assert_eq!(v, 7);
        assert!(same_file(&fd.unwrap(), &efd));
        // The next message is not polluted by the previous one's fd.
        assert!(matches!(recv_msg(&b).unwrap(), (8, None)));
    }

    #[test]
    fn one_byte_at_a_time() {
        let (a, b) = pair();
        let bytes = (-1i64).to_le_bytes();
        let efd = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let mut r = MsgReader::new();
        for (i, byte) in bytes.iter().enumerate() {
            assert!(r.poll_msg(&b).unwrap().is_none());
            let fd = (i == 0).then(|| efd.as_fd());
            send_part(a.as_fd(), std::slice::from_ref(byte), fd, false).unwrap();
        }
        let m = r.poll_msg(&b).unwrap().unwrap();
        assert_eq!(m.value, -1);
        assert!(m.fd.is_some());
    }

    #[test]
    fn adjacent_messages_keep_their_own_fds() {
        // Two messages sent back to back, the second with an fd: a reader
        // that stops at message boundaries attributes the fd correctly.
        let (a, b) = pair();
        let efd = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        send_msg(&a, 1, None).unwrap();
        send_msg(&a, 2, Some(efd.as_fd())).unwrap();
        send_msg(&a, 3, None).unwrap();
        let mut r = MsgReader::new();
        let m1 = r.read_msg(&b).unwrap();
        let m2 = r.read_msg(&b).unwrap();
        let m3 = r.read_msg(&b).unwrap();
        assert_eq!((m1.value, m1.fd.is_some()), (1, false));
        assert_eq!((m2.value, m2.fd.is_some()), (2, true));
        assert_eq!((m3.value, m3.fd.is_some()), (3, false));
    }

    #[test]
    fn truncated_stream() {
        let (a, b) = pair();
        send_part(a.as_fd(), &[1, 2, 3, 4, 5], None, false).unwrap();
        drop(a);
        match recv_msg(&b) {
            Err(Error::Truncated { got: 5 }) => {}
            other => panic!("expected Truncated {{ got: 5 }}, got {other:?}"),
        }
    }

    #[test]
    fn empty_stream_is_closed() {
        let (a, b) = pair();
        drop(a);
        assert!(matches!(recv_msg(&b), Err(Error::Closed)));
    }

    #[test]
    fn two_fds_on_one_message_are_rejected() {
        let (a, b) = pair();
        let e1 = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let e2 = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let bytes = 3i64.to_le_bytes();
        send_part(a.as_fd(), &bytes[..4], Some(e1.as_fd()), false).unwrap();
        send_part(a.as_fd(), &bytes[4..], Some(e2.as_fd()), false).unwrap();
        assert!(matches!(recv_msg(&b), Err(Error::ExtraFd)));
    }

    /// Sends `value` as one message with all of `fds` in one SCM_RIGHTS
    /// control message (which `send_msg` never does).
    fn send_with_fds(sock: &OwnedFd, value: i64, fds: &[BorrowedFd<'_>]) {
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        let bytes = value.to_le_bytes();
        sendmsg(
            sock,
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
    }

    #[test]
    fn two_fds_in_one_cmsg_are_rejected() {
        let (a, b) = pair();
        let e1 = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let e2 = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        send_with_fds(&a, 3, &[e1.as_fd(), e2.as_fd()]);
        assert!(matches!(recv_msg(&b), Err(Error::ExtraFd)));
    }

    #[test]
    fn too_many_fds_are_reported_not_lost_silently() {
        let (a, b) = pair();
        let efds: Vec<OwnedFd> = (0..RECV_FDS + 4)
            .map(|_| eventfd(0, EventfdFlags::CLOEXEC).unwrap())
            .collect();
        let fds: Vec<BorrowedFd<'_>> = efds.iter().map(|e| e.as_fd()).collect();
        send_with_fds(&a, 3, &fds);
        assert!(matches!(recv_msg(&b), Err(Error::ControlTruncated)));
    }

    #[test]
    fn nonblocking_reader_keeps_partial_state() {
        let (a, b) = pair();
        rustix::io::ioctl_fionbio(&b, true).unwrap();
        let mut r = MsgReader::new();
        assert!(r.poll_msg(&b).unwrap().is_none());
        let bytes = 1234i64.to_le_bytes();
        send_part(a.as_fd(), &bytes[..6], None, false).unwrap();
        assert!(r.poll_msg(&b).unwrap().is_none());
        assert!(r.poll_msg(&b).unwrap().is_none());
        send_part(a.as_fd(), &bytes[6..], None, false).unwrap();
        assert_eq!(r.poll_msg(&b).unwrap().unwrap().value, 1234);
        assert!(r.poll_msg(&b).unwrap().is_none());
    }

    #[test]
    fn nonblocking_send_reports_a_full_buffer() {
        let (a, _b) = pair();
        let bytes = 1i64.to_le_bytes();
        let mut sent = 0usize;
        loop {
            match send_part(a.as_fd(), &bytes, None, true) {
                Ok(n) => sent += n,
                Err(Errno::AGAIN) => break,
                Err(e) => panic!("unexpected error {e}"),
            }
            assert!(sent < 64 << 20, "socket buffer never filled");
        }
        assert!(sent > 0);
    }

    #[test]
    fn send_to_closed_peer_fails_without_sigpipe() {
        let (a, b) = pair();
        drop(b);
        match send_msg(&a, 1, None) {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(Errno::PIPE.raw_os_error()));
            }
            other => panic!("expected EPIPE, got {other:?}"),
        }
    }
}
