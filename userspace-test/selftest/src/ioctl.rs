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
