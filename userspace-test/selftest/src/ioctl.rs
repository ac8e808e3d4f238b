//! Selftests of the ioctls the driver must refuse, and of its
//! extensible-structure rules.

use crate::fixture::*;
use crate::{TestResult, check};
use guest_sys::errname;
use ivshmem::Device;
use ivshmem::uapi::*;

/// ioctls the driver must refuse, and its extensible-structure rules.
pub fn ioctl_bad() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let dev = Device::open(0)?;
    let info_size = size_of::<ivshmem_info>();
    let mut big = [0xffu8; 128];
    let mut small = [0u8; 8];
    let cp = |c: &mut ivshmem_cache| (c as *mut ivshmem_cache).cast::<libc::c_void>();
    let cases: Vec<(&str, u32, *mut libc::c_void, i32)> = vec![
        (
            "unknown command of ours",
            ioc(0, 0x7f, 0),
            std::ptr::null_mut(),
            libc::ENOTTY,
        ),
        (
            "another driver's magic",
            0x8008_4201,
            big.as_mut_ptr().cast(),
            libc::ENOTTY,
        ),
        (
            "INFO as a write",
            ioc(IOC_WRITE, 0, info_size),
            big.as_mut_ptr().cast(),
            libc::ENOTTY,
        ),
        (
            "INFO to a NULL pointer",
            IVSHMEM_IOCTL_INFO,
            std::ptr::null_mut(),
            libc::EFAULT,
        ),
        (
            "INFO to a kernel address",
            IVSHMEM_IOCTL_INFO,
            0xffff_8000_0000_0000usize as *mut _,
            libc::EFAULT,
        ),
        (
            "INFO shorter than version 1",
            ioc(IOC_READ, 0, 8),
            small.as_mut_ptr().cast(),
            libc::EINVAL,
        ),
        (
            "SET_CACHE from a bad pointer",
            IVSHMEM_IOCTL_SET_CACHE,
            16usize as *mut _,
            libc::EFAULT,
        ),
    ];
    for (what, cmd, arg, want) in cases {
        expect_errno(what, raw_ioctl(&dev, cmd, arg), want)?;
    }
    // A newer, longer INFO: our part filled, the rest zeroed.
    let got = raw_ioctl(&dev, ioc(IOC_READ, 0, big.len()), big.as_mut_ptr().cast());
    check!(got == 0, "INFO of 128 bytes: {}", errname(got));
    check!(
        big[info_size..].iter().all(|b| *b == 0),
        "INFO did not zero the unknown tail"
    );
    check!(
        big[..8] == dev.info()?.size.to_le_bytes(),
        "INFO of 128 bytes has the wrong size field"
    );
    for (what, mut c, want) in [
        (
            "reserved field set",
            ivshmem_cache {
                reserved: 1,
                ..Default::default()
            },
            libc::EINVAL,
        ),
        (
            "unknown flag",
            ivshmem_cache {
                flags: 1,
                ..Default::default()
            },
            libc::EINVAL,
        ),
        (
            "unknown mode",
            ivshmem_cache {
                mode: 3,
                ..Default::default()
            },
            libc::EINVAL,
        ),
        (
            "write-combining",
            ivshmem_cache {
                mode: IVSHMEM_CACHE_WC,
                ..Default::default()
            },
            0,
        ),
    ] {
        let got = raw_ioctl(&dev, IVSHMEM_IOCTL_SET_CACHE, cp(&mut c));
        expect_errno(&format!("SET_CACHE {what}"), got, want)?;
    }
    // Longer SET_CACHE: fine with a zero tail, E2BIG with anything else.
    let mut longer = [0u8; 32];
    let got = raw_ioctl(&dev, ioc(IOC_WRITE, 1, 32), longer.as_mut_ptr().cast());
    check!(
        got == 0,
        "SET_CACHE of 32 zero-tailed bytes: {}",
        errname(got)
    );
    longer[20] = 1;
    let got = raw_ioctl(&dev, ioc(IOC_WRITE, 1, 32), longer.as_mut_ptr().cast());
    check!(
        got == libc::E2BIG,
        "SET_CACHE with a nonzero unknown tail: {}, want E2BIG",
        errname(got)
    );
    let got = raw_ioctl(&dev, ioc(IOC_WRITE, 1, 8), longer.as_mut_ptr().cast());
    check!(
        got == libc::EINVAL,
        "SET_CACHE shorter than version 1: {}, want EINVAL",
        errname(got)
    );
    Ok(())
}

/// The reserved fields and flags of RING, SET_MASK and BIND_EVENTFD are
/// refused when non-zero (`EINVAL`), on a doorbell device, where the
/// requests are otherwise valid: each case sets one field of a request
/// that succeeds with it zero.
pub fn doorbell_reserved() -> TestResult {
    let bell = open_bell()?;
    let efd = eventfd()?;
    let ring = |f: &dyn Fn(&mut ivshmem_ring)| {
        let mut r = ivshmem_ring {
            peer: bell.me,
            vector: 0,
            ..Default::default()
        };
        f(&mut r);
        raw_ioctl(&bell.dev, IVSHMEM_IOCTL_RING, (&raw mut r).cast())
    };
    let mask = |f: &dyn Fn(&mut ivshmem_mask)| {
        let mut m = ivshmem_mask::default();
        m.mask[0] = 1;
        f(&mut m);
        raw_ioctl(&bell.dev, IVSHMEM_IOCTL_SET_MASK, (&raw mut m).cast())
    };
    let bind = |f: &dyn Fn(&mut ivshmem_eventfd)| {
        let mut b = ivshmem_eventfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&efd),
            ..Default::default()
        };
        f(&mut b);
        raw_ioctl(&bell.dev, IVSHMEM_IOCTL_BIND_EVENTFD, (&raw mut b).cast())
    };
    let cases: [(&str, i32, i32); 12] = [
        ("RING, all zero", ring(&|_| {}), 0),
        ("RING, flags 1", ring(&|r| r.flags = 1), libc::EINVAL),
        (
            "RING, flags 1 << 31",
            ring(&|r| r.flags = 1 << 31),
            libc::EINVAL,
        ),
        ("RING, reserved 1", ring(&|r| r.reserved = 1), libc::EINVAL),
        ("SET_MASK, all zero", mask(&|_| {}), 0),
        ("SET_MASK, flags 1", mask(&|m| m.flags = 1), libc::EINVAL),
        (
            "SET_MASK, reserved0 1",
            mask(&|m| m.reserved0 = 1),
            libc::EINVAL,
        ),
        (
            "SET_MASK, reserved 1",
            mask(&|m| m.reserved = 1),
            libc::EINVAL,
        ),
        ("BIND_EVENTFD, all zero", bind(&|_| {}), 0),
        (
            "BIND_EVENTFD, flags 1",
            bind(&|b| b.flags = 1),
            libc::EINVAL,
        ),
        (
            "BIND_EVENTFD, flags 1 << 15",
            bind(&|b| b.flags = 1 << 15),
            libc::EINVAL,
        ),
        (
            "BIND_EVENTFD, reserved 1",
            bind(&|b| b.reserved = 1),
            libc::EINVAL,
        ),
    ];
    for (what, got, want) in cases {
        expect_errno(what, got, want)?;
    }
    // Leave the file as it was: every vector selected, nothing bound.
    bell.dev.set_vector_mask(0..bell.info.vectors as u16)?;
    check!(
        bind(&|b| b.fd = -1) == 0,
        "removing the binding failed: {}",
        errname(bind(&|b| b.fd = -1))
    );
    Ok(())
}
