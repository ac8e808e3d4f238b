//! Checks the Rust mirror of the user API against the C header itself: a
//! C program built against `uapi/linux/ivshmem.h` prints every size,
//! offset and ioctl number, and they must equal the Rust ones.
//!
//! Without a C compiler (or python3, for the Python package's check) the
//! checks are reported as ignored, with the reason (`needs`).

mod common;

use ivshmem::uapi::*;
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAM: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include <linux/ivshmem.h>
#define S(t) printf("sizeof %s %zu\n", #t, sizeof(struct t))
#define O(t, f) printf("offsetof %s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define C(c) printf("const %s %llu\n", #c, (unsigned long long)(c))
int main(void)
{
	S(ivshmem_info); S(ivshmem_cache); S(ivshmem_ring); S(ivshmem_mask);
	S(ivshmem_eventfd); S(ivshmem_event);
	O(ivshmem_ring, peer); O(ivshmem_ring, vector); O(ivshmem_ring, flags); O(ivshmem_ring, reserved);
	O(ivshmem_mask, mask); O(ivshmem_mask, flags); O(ivshmem_mask, reserved0); O(ivshmem_mask, reserved);
	O(ivshmem_eventfd, fd); O(ivshmem_eventfd, vector); O(ivshmem_eventfd, flags);
	O(ivshmem_eventfd, reserved);
	O(ivshmem_event, vector); O(ivshmem_event, flags); O(ivshmem_event, count);
	O(ivshmem_event, timestamp_ns);
	C(IVSHMEM_MAX_VECTORS); C(IVSHMEM_MAX_EVENTFDS); C(IVSHMEM_MAX_EVENTFDS_PER_USER); C(IVSHMEM_IOCTL_RING); C(IVSHMEM_IOCTL_SET_MASK);
	C(IVSHMEM_IOCTL_BIND_EVENTFD);
	O(ivshmem_info, size); O(ivshmem_info, ivposition); O(ivshmem_info, vectors);
	O(ivshmem_info, features); O(ivshmem_info, flags); O(ivshmem_info, index);
	O(ivshmem_info, revision); O(ivshmem_info, pci_bus); O(ivshmem_info, pci_devfn);
	O(ivshmem_info, pad0); O(ivshmem_info, pci_domain); O(ivshmem_info, subsystem_vendor);
	O(ivshmem_info, subsystem_device); O(ivshmem_info, reserved);
	O(ivshmem_cache, mode); O(ivshmem_cache, flags); O(ivshmem_cache, reserved);
	C(IVSHMEM_IOCTL_MAGIC); C(IVSHMEM_IOCTL_INFO); C(IVSHMEM_IOCTL_SET_CACHE);
	C(IVSHMEM_FEATURE_DOORBELL); C(IVSHMEM_FEATURE_MSIX); C(IVSHMEM_FEATURE_INTX);
	C(IVSHMEM_FEATURE_DOORBELL_MMAP); C(IVSHMEM_DOORBELL_MMAP_OFFSET); C(IVSHMEM_REG_DOORBELL);
	C(IVSHMEM_INFO_NOT_READY);
	C(IVSHMEM_CACHE_WB); C(IVSHMEM_CACHE_WC); C(IVSHMEM_CACHE_UC);
	return 0;
}
"#;

fn main() {
    let args = needs::Arguments::from_args();
    let cc = common::c_compiler();
    let python =
        needs::program_from_env("PYTHON", "python3").map_err(|e| format!("no Python: {e}"));
    let trials = vec![
        needs::needs(
            &args,
            "rust_matches_the_c_header",
            cc.clone(),
            rust_matches_the_c_header,
        ),
        needs::needs(
            &args,
            "python_matches_the_c_header",
            cc.and_then(|cc| python.map(|py| (cc, py))),
            python_matches_the_c_header,
        ),
    ];
    needs::run(&args, trials);
}

fn c_facts(cc: &Path) -> BTreeMap<String, u64> {
    common::c_output(cc, "abi", PROGRAM)
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace().skip(1);
            let k = w.next().unwrap().to_string();
            (k, w.next().unwrap().parse().unwrap())
        })
        .collect()
}

