//! A seeded fuzzer of `/dev/ivshmemN`, run inside a guest.
//!
//! Several processes, each with several threads, issue random but
//! valid-shaped sequences of calls on the device nodes: open, close, dup
//! and fork; mmap with random offsets, lengths, protections and flags
//! (`MAP_PRIVATE` included); partial munmap, mremap, mprotect,
//! `madvise(MADV_DONTNEED)`; touching mapped pages; read with random
//! sizes, poll and epoll; every ioctl with random bytes in every field and
//! random sizes encoded in the ioctl number; eventfd bindings to random
//! descriptors; and signals between the threads, which interrupt blocking
//! calls.
//!
//! The devices may come and go meanwhile (unbind, hot-unplug): calls then
//! fail (`ENODEV`, `ENOENT`), and a touch of a mapping whose device is gone
//! raises SIGBUS, which the fuzzer counts and survives by mapping an
//! anonymous page over the one that faulted.
//!
//! Each thread draws from its own generator, seeded from the run's seed
//! and its process and thread numbers, so that a seed reproduces every
//! thread's sequence of calls; the interleaving of threads and of the
//! devices' removals is the scheduler's.
//!
//! The fuzzer checks nothing but its own survival: what it is for is the
//! kernel's reports (KASAN, lockdep, UBSAN, hung tasks, soft lockups,
//! WARN), which the test runner watches.
//!
//! # Modules
//!
//! From the bottom up; a module uses only modules above it in this list
//! (the call modules in the middle use none of each other):
//!
//! - `rng`: the seeded generator, and each thread's seed;
//! - `report`: what a run did, and its text form between processes;
//! - `config`: what a run is given, and the fixed sizes and limits;
//! - `signals`: the SIGUSR1 and SIGBUS handlers, and the SIGBUS count;
//! - `worker`: one thread's state (its files, mappings, eventfds,
//!   generator, buffer and counts) and what every call on it shares;
//! - the calls, each an `impl Worker` of its own: `files` (open, close,
//!   dup, fcntl, eventfd), `fork`, `memory` (mmap, munmap, mremap,
//!   mprotect, madvise, touch), `waiting` (read, poll, epoll, signal)
//!   and `ioctls`;
//! - `ops`: the kinds of call and their weights, drawn and dispatched;
//! - `process`: the processes and their threads, forked, run and waited
//!   for.

mod config;
mod files;
mod fork;
mod ioctls;
mod memory;
mod ops;
mod process;
mod report;
mod rng;
mod signals;
mod waiting;
mod worker;

pub use config::Config;
pub use process::{Running, run, spawn};
pub use report::Report;
pub use rng::{Rng, thread_seed};
