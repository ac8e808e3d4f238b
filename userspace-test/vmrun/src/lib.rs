//! `ivshmem-vmrun`: the binary is `src/main.rs`; its command line
//! definitions live here so that the man page generator can render them.

pub mod cli;
