//! Checks the kernel module's mirror of the user API, `rust/uapi.rs`,
//! against the C header itself, as `abi.rs` does for this crate's mirror:
//! a C program built against `uapi/linux/ivshmem.h` prints every size,
//! offset, field size, constant and ioctl number, and the module's Rust
//! definitions must give the same. `rust/uapi.rs` uses `core` only, so it
//! is included here as it is.
//!
//! The module's mirror of Looking Glass's kvmfr ioctls (`KVMFR_*`) is
//! checked the same way against `uapi/compat/kvmfr.h`.
//!
//! The module copies these structures to and from user space as bytes
//! (`rust/raw/bytes.rs`), which needs them free of padding: checked here
//! too, on the Rust side (each field starts where the one before ends,
//! and the last ends where the structure does).
//!
//! Without a C compiler the check against the header is reported as
//! ignored, with the reason (`needs`).

mod common;

#[allow(dead_code)]
#[path = "../../../rust/uapi.rs"]
mod kernel_uapi;

use kernel_uapi::*;
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of, size_of_val};
use std::path::{Path, PathBuf};

fn main() {
    let args = needs::Arguments::from_args();
    let trials = vec![
        needs::needs(
            &args,
            "kernel_mirror_matches_the_c_header",
            common::c_compiler(),
            kernel_mirror_matches_the_c_header,
        ),
        needs::test("kernel_mirror_has_no_padding", kernel_mirror_has_no_padding),
        needs::test("kvmfr_numbers_are_kvmfrs", kvmfr_numbers_are_kvmfrs),
    ];
    needs::run(&args, trials);
}

/// Each structure and its fields, as `(C name, Rust type, [(C field,
/// Rust field)])`; the C program is made from this list.
macro_rules! structs {
    ($m:ident) => {
        $m!(
            ivshmem_info,
            Info,
            [
                (size, size),
                (ivposition, ivposition),
                (vectors, vectors),
                (features, features),
                (flags, flags),
                (index, index),
                (revision, revision),
                (pci_bus, pci_bus),
                (pci_devfn, pci_devfn),
                (pad0, pad0),
                (pci_domain, pci_domain),
                (subsystem_vendor, subsystem_vendor),
                (subsystem_device, subsystem_device),
                (reserved, reserved)
            ]
        );
        $m!(
            ivshmem_cache,
            Cache,
            [(mode, mode), (flags, flags), (reserved, reserved)]
        );
        $m!(
            ivshmem_ring,
            Ring,
            [
                (peer, peer),
                (vector, vector),
                (flags, flags),
                (reserved, reserved)
            ]
        );
        $m!(
            ivshmem_mask,
            Mask,
            [
                (mask, mask),
                (flags, flags),
                (reserved0, reserved0),
                (reserved, reserved)
            ]
        );
        $m!(
            ivshmem_eventfd,
            EventFdBind,
            [
                (fd, fd),
                (vector, vector),
                (flags, flags),
                (reserved, reserved)
            ]
        );
        $m!(
            ivshmem_event,
            Event,
            [
                (vector, vector),
                (flags, flags),
                (count, count),
                (timestamp_ns, timestamp_ns)
            ]
        );
    };
}

/// kvmfr's structures (`uapi/compat/kvmfr.h`), like [`structs`]; they
/// have padding (kvmfr's ABI), so they are not in the padding check.
macro_rules! kvmfr_structs {
    ($m:ident) => {
        $m!(
            kvmfr_dmabuf_create,
            KvmfrDmabufCreate,
            [(flags, flags), (offset, offset), (size, size)]
        );
    };
}

/// The constants, as `(C name, Rust value)`.
fn constants() -> Vec<(&'static str, u64)> {
    vec![
        ("IVSHMEM_IOCTL_MAGIC", MAGIC.into()),
        ("IVSHMEM_FEATURE_DOORBELL", FEATURE_DOORBELL.into()),
        ("IVSHMEM_FEATURE_MSIX", FEATURE_MSIX.into()),
        ("IVSHMEM_FEATURE_INTX", FEATURE_INTX.into()),
        (
            "IVSHMEM_FEATURE_DOORBELL_MMAP",
            FEATURE_DOORBELL_MMAP.into(),
        ),
        ("IVSHMEM_DOORBELL_MMAP_OFFSET", DOORBELL_MMAP_OFFSET),
        ("IVSHMEM_INFO_NOT_READY", INFO_NOT_READY.into()),
        ("IVSHMEM_CACHE_WB", CACHE_WB.into()),
        ("IVSHMEM_CACHE_WC", CACHE_WC.into()),
        ("IVSHMEM_CACHE_UC", CACHE_UC.into()),
        ("IVSHMEM_MAX_VECTORS", MAX_VECTORS as u64),
        ("IVSHMEM_MAX_EVENTFDS", MAX_EVENTFDS as u64),
        (
            "IVSHMEM_MAX_EVENTFDS_PER_USER",
            MAX_EVENTFDS_PER_USER as u64,
        ),
        ("IVSHMEM_IOCTL_INFO", IOCTL_INFO.into()),
        ("IVSHMEM_IOCTL_SET_CACHE", IOCTL_SET_CACHE.into()),
        ("IVSHMEM_IOCTL_RING", IOCTL_RING.into()),
        ("IVSHMEM_IOCTL_SET_MASK", IOCTL_SET_MASK.into()),
        ("IVSHMEM_IOCTL_BIND_EVENTFD", IOCTL_BIND_EVENTFD.into()),
        (
            "KVMFR_DMABUF_FLAG_CLOEXEC",
            KVMFR_DMABUF_FLAG_CLOEXEC.into(),
        ),
        ("KVMFR_DMABUF_GETSIZE", KVMFR_DMABUF_GETSIZE.into()),
        ("KVMFR_DMABUF_CREATE", KVMFR_DMABUF_CREATE.into()),
    ]
}

