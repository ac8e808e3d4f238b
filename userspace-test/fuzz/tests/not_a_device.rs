//! The fuzzer run as a program on a file that is not an ivshmem device.
//!
//! It forks its processes from its own single-threaded `main`, as in a
//! guest: never from a thread of this harness, where a lock another test
//! thread held at the fork would stay held in the child for ever.

use std::process::Command;

/// Runs `ivshmem-fuzz ARGS` with 2 processes x 3 threads on `/dev/null`,
/// checks that it succeeded after `calls` calls, and returns its standard
/// output.
fn fuzz_dev_null(args: &str, calls: u64) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ivshmem-fuzz"))
        .args(args.split(' '))
        .args(["--procs", "2", "--threads", "3", "/dev/null"])
        .output()
        .expect("run ivshmem-fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}{stderr}", out.status);
    assert!(
        stdout.contains(&format!("ivshmem-fuzz: {calls} calls, ")),
        "no summary of {calls} calls:\n{stdout}"
    );
    stdout
}

/// On `/dev/null` every call is made and fails or succeeds cleanly
/// (INFO and the other ioctls: ENOTTY; mmap: ENODEV; read: end of file),
/// and every process and forked child reports.
#[test]
fn runs_on_a_file_that_is_not_a_device() {
    let stdout = fuzz_dev_null("--seed 7 --calls 2000", 2000);
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
    fuzz_dev_null("--seed 7 --calls 600 --until-gone /", 60_000);
}
