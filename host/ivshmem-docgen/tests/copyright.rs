//! `debian/copyright` says what the packaged binaries contain: every crate
//! from crates.io that `/usr/bin/ivshmem`, `ivshmem-server` and
//! `ivshmem-client` link, with its version and the license it declares,
//! from `cargo metadata` for the packages' target. Proc-macro crates (and
//! what only they use) run at build time and are not linked.
//!
//! After a dependency changes, `IVSHMEM_BLESS=1 cargo test -p
//! ivshmem-docgen --test copyright` rewrites the list in `debian/copyright`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// The workspace packages whose binaries the .debs ship.
const SHIPPED: &[&str] = &["ivshmem-cli", "ivshmem-server", "ivshmem-client"];
const TARGET: &str = "x86_64-unknown-linux-gnu";
const BEGIN: &str = " Crates linked into the binaries (name version: license):";
const END: &str = " (end of the crates)";

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `name version: license` of every crates.io crate the shipped binaries
/// link, sorted.
fn linked_crates() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(top())
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", TARGET])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id"), p))
        .collect();
    let deps: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|n| {
            let normal = n["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .expect("dep_kinds")
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().expect("pkg"))
                .collect();
            (n["id"].as_str().expect("id"), normal)
        })
        .collect();
    let proc_macro = |p: &Value| {
        p["targets"].as_array().expect("targets").iter().any(|t| {
            t["kind"]
                .as_array()
                .expect("kind")
                .iter()
                .any(|k| k == "proc-macro")
        })
    };
    let mut todo: Vec<&str> = packages
        .values()
        .filter(|p| SHIPPED.contains(&p["name"].as_str().expect("name")))
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(todo.len(), SHIPPED.len(), "a shipped package is missing");
    let mut seen = BTreeSet::new();
    let mut crates = BTreeSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let p = packages[id];
        if proc_macro(p) {
            continue;
        }
        if !p["source"].is_null() {
            crates.insert(format!(
                "{} {}: {}",
                p["name"].as_str().expect("name"),
                p["version"].as_str().expect("version"),
                p["license"].as_str().unwrap_or("(none declared)")
            ));
        }
        todo.extend(deps.get(id).into_iter().flatten());
    }
    crates.into_iter().collect()
}

#[test]
fn copyright_names_every_linked_crate() {
    let path = top().join("debian/copyright");
    let text = std::fs::read_to_string(&path).expect("read debian/copyright");
    let (head, rest) = text
        .split_once(&format!("{BEGIN}\n"))
        .expect("debian/copyright has the crates' list");
    let (listed, tail) = rest.split_once(END).expect("the list's end");
    let want: String = linked_crates().iter().map(|c| format!("  {c}\n")).collect();
    if listed != want && std::env::var_os("IVSHMEM_BLESS").is_some() {
        std::fs::write(&path, format!("{head}{BEGIN}\n{want}{END}{tail}"))
            .expect("write debian/copyright");
        return;
    }
    assert_eq!(
        listed, want,
        "debian/copyright's crates differ from what the binaries link \
         (IVSHMEM_BLESS=1 rewrites them)"
    );
    // Every crate may be used under a license the file states in full.
    for line in want.lines() {
        let license = line.split_once(": ").map_or("", |(_, l)| l);
        assert!(
            license.contains("MIT"),
            "{line}: not available under MIT (Expat), the license debian/copyright states for the crates"
        );
    }
}
