//! Prints what a device is and the first bytes of its shared memory.
//!
//!     cargo run --example info -- 0
use ivshmem::{CacheMode, Device};

fn main() -> std::io::Result<()> {
    let index = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let dev = Device::open(index)?;
    let info = dev.info()?;
    println!("{info:?}");
    let map = dev.map(0, 4096, CacheMode::WriteBack)?;
    let mut head = [0u8; 16];
    map.read_slice(0, &mut head)?;
    println!("first bytes: {head:02x?}");
    Ok(())
}
