//! The protocol of QEMU's ivshmem server (`docs/specs/ivshmem-spec.rst` in
//! QEMU), shared by the server, the host client and test tools.
//!
//! The server talks over a Unix stream socket, one way, to each client. A
//! message is a little-endian `i64`, optionally with one file descriptor
//! (`SCM_RIGHTS`). On connection a client receives, in order:
//!
//! 1. the protocol version [`PROTOCOL_VERSION`], without descriptor;
//! 2. its own peer id, without descriptor;
//! 3. [`SHM_MESSAGE`] (-1) with the shared memory's descriptor;
//! 4. for each peer already connected, its id once per vector, each with an
//!    eventfd: writing to it interrupts that peer on that vector;
//! 5. its own id once per vector, each with an eventfd of its own.
//!
//! Later, a peer id with a descriptor announces a new peer's next vector and
//! a peer id without descriptor says that peer left.
//!
//! [`send_msg`] / [`recv_msg`] / [`MsgReader`] are the codec; [`Client`]
//! performs the handshake and tracks announcements.

mod client;
mod error;
mod msg;
mod shm;

pub use client::{Client, ConnectOptions, Event, ring_eventfd, try_read_eventfd};
pub use error::{Error, Result};
pub use msg::{MSG_LEN, Message, MsgReader, recv_msg, send_msg, send_part};
pub use shm::SharedMemory;

/// A peer id. The guest's doorbell register carries 16 bits of it.
pub type PeerId = u16;

/// The only protocol version there is.
pub const PROTOCOL_VERSION: i64 = 0;

/// The value of the message that carries the shared memory.
pub const SHM_MESSAGE: i64 = -1;

/// The largest peer id (ids are 0..=65535).
pub const MAX_PEER_ID: PeerId = u16::MAX;