fn rust_matches_the_c_header(cc: PathBuf) {
    let c = c_facts(&cc);
    let mut rust: BTreeMap<String, u64> = BTreeMap::new();
    let mut put = |k: &str, v: usize| {
        rust.insert(k.to_string(), v as u64);
    };
    put("ivshmem_info", size_of::<ivshmem_info>());
    put("ivshmem_cache", size_of::<ivshmem_cache>());
    put("ivshmem_ring", size_of::<ivshmem_ring>());
    put("ivshmem_mask", size_of::<ivshmem_mask>());
    put("ivshmem_eventfd", size_of::<ivshmem_eventfd>());
    put("ivshmem_event", size_of::<ivshmem_event>());
    macro_rules! off {
        ($t:ident, $($f:ident),*) => {
            $( put(concat!(stringify!($t), ".", stringify!($f)), offset_of!($t, $f)); )*
        };
    }
    off!(
        ivshmem_info,
        size,
        ivposition,
        vectors,
        features,
        flags,
        index,
        revision,
        pci_bus,
        pci_devfn,
        pad0,
        pci_domain,
        subsystem_vendor,
        subsystem_device,
        reserved
    );
    off!(ivshmem_cache, mode, flags, reserved);
    off!(ivshmem_ring, peer, vector, flags, reserved);
    off!(ivshmem_mask, mask, flags, reserved0, reserved);
    off!(ivshmem_eventfd, fd, vector, flags, reserved);
    off!(ivshmem_event, vector, flags, count, timestamp_ns);
    let mut konst = |k: &str, v: u64| {
        rust.insert(k.to_string(), v);
    };
    konst("IVSHMEM_IOCTL_MAGIC", IVSHMEM_IOCTL_MAGIC.into());
    konst("IVSHMEM_IOCTL_INFO", IVSHMEM_IOCTL_INFO.into());
    konst("IVSHMEM_IOCTL_SET_CACHE", IVSHMEM_IOCTL_SET_CACHE.into());
    konst("IVSHMEM_FEATURE_DOORBELL", IVSHMEM_FEATURE_DOORBELL.into());
    konst("IVSHMEM_FEATURE_MSIX", IVSHMEM_FEATURE_MSIX.into());
    konst("IVSHMEM_FEATURE_INTX", IVSHMEM_FEATURE_INTX.into());
    konst(
        "IVSHMEM_FEATURE_DOORBELL_MMAP",
        IVSHMEM_FEATURE_DOORBELL_MMAP.into(),
    );
    konst("IVSHMEM_DOORBELL_MMAP_OFFSET", IVSHMEM_DOORBELL_MMAP_OFFSET);
    konst("IVSHMEM_REG_DOORBELL", IVSHMEM_REG_DOORBELL as u64);
    konst("IVSHMEM_INFO_NOT_READY", IVSHMEM_INFO_NOT_READY.into());
    konst("IVSHMEM_CACHE_WB", IVSHMEM_CACHE_WB.into());
    konst("IVSHMEM_CACHE_WC", IVSHMEM_CACHE_WC.into());
    konst("IVSHMEM_CACHE_UC", IVSHMEM_CACHE_UC.into());
    konst("IVSHMEM_MAX_VECTORS", IVSHMEM_MAX_VECTORS as u64);
    konst("IVSHMEM_MAX_EVENTFDS", IVSHMEM_MAX_EVENTFDS as u64);
    konst(
        "IVSHMEM_MAX_EVENTFDS_PER_USER",
        IVSHMEM_MAX_EVENTFDS_PER_USER as u64,
    );
    konst("IVSHMEM_IOCTL_RING", IVSHMEM_IOCTL_RING.into());
    konst("IVSHMEM_IOCTL_SET_MASK", IVSHMEM_IOCTL_SET_MASK.into());
    konst(
        "IVSHMEM_IOCTL_BIND_EVENTFD",
        IVSHMEM_IOCTL_BIND_EVENTFD.into(),
    );
    common::assert_same_facts(&c, &rust, "Rust");
}

/// The Python package's `ivshmem.uapi` (userspace/python) prints the same
/// facts (`python3 -m ivshmem.uapi`); they must equal the C header's, key
/// for key, so that its ctypes layouts and ioctl numbers cannot drift.
fn python_matches_the_c_header((cc, python): (PathBuf, PathBuf)) {
    let c = c_facts(&cc);
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(&python)
        .args(["-B", "-m", "ivshmem.uapi"])
        .env("PYTHONPATH", top.join("userspace/python/src"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        out.status.success(),
        "python3 -m ivshmem.uapi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: BTreeMap<String, u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(w.len(), 3, "odd line from ivshmem.uapi: {l:?}");
            (w[1].to_string(), w[2].parse().unwrap())
        })
        .collect();
    for (k, v) in &c {
        assert_eq!(
            py.get(k),
            Some(v),
            "{k}: C says {v}, Python says {:?}",
            py.get(k)
        );
    }
    let extra: Vec<&String> = py.keys().filter(|k| !c.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "Python defines what the C check does not know: {extra:?}"
    );
}
