//! Rings a peer: `ring DEVICE-INDEX PEER VECTOR`.
use ivshmem::Device;

fn main() -> std::io::Result<()> {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let [index, peer, vector] = args[..] else {
        eprintln!("usage: ring DEVICE-INDEX PEER VECTOR");
        std::process::exit(2);
    };
    let to_u16 = |v: u32| u16::try_from(v).map_err(std::io::Error::other);
    Device::open(index)?.ring(to_u16(peer)?, to_u16(vector)?)
}