/// The C program that prints the header's facts.
fn program() -> String {
    let mut body = String::new();
    macro_rules! c_lines {
        ($c:ident, $r:ident, [$(($cf:ident, $rf:ident)),*]) => {
            body += &format!("\tS({});\n", stringify!($c));
            $( body += &format!("\tF({}, {});\n", stringify!($c), stringify!($cf)); )*
        };
    }
    structs!(c_lines);
    kvmfr_structs!(c_lines);
    for (name, _) in constants() {
        body += &format!("\tC({name});\n");
    }
    format!(
        r#"#include <stddef.h>
#include <stdio.h>
#include <linux/ivshmem.h>
#include <compat/kvmfr.h>
#define S(t) printf("sizeof %s %zu\n", #t, sizeof(struct t))
#define F(t, f) printf("offsetof %s.%s %zu\nsizeof %s.%s %zu\n", #t, #f, offsetof(struct t, f), #t, #f, sizeof(((struct t *)0)->f))
#define C(c) printf("const %s %llu\n", #c, (unsigned long long)(c))
int main(void)
{{
{body}	return 0;
}}
"#
    )
}

/// The facts of the C header, as a program built with `cc` prints them.
fn c_facts(cc: &Path) -> BTreeMap<String, u64> {
    common::c_output(cc, "kernel_uapi", &program())
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The same facts of the module's Rust mirror.
fn rust_facts() -> BTreeMap<String, u64> {
    let mut rust = BTreeMap::new();
    macro_rules! rust_lines {
        ($c:ident, $r:ident, [$(($cf:ident, $rf:ident)),*]) => {
            rust.insert(concat!("sizeof ", stringify!($c)).to_string(), size_of::<$r>() as u64);
            let v = <$r>::default();
            $(
                let f = concat!(stringify!($c), ".", stringify!($cf));
                rust.insert(format!("offsetof {f}"), offset_of!($r, $rf) as u64);
                rust.insert(format!("sizeof {f}"), size_of_val(&v.$rf) as u64);
            )*
        };
    }
    structs!(rust_lines);
    kvmfr_structs!(rust_lines);
    for (name, value) in constants() {
        rust.insert(format!("const {name}"), value);
    }
    rust
}

fn kernel_mirror_matches_the_c_header(cc: PathBuf) {
    let c = c_facts(&cc);
    let rust = rust_facts();
    common::assert_same_facts(&c, &rust, "rust/uapi.rs");
}

/// No padding: every byte of a structure is some field's, so copying it
/// to user space as bytes copies nothing uninitialised.
fn kernel_mirror_has_no_padding() {
    macro_rules! contiguous {
        ($c:ident, $r:ident, [$(($cf:ident, $rf:ident)),*]) => {
            let v = <$r>::default();
            let mut end = 0;
            $(
                assert_eq!(
                    offset_of!($r, $rf),
                    end,
                    "padding before {}.{}",
                    stringify!($r),
                    stringify!($rf)
                );
                end += size_of_val(&v.$rf);
            )*
            assert_eq!(size_of::<$r>(), end, "padding at the end of {}", stringify!($r));
        };
    }
    structs!(contiguous);
}

/// kvmfr's numbers as Looking Glass's kvmfr.h 0.0.12 gives them, so that
/// a mistake made in both the header and the mirror still shows.
fn kvmfr_numbers_are_kvmfrs() {
    assert_eq!(KVMFR_DMABUF_GETSIZE, 0x7544);
    assert_eq!(KVMFR_DMABUF_CREATE, 0x4018_7542);
    assert_eq!(size_of::<KvmfrDmabufCreate>(), 24);
}
