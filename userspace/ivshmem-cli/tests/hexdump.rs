//! The `ivshmem` command's hex dump against the system's `hexdump -C`.
//! Without hexdump(1) (Debian: bsdextrautils) the comparison is reported
//! as ignored, with the reason (see `needs`).

use ivshmem_cli::hexdump::HexDump;
use std::path::PathBuf;

fn main() {
    let args = needs::Arguments::from_args();
    let trials = vec![needs::needs(
        &args,
        "matches_system_hexdump",
        needs::program("hexdump").map_err(|e| format!("{e} to compare with")),
        matches_system_hexdump,
    )];
    needs::run(&args, trials);
}

fn dump(start: u64, squeeze: bool, pieces: &[&[u8]]) -> String {
    let mut d = HexDump::new(Vec::new(), start, squeeze);
    for p in pieces {
        d.feed(p).unwrap();
    }
    String::from_utf8(d.finish().unwrap()).unwrap()
}

/// The same bytes, fed in two pieces, through the system's hexdump.
fn matches_system_hexdump(hexdump: PathBuf) {
    let mut blob: Vec<u8> = (0..=255u8).collect();
    blob.extend_from_slice(&[0; 100]);
    blob.extend_from_slice(b"ivshmem ivshmem ivshmem ivshmem ivshmem ivshmem");
    blob.extend(std::iter::repeat_n(0xa5, 70));
    blob.extend_from_slice(b"end");
    let path = std::env::temp_dir().join(format!("ivshmem-cli-hexdump.{}", std::process::id()));
    std::fs::write(&path, &blob).unwrap();
    let out = std::process::Command::new(&hexdump)
        .arg("-C")
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.unwrap_or_else(|e| panic!("{}: {e}", hexdump.display()));
    assert!(out.status.success());
    let (a, b) = blob.split_at(77);
    assert_eq!(dump(0, true, &[a, b]), String::from_utf8_lossy(&out.stdout));
}
