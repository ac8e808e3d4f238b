//! What a run is given: the caller's [`Config`], and the fixed sizes and
//! limits of every worker.

use std::path::PathBuf;

pub(crate) const PAGE: usize = 4096;
pub(crate) const MIB: usize = 1 << 20;
/// The doorbell page's mmap offset (`IVSHMEM_DOORBELL_MMAP_OFFSET`).
pub(crate) const DOORBELL_MMAP_OFFSET: usize = ivshmem::uapi::IVSHMEM_DOORBELL_MMAP_OFFSET as usize;
/// Per thread, at most this many open files, mappings and eventfds.
pub(crate) const MAX_FDS: usize = 12;
pub(crate) const MAX_MAPS: usize = 8;
pub(crate) const MAX_EFDS: usize = 6;
/// The ioctl argument buffer: the size field of an ioctl number has 14
/// bits, and the buffer holds any size at any of its argument offsets.
pub(crate) const ARG_SIZE: usize = 1 << 14;
pub(crate) const BUF: usize = ARG_SIZE + 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed: the same seed gives every thread the same calls.
    pub seed: u64,
    /// Calls in all, shared out among the threads.
    pub calls: u64,
    /// Processes (each forked from the caller).
    pub procs: usize,
    /// Threads per process.
    pub threads: usize,
    /// The device nodes to call.
    pub devices: Vec<PathBuf>,
    /// Keep calling past `calls` while this path exists (up to 100 times
    /// `calls`), so that a removal the caller makes happens mid-run.
    pub until_gone: Option<PathBuf>,
}
