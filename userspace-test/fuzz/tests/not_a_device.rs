//! The fuzzer run as a program on a file that is not an ivshmem device.
//!
//! It forks its processes from its own single-threaded `main`, as in a
//! guest: never from a thread of this harness, where a lock another test
//! thread held at the fork would stay held in the child for ever.

use std::process::Command;

/// On `/dev/null` every call is made and fails or succeeds cleanly
/// (INFO and the other ioctls: ENOTTY; mmap: ENODEV; read: end of file),
/// and every process and forked child reports.
#[test]
fn runs_on_a_file_that_is_not_a_device() {
    let out = Command::new(env!("CARGO_BIN_EXE_ivshmem-fuzz"))
        .args("--seed 7 --calls 2000 --procs 2 --threads 3 /dev/null".split(' '))
        .output()
        .expect("run ivshmem-fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}{stderr}", out.status);
    assert!(
        stdout.contains("ivshmem-fuzz: 2000 calls, "),
        "no summary of 2000 calls:\n{stdout}"
    );
    let failures = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ivshmem-fuzz: failures by errno: "))
        .expect("failures line");
    // ENOTTY (25) from the ioctls shows that the calls reached the file.
    assert!(failures.contains("25: "), "no ENOTTY among {failures}");
}

/// With `--until-gone` naming a path that stays, every worker goes on past
/// its share, up to 100 times it: 6 workers x 100 calls x 100.
#[test]
fn until_gone_keeps_calling_while_the_path_exists() {
    let out = Command::new(env!("CARGO_BIN_EXE_ivshmem-fuzz"))
        .args("--seed 7 --calls 600 --procs 2 --threads 3 --until-gone / /dev/null".split(' '))
        .output()
        .expect("run ivshmem-fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", out.status);
    assert!(
        stdout.contains("ivshmem-fuzz: 60000 calls, "),
        "not 60000 calls:\n{stdout}"
    );
}
