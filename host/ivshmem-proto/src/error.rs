//! The errors of this crate.

use std::io;

/// Everything that can go wrong while talking to an ivshmem server.
///
/// Variants other than [`Error::Io`] describe a malformed or unexpected
/// stream; they carry the offending values so that the message alone is
/// enough to tell what the server sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed. The message is what was being done; the OS
    /// error is the [source](std::error::Error::source), so that a
    /// reporter that prints the chain (`anyhow`'s `{:#}`) says it once.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The server closed the connection cleanly, between two messages.
    #[error("connection closed by the server")]
    Closed,

    /// The server closed the connection in the middle of a message.
    #[error("stream truncated: connection closed after {got} of 8 bytes of a message")]
    Truncated {
        /// How many bytes of the message had arrived.
        got: usize,
    },

    /// The first message was not protocol version 0.
    #[error("unsupported protocol version {0} (this client speaks version 0)")]
    BadVersion(i64),

    /// A message that must carry a file descriptor came without one.
    #[error("message {value} ({what}) arrived without the file descriptor it must carry")]
    MissingFd {
        /// The message's value.
        value: i64,
        /// Which message it was.
        what: &'static str,
    },

    /// A message that must not carry a file descriptor came with one.
    #[error("message {value} ({what}) carried an unexpected file descriptor")]
    UnexpectedFd {
        /// The message's value.
        value: i64,
        /// Which message it was.
        what: &'static str,
    },

    /// More than one file descriptor arrived with a single 8-byte message.
    #[error("more than one file descriptor arrived with a single message")]
    ExtraFd,

    /// The kernel truncated the control data: too many descriptors at once.
    #[error(
        "ancillary data truncated (too many file descriptors in one read); descriptors were lost"
    )]
    ControlTruncated,

    /// A value outside -1..=65535 where a peer id was expected.
    #[error("invalid peer id {0} (ids are 0..=65535)")]
    InvalidId(i64),

    /// The third handshake message was not the shared memory message (-1).
    #[error("expected the shared memory message (-1), got {0}")]
    ExpectedShm(i64),

    /// A second shared memory message, after the handshake.
    #[error("unexpected second shared memory message")]
    UnexpectedShm,

    /// The server announced that a peer we never heard of left.
    #[error("server announced that unknown peer {0} left")]
    UnknownPeerLeft(u16),

    /// The server announced that this very client left.
    #[error("server announced that this client (peer {0}) left")]
    OwnLeave(u16),

    /// The handshake did not complete in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),

    /// No such peer is known.
    #[error("no peer {0}")]
    NoSuchPeer(u16),

    /// The peer exists but has fewer vectors.
    #[error("peer {peer} has no vector {vector} (it has {count})")]
    NoSuchVector {
        /// The peer.
        peer: u16,
        /// The vector asked for.
        vector: usize,
        /// How many vectors the peer has.
        count: usize,
    },

    /// An access to the shared memory beyond its end.
    #[error("access of {len} bytes at offset {offset} is outside the {size}-byte shared memory")]
    OutOfBounds {
        /// Start of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Size of the region.
        size: u64,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Io {
            context,
            source: source.into(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_io_error_says_the_os_error_once_in_its_chain() {
        let e = Error::io("connecting to the server", io::Error::from_raw_os_error(2));
        assert_eq!(e.to_string(), "connecting to the server");
        let source = e.source().expect("the OS error is the source");
        let mut chain = e.to_string();
        let mut next = Some(source);
        while let Some(s) = next {
            chain.push_str(&format!(": {s}"));
            next = s.source();
        }
        assert_eq!(
            chain.matches("No such file or directory").count(),
            1,
            "{chain}"
        );
    }
}
