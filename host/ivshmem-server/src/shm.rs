//! Creating the shared memory: a POSIX object or a file in a directory.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use log::{debug, info, warn};
use rustix::fs::{
    AtFlags, FlockOperation, Mode, OFlags, flock, fstat, fstatfs, ftruncate, openat, unlinkat,
};
use rustix::io::Errno;

use crate::config::ShmBacking;

/// `f_type` of a hugetlbfs mount (linux/magic.h).
pub const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// The shared memory the server hands out.
#[derive(Debug)]
pub struct Shm {
    /// Its descriptor.
    pub fd: OwnedFd,
    /// Its size in bytes.
    pub size: u64,
    /// The huge page size, when it lives on hugetlbfs.
    pub huge_page_size: Option<u64>,
}

/// Rounds `size` up to a multiple of `page` (a power of two size stays a
/// power of two when `page` is one).
pub fn round_to_page(size: u64, page: u64) -> Option<u64> {
    size.checked_next_multiple_of(page)
}

/// Opens or creates the shared memory and gives it `size` bytes (already
/// rounded to a power of two). On hugetlbfs the size is rounded up to a
/// multiple of the huge page size, with a notice.
pub fn open(backing: &ShmBacking, size: u64) -> Result<Shm> {
    match backing {
        ShmBacking::Posix(name) => open_posix(name, size),
        ShmBacking::Dir(dir) => open_in_dir(dir, size),
    }
}

fn open_posix(name: &str, size: u64) -> Result<Shm> {
    let bare = name.trim_start_matches('/');
    if bare.is_empty() || bare == "." || bare == ".." || bare.contains('/') {
        bail!(
            "invalid POSIX shared memory name {name:?}: it must be one path component, e.g. \"ivshmem\""
        );
    }
    debug!("using POSIX shared memory {name:?} (/dev/shm/{bare})");
    // S_IRWXU, as QEMU's server.
    let fd = rustix::shm::open(
        name,
        rustix::shm::OFlags::CREATE | rustix::shm::OFlags::RDWR,
        Mode::RWXU,
    )
    .with_context(|| format!("cannot open POSIX shared memory {name:?}"))?;
    // A shared lock for as long as the memory is in use: this server's
    // descriptor, and the copies it hands to QEMU, share it (one open file
    // description), so it outlives this server while a guest maps the
    // memory. Only a server that finds no one else holding it may resize.
    flock(&fd, FlockOperation::NonBlockingLockShared)
        .with_context(|| format!("cannot lock POSIX shared memory {name:?}"))?;
    let old = fstat(&fd)
        .with_context(|| format!("cannot fstat POSIX shared memory {name:?}"))?
        .st_size as u64;
    if old != size {
        match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => bail!(
                "POSIX shared memory {name:?} is in use (another ivshmem-server, or the guests \
                 of one, map it) with {old} bytes: not resized to {size} bytes; ask for -l {old} \
                 to share it, or stop its users first"
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot lock POSIX shared memory {name:?}"));
            }
        }
        if old != 0 {
            warn!("resizing existing shared memory {name:?} from {old} to {size} bytes");
        }
        ftruncate(&fd, size).with_context(|| {
            format!("cannot set the size of POSIX shared memory {name:?} to {size} bytes")
        })?;
        flock(&fd, FlockOperation::NonBlockingLockShared)
            .with_context(|| format!("cannot lock POSIX shared memory {name:?}"))?;
    }
    Ok(Shm {
        fd,
        size,
        huge_page_size: None,
    })
}

fn open_in_dir(dir: &Path, size: u64) -> Result<Shm> {
    let dirfd = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open directory {}", dir.display()))?;
    // A name that no one else uses, removed right away, as mkstemp + unlink
    // in QEMU's server: the memory lives as long as descriptors to it do.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(rustix::process::getpid().as_raw_nonzero().get() as u32) << 32);
    let mut fd = None;
    for attempt in 0u64..1000 {
        let name = format!(
            "ivshmem.{:012x}",
            seed.wrapping_add(attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) & 0xffff_ffff_ffff
        );
        match openat(
            &dirfd,
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        ) {
            Ok(f) => {
                unlinkat(&dirfd, name.as_str(), AtFlags::empty())
                    .with_context(|| format!("cannot unlink {}/{name}", dir.display()))?;
                fd = Some(f);
                break;
            }
            Err(Errno::EXIST) => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create a file in {}", dir.display()));
            }
        }
    }
    let Some(fd) = fd else {
        bail!("cannot find a free file name in {}", dir.display());
    };

    let fs = fstatfs(&fd).with_context(|| format!("cannot statfs {}", dir.display()))?;
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between targets
    let huge_page_size = (fs.f_type as i64 == HUGETLBFS_MAGIC).then_some(fs.f_bsize as u64);
    let mut size = size;
    if let Some(page) = huge_page_size {
        let rounded = round_to_page(size, page)
            .with_context(|| format!("size {size} cannot be rounded to huge pages of {page}"))?;
        if rounded != size {
            info!(
                "{} is hugetlbfs with {page}-byte pages: size rounded up from {size} to {rounded} bytes",
                dir.display()
            );
            size = rounded;
        } else {
            debug!("{} is hugetlbfs with {page}-byte pages", dir.display());
        }
    }
    debug!("using an unlinked file in {}", dir.display());
    ftruncate(&fd, size).with_context(|| {
        format!(
            "cannot set the size of the shared memory file in {} to {size} bytes",
            dir.display()
        )
    })?;
    Ok(Shm {
        fd,
        size,
        huge_page_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_rounding() {
        assert_eq!(round_to_page(1 << 20, 2 << 20), Some(2 << 20));
        assert_eq!(round_to_page(4 << 20, 2 << 20), Some(4 << 20));
        assert_eq!(round_to_page(4 << 20, 1 << 30), Some(1 << 30));
        assert_eq!(round_to_page(u64::MAX, 1 << 30), None);
    }

    #[test]
    fn file_in_dir_is_unlinked_and_sized() {
        let dir = std::env::temp_dir().join(format!("ivshmem-shm-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shm = open(&ShmBacking::Dir(dir.clone()), 1 << 20).unwrap();
        assert_eq!(fstat(&shm.fd).unwrap().st_size, 1 << 20);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn bad_names_and_dirs() {
        for name in ["", "/", "a/b", ".."] {
            assert!(open(&ShmBacking::Posix(name.into()), 4096).is_err());
        }
        assert!(open(&ShmBacking::Dir("/nonexistent/ivshmem".into()), 4096).is_err());
    }
}
