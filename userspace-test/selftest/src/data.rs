//! Shared-memory patterns, the same the host writes and checks: they live
//! in the runner's protocol crate (`userspace-test/vmrun-protocol`).

pub use vmrun_protocol::data::*;
