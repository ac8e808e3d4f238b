//! What `abi.rs` and `kernel_uapi.rs` share: building a C program against
//! `uapi/linux/ivshmem.h` with the C compiler, running it, and comparing
//! the facts it prints with a Rust mirror's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The C compiler, `$CC` (default `cc`), or why there is none: what a
/// test that builds a C program needs.
pub fn c_compiler() -> Result<PathBuf, String> {
    needs::program_from_env("CC", "cc").map_err(|e| format!("no C compiler: {e}"))
}

/// Builds `program` (C source) against the repository's `uapi/` with the
/// C compiler `cc`, runs it and returns what it printed.
pub fn c_output(cc: &Path, test: &str, program: &str) -> String {
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    // One directory per call: the tests run in parallel threads.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ivshmem-{test}-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{test}.c"));
    let exe = dir.join(test);
    std::fs::write(&src, program).unwrap();
    let built = Command::new(cc)
        .args(["-Wall", "-Werror", "-I"])
        .arg(top.join("uapi"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", cc.display()));
    assert!(built.success(), "the C header does not compile");
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts that `mirror` (named `who` in the messages) has exactly the
/// facts `c` has, key for key.
pub fn assert_same_facts(c: &BTreeMap<String, u64>, mirror: &BTreeMap<String, u64>, who: &str) {
    assert_eq!(mirror.len(), c.len(), "C and Rust check different things");
    for (k, v) in c {
        assert_eq!(
            mirror.get(k),
            Some(v),
            "{k}: C says {v}, {who} says {:?}",
            mirror.get(k)
        );
    }
}
