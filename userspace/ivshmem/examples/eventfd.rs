//! Binds an eventfd to vector 0 and waits on it, as an epoll loop would.
use ivshmem::Device;
use rustix::event::{EventfdFlags, eventfd};
use std::os::fd::AsFd;

fn main() -> std::io::Result<()> {
    let dev = Device::open(0)?;
    let efd = eventfd(0, EventfdFlags::CLOEXEC)?;
    dev.bind_eventfd(0, efd.as_fd())?;
    let mut count = [0u8; 8];
    rustix::io::read(&efd, &mut count)?;
    println!("vector 0 rang {} time(s)", u64::from_ne_bytes(count));
    Ok(())
}
