//! The `ivshmem` binary on the host, where no device needs to exist: exit
//! statuses and messages of the failures a user meets first. The guest
//! suite (`cli` scenario) tests it against real devices.

use std::process::{Command, Output};

const IVSHMEM: &str = env!("CARGO_BIN_EXE_ivshmem");

fn run(args: &[&str]) -> Output {
    Command::new(IVSHMEM).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_missing_device_is_named_as_coreutils_would() {
    let dev = "/nonexistent/ivshmem7";
    for args in [
        &["info", dev][..],
        &["dump", dev, "0", "16"],
        &["write", dev, "0", "x"],
        &["ring", dev, "0", "0"],
        &["wait", dev, "--timeout", "0"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&o),
            format!("ivshmem: {dev}: No such file or directory\n"),
            "{args:?}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_file_that_is_no_device_says_so() {
    let o = run(&["info", "/dev/null"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "ivshmem: /dev/null: Inappropriate ioctl for device\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["info"],
        &["bogus"],
        &["list", "extra"],
        &["dump", "0", "0"],
        &["dump", "0", "lots", "1"],
        &["ring", "0", "1", "256"],
        &["wait", "0", "--vector", "x"],
        &["dump", "0", "0", "1", "--cache", "fast"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn help_and_version_go_to_stdout() {
    let o = run(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("ivshmem {}\n", env!("CARGO_PKG_VERSION"))
    );
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    for sub in ["list", "info", "dump", "write", "ring", "wait", "124"] {
        assert!(text.contains(sub), "{sub} not in --help");
    }
}

/// Without the driver (or with it, on a machine without devices) `list`
/// prints nothing and succeeds; with devices, a header and a line each.
#[test]
fn list_reads_sysfs() {
    let o = run(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let nodes = std::fs::read_dir("/sys/class/misc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("ivshmem"))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0);
    let want = if nodes == 0 { 0 } else { nodes + 1 };
    assert_eq!(text.lines().count(), want, "{text}");
    let o = run(&["list", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(nodes));
}
