//! The `ivshmem` command: its definitions (for the binary and for the man
//! page generator), the hex dump and what sysfs says about the devices.

pub mod cli;
pub mod hexdump;
pub mod sysfs;

pub use cli::Cli;
