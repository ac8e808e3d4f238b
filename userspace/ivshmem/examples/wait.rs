//! Waits for doorbells: blocking, with a timeout, and without blocking.
use ivshmem::Device;
use std::time::Duration;

fn main() -> std::io::Result<()> {
    let dev = Device::open(0)?;
    // Without blocking: whatever is pending now.
    println!("pending: {:?}", dev.wait(Some(Duration::ZERO))?);
    // With a timeout: an empty list when it ran out.
    println!("within 5 s: {:?}", dev.wait(Some(Duration::from_secs(5)))?);
    // Blocking, as an iterator, until an error (ENODEV when the device goes).
    for ev in dev.events().take(3) {
        let ev = ev?;
        println!(
            "vector {} rang {} time(s), at {} ns",
            ev.vector, ev.count, ev.timestamp_ns
        );
    }
    Ok(())
}
