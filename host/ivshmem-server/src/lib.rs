//! A drop-in replacement for QEMU's `contrib/ivshmem-server`.
//!
//! The server creates the shared memory, listens on a Unix socket, gives
//! every client that connects an id and one eventfd per vector, sends it
//! the shared memory and everyone's eventfds, and tells the others when it
//! joins or leaves (see [`ivshmem_proto`] for the protocol).
//!
//! The binary (`src/main.rs`) adds argument parsing, daemonizing, the pid
//! file and signals; this library holds the rest, so that tests of other
//! crates can run a server in-process.

pub mod cli;
pub mod config;
pub mod ids;
pub mod ratelimit;
pub mod server;
pub mod shm;
pub mod socket;

pub use config::{Config, ShmBacking};
pub use server::Server;
pub use socket::BoundSocket;

use std::os::fd::BorrowedFd;

use anyhow::Result;

impl Config {
    /// Binds the socket and then creates the shared memory: everything that
    /// can fail before serving.
    ///
    /// The socket comes first: a server refused because another one listens
    /// there must not resize, truncate or replace that server's memory. Once
    /// the socket is ours, a failure removes it again.
    pub fn start(&self) -> Result<(Server, BoundSocket, shm::Shm)> {
        let size = config::round_size(self.size).map_err(anyhow::Error::msg)?;
        let sock = match socket::from_service_manager()? {
            Some(l) => BoundSocket::adopt(l)?,
            None => BoundSocket::bind(&self.socket)?,
        };
        match self.serve_on(&sock, size) {
            Ok((server, shm)) => Ok((server, sock, shm)),
            Err(e) => {
                sock.remove();
                Err(e)
            }
        }
    }

    /// The part of [`Config::start`] after the socket is owned.
    fn serve_on(&self, sock: &BoundSocket, size: u64) -> Result<(Server, shm::Shm)> {
        if size != self.size {
            log::info!(
                "size rounded up from {} to {size} bytes (a power of two)",
                self.size
            );
        }
        let shm = shm::open(&self.backing, size)?;
        let fd = shm
            .fd
            .try_clone()
            .map_err(|e| anyhow::anyhow!("cannot duplicate the shared memory descriptor: {e}"))?;
        let listener = sock
            .listener
            .try_clone()
            .map_err(|e| anyhow::anyhow!("cannot duplicate the listening socket: {e}"))?;
        let mut server = Server::new(listener, fd, self.vectors as usize, self.max_queue)?;
        server.set_max_peers(self.max_peers);
        Ok((server, shm))
    }

    /// Runs a server until `stop` is readable, then removes its socket.
    pub fn run(&self, stop: BorrowedFd<'_>) -> Result<()> {
        let (mut server, sock, _shm) = self.start()?;
        let r = server.run(stop);
        sock.remove();
        r
    }
}
