//! Selftests of `KVMFR_DMABUF_CREATE`: ranges of BAR2 exported as
//! dma-bufs, used as Looking Glass's client uses them (open `/dev/kvmfr0`,
//! GETSIZE, map, then one CREATE per frame with CLOEXEC, mapped by the
//! importer), and what the driver refuses.

use crate::data;
use crate::fixture::*;
use crate::importer::{self, DEFER, Importer, P2P, REVOCABLE, Range};
use crate::kvmfr::{CREATE, GETSIZE, getsize, open_rw};
use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{self as sys, Map, errname, errno};
use ivshmem::{CacheMode, Device};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use vmrun_protocol::Request;

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const PMD: usize = 2 << 20;
/// `KVMFR_DMABUF_FLAG_CLOEXEC`.
const CLOEXEC: u8 = 1;
/// `DMA_BUF_IOCTL_SYNC`, `_IOW('b', 0, struct dma_buf_sync)`.
const DMA_BUF_IOCTL_SYNC: u32 = 0x4008_6200;
const SYNC_RW: u64 = 3;
const SYNC_END: u64 = 4;

/// `struct kvmfr_dmabuf_create`, with its padding spelled out so that
/// tests can fill it.
#[repr(C)]
#[derive(Clone, Copy)]
struct CreateReq {
    flags: u8,
    pad: [u8; 7],
    offset: u64,
    size: u64,
}

/// CREATE on `fd`: the new descriptor, or the errno.
fn create_raw(fd: &impl AsFd, req: &CreateReq) -> Result<OwnedFd, i32> {
    let mut req = *req;
    let fd = ioctl_value(fd, CREATE, (&raw mut req).cast())?;
    // SAFETY: CREATE succeeded, so `fd` is a new descriptor that nothing else
    // in this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// CREATE of `[offset, offset + size)` with `flags`, as Looking Glass asks
/// (padding not zeroed).
fn create(fd: &impl AsFd, flags: u8, offset: u64, size: u64) -> Result<OwnedFd, Failure> {
    let req = CreateReq {
        flags,
        pad: [0xa5; 7],
        offset,
        size,
    };
    create_raw(fd, &req).map_err(|e| {
        Failure::Fail(format!(
            "CREATE flags {flags:#x} offset {offset:#x} size {size:#x}: {}",
            errname(e)
        ))
    })
}

/// `DMA_BUF_IOCTL_SYNC` with `flags`: 0 or the errno.
fn sync(buf: &impl AsFd, flags: u64) -> i32 {
    let mut f = flags;
    raw_ioctl(buf, DMA_BUF_IOCTL_SYNC, (&raw mut f).cast())
}

/// The value of `key` in `/proc/self/fdinfo` of `fd`.
fn fdinfo(fd: &impl AsFd, key: &str) -> Result<String, Failure> {
    let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
    let text = std::fs::read_to_string(&path)?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| Failure::Fail(format!("no {key} in {path}:\n{text}")))
}

/// A copy of `len` bytes at `off` of `map`.
fn read_at(map: &Map, off: usize, len: usize) -> Vec<u8> {
    assert!(off + len <= map.len);
    let mut buf = vec![0u8; len];
    // SAFETY: `[off, off + len)` lies in `map` (asserted), which is readable
    // and lives across the copy; `buf` holds `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping(map.ptr.add(off), buf.as_mut_ptr(), len) };
    buf
}

/// Writes `bytes` at `off` of `map`.
fn write_at(map: &Map, off: usize, bytes: &[u8]) {
    assert!(off + bytes.len() <= map.len);
    // SAFETY: `[off, off + len)` lies in `map` (asserted), which is writable
    // and lives across the copy.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.ptr.add(off), bytes.len()) };
}

/// Looking Glass's open sequence on `/dev/kvmfr0`: GETSIZE, map the node,
/// CREATE the whole BAR with CLOEXEC, map the buffer at page offset 0 and
/// at page offset 1; the host's data reads through all three; the guest's
/// data written through the buffer reads through the other mappings and
/// (the runner checks) on the host; SYNC brackets work. Then one CREATE per
/// "frame" at several page-aligned offsets, each mapped and read.
pub fn kvmfr_open() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let node = open_rw("/dev/kvmfr0")?;
    let size =
        getsize(&node, GETSIZE).map_err(|e| Failure::Fail(format!("GETSIZE: {}", errname(e))))?;
    let len = size as usize;
    let shm = Map::new(node.as_fd(), len, RW, libc::MAP_SHARED, 0)?;
    let buf = create(&node, CLOEXEC, 0, size as u64)?;
    // SAFETY: F_GETFD takes no argument and reads nothing of this process.
    let fdflags = unsafe { libc::fcntl(buf.as_raw_fd(), libc::F_GETFD) };
    check!(
        fdflags >= 0 && fdflags & libc::FD_CLOEXEC != 0,
        "the buffer's descriptor has flags {fdflags:#x}, want FD_CLOEXEC"
    );
    let (exp, bytes) = (fdinfo(&buf, "exp_name")?, fdinfo(&buf, "size")?);
    println!("# /dev/kvmfr0: GETSIZE {size}; CREATE gave a dma-buf of {bytes} bytes from {exp}");
    check!(
        exp == "ivshmem" && bytes == size.to_string(),
        "fdinfo: exp_name {exp}, size {bytes}; want ivshmem, {size}"
    );
    let at0 = Map::new(buf.as_fd(), len, RW, libc::MAP_SHARED, 0)?;
    let at1 = Map::new(buf.as_fd(), len - PAGE, RW, libc::MAP_SHARED, PAGE as i64)?;
    check!(
        sync(&buf, SYNC_RW) == 0,
        "DMA_BUF_IOCTL_SYNC start: {}",
        errname(sync(&buf, SYNC_RW))
    );
    data::check_host_wrote(&read_at(&at0, 0, len), "the dma-buf at offset 0")?;
    let host = read_at(&shm, 0, len);
    check!(
        read_at(&at1, 0, len - PAGE) == host[PAGE..],
        "the dma-buf mapped at page 1 does not read BAR2 from page 1"
    );
    let mut guest = vec![0u8; len];
    data::guest_data(&mut guest);
    write_at(&at0, 0, &guest);
    check!(
        sync(&buf, SYNC_RW | SYNC_END) == 0,
        "DMA_BUF_IOCTL_SYNC end: {}",
        errname(sync(&buf, SYNC_RW | SYNC_END))
    );
    check!(
        read_at(&at1, 0, len - PAGE) == guest[PAGE..] && read_at(&shm, 0, len) == guest,
        "what the dma-buf's first mapping wrote does not read through its second or the node"
    );
    println!(
        "# host data read and guest data written through the dma-buf, seen at page 1 and through the node"
    );
    drop((at0, at1, buf));

    // Once per frame: a buffer at the frame's page-aligned offset.
    let frames = [0, PAGE, 3 * PAGE, PMD, len - 2 * PAGE];
    for off in frames {
        let n = (len - off).min(PMD);
        let b = create(&node, CLOEXEC, off as u64, n as u64)?;
        let m = Map::new(b.as_fd(), n, libc::PROT_READ, libc::MAP_SHARED, 0)?;
        check!(
            read_at(&m, 0, n) == guest[off..off + n],
            "the dma-buf at {off:#x} ({n} bytes) does not read BAR2 there"
        );
    }
    println!(
        "# {} per-frame buffers at offsets {frames:x?} read BAR2 there",
        frames.len()
    );
    Ok(())
}

/// What a dma-buf offers beyond Looking Glass's sequence: PMD entries for a
/// 2 MiB-aligned mapping of a 2 MiB-aligned range, `MAP_PRIVATE` refused,
/// `EBUSY` while the node is mapped with another cache mode, a buffer
/// outliving its descriptor's node file, and rmmod refused while one lives.
pub fn kvmfr_dmabuf() -> TestResult {
    let devs = devices(1)?;
    let m = load()?;
    let node = open_rw("/dev/kvmfr0")?;
    let len = getsize(&node, GETSIZE)
        .map_err(|e| Failure::Fail(format!("GETSIZE: {}", errname(e))))? as usize;
    if len < 2 * PMD {
        fail!("BAR2 has {len} bytes: this test needs 4 MiB or more");
    }
    let buf = create(&node, 0, PMD as u64, PMD as u64)?;
    expect_errno(
        "MAP_PRIVATE of a dma-buf",
        raw_mmap(&buf, PMD, RW, libc::MAP_PRIVATE, 0),
        libc::EINVAL,
    )?;
    expect_errno(
        "a mapping past the buffer",
        raw_mmap(&buf, 2 * PAGE, RW, libc::MAP_SHARED, (PMD - PAGE) as i64),
        libc::EINVAL,
    )?;
    let (bar_start, _) = devs[0].bar(2)?;
    let aligned = Map::aligned(buf.as_fd(), PMD, RW, libc::MAP_SHARED, 0, PMD)?;
    let before = faults()?;
    write_at(&aligned, 0, &[0x5a; 64]);
    write_at(&aligned, PMD - 64, &[0x5a; 64]);
    let after = faults()?;
    let (pte, pmd) = (after.0 - before.0, after.1 - before.1);
    println!("# a 2 MiB-aligned mapping of the buffer at 2 MiB: {pte} PTE and {pmd} PMD faults");
    if bar_start as usize % PMD == 0 {
        check!(
            aligned.ptr as usize % PMD == 0 && pmd == 1 && pte == 0,
            "want one PMD fault and no PTE fault at {:p}",
            aligned.ptr
        );
    } else {
        check!(
            pte == 2,
            "BAR2 at {bar_start:#x} is not 2 MiB-aligned: want 2 PTE faults"
        );
    }
    drop(aligned);

    // The node mapped write-combining: a write-back mapping would alias.
    let dev = Device::open(0)?;
    let wc = dev.map(0, PAGE, CacheMode::WriteCombining)?;
    expect_errno(
        "mapping a dma-buf while the node is mapped write-combining",
        raw_mmap(&buf, PMD, RW, libc::MAP_SHARED, 0),
        libc::EBUSY,
    )?;
    drop((wc, dev));

    // The buffer lives on without the node's file, and holds the module.
    drop(node);
    let map = Map::new(buf.as_fd(), PMD, RW, libc::MAP_SHARED, 0)?;
    write_at(&map, 0, b"dma-buf");
    drop(map);
    expect_rmmod_refused("a dma-buf was open")?;
    drop(buf);
    Ok(m.unload()?)
}

/// Device importers (`map_dma_buf`), through the suite's importer module:
/// the ivshmem function itself as the importing device (the same
/// function: PCI P2P maps by bus address) gets one range per buffer, the
/// bus address of BAR2 plus the buffer's offset, for buffers at several
/// offsets and sizes. Importers the driver cannot revoke or that need
/// struct pages get `EOPNOTSUPP` at attach, and so does a device PCI P2P
/// cannot reach (another root-bus function, unless the CPU is an AMD Zen).
/// A kernel mapping (`vmap`) reads what the node wrote.
pub fn dmabuf_import() -> TestResult {
    let devs = devices(1)?;
    let _m = load()?;
    let _imp = importer::load()?;
    let node = open_rw("/dev/kvmfr0")?;
    let len = getsize(&node, GETSIZE)
        .map_err(|e| Failure::Fail(format!("GETSIZE: {}", errname(e))))? as usize;
    if len < 2 * PMD {
        fail!("BAR2 has {len} bytes: this test needs 4 MiB or more");
    }
    let (bar, _) = devs[0].bar(2)?;
    let addr = devs[0].address();
    let ranges = [(0, PAGE), (PAGE, 3 * PAGE), (PMD, PMD), (0, len)];
    for (off, n) in ranges {
        let buf = create(&node, CLOEXEC, off as u64, n as u64)?;
        let imp = Importer::open()?;
        imp.attach(&buf, &addr, P2P | REVOCABLE).map_err(|e| {
            Failure::Fail(format!(
                "attaching {addr} to the buffer at {off:#x}: {}",
                errname(e)
            ))
        })?;
        let (got, count) = imp
            .map()
            .map_err(|e| Failure::Fail(format!("map_dma_buf at {off:#x}: {}", errname(e))))?;
        // sysfs `resource` has the CPU address; the bus address is the
        // same on x86 (the host bridge's offset is 0).
        let want = Range {
            addr: bar + off as u64,
            len: n as u64,
        };
        check!(
            count == 1 && got == [want],
            "map_dma_buf of [{off:#x}, +{n:#x}) for {addr}: {count} ranges {got:x?}, want {want:x?} (BAR2 at {bar:#x})"
        );
        check!(
            imp.status()?.mapped == 1,
            "the importer does not see its mapping"
        );
        imp.unmap()
            .map_err(|e| Failure::Fail(format!("unmap: {}", errname(e))))?;
    }
    println!(
        "# {addr} importing its own BAR2: one range at BAR2 ({bar:#x}) + offset for each of {ranges:x?}"
    );

    // Importers the driver refuses: a static attach (it cannot be told to
    // give the memory back), one without invalidate_mappings, one that
    // needs struct pages.
    let buf = create(&node, CLOEXEC, 0, PMD as u64)?;
    for (flags, what) in [
        (0, "a static importer"),
        (P2P, "an importer without invalidate_mappings"),
        (REVOCABLE, "an importer that needs struct pages"),
    ] {
        let imp = Importer::open()?;
        expect_errno(
            &format!("attaching {what}"),
            imp.attach(&buf, &addr, flags).err().unwrap_or(0),
            libc::EOPNOTSUPP,
        )?;
    }

    // Another PCI function on the root bus: no common upstream bridge,
    // so the kernel allows P2P only through a host bridge it lists (q35's
    // 8086:29c0 is not listed) or on an AMD Zen CPU.
    let other = format!("{}:00:00.0", &addr[..4]);
    let (vendor, family) = cpu_vendor_family()?;
    let zen = vendor == "AuthenticAMD" && family >= 0x17;
    let imp = Importer::open()?;
    let got = imp.attach(&buf, &other, P2P | REVOCABLE).err().unwrap_or(0);
    if zen {
        println!(
            "# {other} (another root-bus function) on an AMD Zen CPU: attach {} (not checked: the path depends on the host)",
            errname(got)
        );
    } else {
        expect_errno(
            &format!(
                "attaching {other} (root bus, no listed host bridge, {vendor} family {family:#x})"
            ),
            got,
            libc::EOPNOTSUPP,
        )?;
    }
    drop(imp);

    // A kernel mapping reads what the node's mapping wrote, at the
    // buffer's offset.
    let shm = Map::new(node.as_fd(), len, RW, libc::MAP_SHARED, 0)?;
    let marker = *b"vmap-ivshmem-0123456789abcdef!!!";
    write_at(&shm, PMD + PAGE + 8, &marker);
    let at = create(&node, CLOEXEC, PMD as u64, PMD as u64)?;
    let imp = Importer::open()?;
    let got = imp
        .vmap_read(&at, (PAGE + 8) as u64, marker.len())
        .map_err(|e| Failure::Fail(format!("vmap of the buffer at 2 MiB: {}", errname(e))))?;
    check!(
        got == marker,
        "vmap of the buffer at 2 MiB read {got:?} at page 1 + 8, where the node wrote {marker:?}"
    );
    println!("# vmap of a buffer reads what the node wrote there");
    Ok(())
}

/// The CPU's vendor and family, as `/proc/cpuinfo` gives them (the kernel's
/// P2P rules allow any path on AMD family 0x17 and later).
fn cpu_vendor_family() -> Result<(String, u32), Failure> {
    let text = std::fs::read_to_string("/proc/cpuinfo")?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
            .ok_or_else(|| Failure::Fail(format!("no {key:?} in /proc/cpuinfo")))
    };
    let family = field("cpu family")?;
    let family = family
        .parse()
        .map_err(|_| Failure::Fail(format!("cpu family {family:?} is not a number")))?;
    Ok((field("vendor_id")?, family))
}

/// CREATE with bad input: every field, sizes past the BAR, a bad pointer,
/// other sizes and directions, read-only and write-only opens. The padding Looking Glass
/// leaves unset is accepted.
pub fn kvmfr_bad_input() -> TestResult {
    devices(1)?;
    let _m = load()?;
    let node = open_rw("/dev/kvmfr0")?;
    let bar = getsize(&node, GETSIZE)
        .map_err(|e| Failure::Fail(format!("GETSIZE: {}", errname(e))))? as u64;
    let page = PAGE as u64;
    let req = |flags: u8, offset: u64, size: u64| CreateReq {
        flags,
        pad: [0; 7],
        offset,
        size,
    };
    let cases = [
        ("flags 0x2", req(2, 0, page)),
        ("flags 0x80", req(0x80, 0, page)),
        ("flags 0xff", req(0xff, 0, page)),
        ("offset 1", req(0, 1, page)),
        ("offset 4095", req(0, 4095, page)),
        ("offset at the end", req(0, bar, page)),
        ("offset 2^64 - 4096", req(0, !4095u64, page)),
        ("size 0", req(0, 0, 0)),
        ("size 1", req(0, 0, 1)),
        ("size 4097", req(0, 0, page + 1)),
        ("size past the end", req(0, 0, bar + page)),
        ("offset + size past the end", req(0, page, bar)),
        ("offset + size overflowing", req(0, page, !4095u64)),
    ];
    for (what, r) in &cases {
        expect_errno(
            &format!("CREATE, {what}"),
            create_raw(&node, r).err().unwrap_or(0),
            libc::EINVAL,
        )?;
    }
    let mut garbage = req(CLOEXEC, 0, page);
    garbage.pad = [0xff; 7];
    check!(
        create_raw(&node, &garbage).is_ok(),
        "CREATE with non-zero padding was refused: {}",
        errname(create_raw(&node, &garbage).err().unwrap_or(0))
    );
    expect_errno(
        "CREATE with a NULL argument",
        raw_ioctl(&node, CREATE, std::ptr::null_mut()),
        libc::EFAULT,
    )?;
    expect_errno(
        "CREATE with an unmapped argument",
        raw_ioctl(&node, CREATE, 8 as *mut libc::c_void),
        libc::EFAULT,
    )?;
    let mut big = [0u8; 32];
    for (what, cmd) in [
        (
            "CREATE with 16 bytes",
            (CREATE & !(0x3fff << 16)) | (16 << 16),
        ),
        (
            "CREATE with 32 bytes",
            (CREATE & !(0x3fff << 16)) | (32 << 16),
        ),
        ("CREATE as _IOWR", CREATE | (3 << 30)),
    ] {
        expect_errno(
            what,
            raw_ioctl(&node, cmd, big.as_mut_ptr().cast()),
            libc::ENOTTY,
        )?;
    }
    // A buffer maps readable and an importer may write: only a file open
    // for both may ask.
    let ro = File::open("/dev/kvmfr0")?;
    expect_errno(
        "CREATE on an O_RDONLY open",
        create_raw(&ro, &req(0, 0, page)).err().unwrap_or(0),
        libc::EBADF,
    )?;
    let wo = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kvmfr0")?;
    expect_errno(
        "CREATE on an O_WRONLY open",
        create_raw(&wo, &req(0, 0, page)).err().unwrap_or(0),
        libc::EBADF,
    )?;
    println!("# {} bad requests refused", cases.len() + 7);
    Ok(())
}

/// What an importer that had a buffer mapped sees once `what` (the
/// device's removal) has returned: told once, unmapped (the removal waited
/// for it), and a new map gets ENODEV.
fn expect_revoked(imp: &Importer, what: &str) -> TestResult {
    let st = imp.status()?;
    check!(
        st == importer::Status {
            invalidations: 1,
            mapped: 0
        },
        "the importer after {what}: {st:?}, want one invalidation and no mapping \
         (mapped 1: {what} did not wait for the unmap)"
    );
    expect_errno(
        &format!("map_dma_buf after {what}"),
        imp.map().err().unwrap_or(0),
        libc::ENODEV,
    )
}

/// sysfs unbind with a device importer mapped (it unmaps only 500 ms after
/// it is told) and a second buffer mapped by the CPU: when the unbind
/// returns, the importer was told once and has unmapped, a new map gets
/// ENODEV, and the other buffer's mapping gets SIGBUS; the descriptors
/// close cleanly, and after rebinding a new buffer imports again.
pub fn dmabuf_unbind() -> TestResult {
    let devs = devices(1)?;
    let pci = devs[0].clone();
    let _m = load()?;
    let _imp = importer::load()?;
    let node = open_rw("/dev/kvmfr0")?;
    let buf = create(&node, CLOEXEC, 0, PMD as u64)?;
    let other = create(&node, CLOEXEC, PMD as u64, PAGE as u64)?;
    let map = Map::new(other.as_fd(), PAGE, RW, libc::MAP_SHARED, 0)?;
    write_at(&map, 0, b"other");
    let imp = Importer::open()?;
    let addr = pci.address();
    imp.attach(&buf, &addr, P2P | REVOCABLE | DEFER)
        .map_err(|e| Failure::Fail(format!("attaching the importer: {}", errname(e))))?;
    imp.map()
        .map_err(|e| Failure::Fail(format!("map_dma_buf: {}", errname(e))))?;
    // The write returns when the driver's unbind has finished.
    sys::unbind(&pci.path)?;
    expect_revoked(&imp, "the unbind")?;
    expect_sigbus(map.ptr, "the other buffer's mapping")?;
    drop((imp, map, other, buf, node));
    println!(
        "# the unbind told the importer once and waited for its unmap; the other buffer's mapping was zapped"
    );

    sys::bind(&pci.path)?;
    check!(
        sys::wait_for(10, || std::path::Path::new("/dev/kvmfr0").exists()),
        "/dev/kvmfr0 did not come back after rebinding"
    );
    let node = open_rw("/dev/kvmfr0")?;
    let again = create(&node, CLOEXEC, 0, PAGE as u64)?;
    let imp = Importer::open()?;
    imp.attach(&again, &addr, P2P | REVOCABLE)
        .map_err(|e| Failure::Fail(format!("attaching after rebinding: {}", errname(e))))?;
    imp.map()
        .map_err(|e| Failure::Fail(format!("map_dma_buf after rebinding: {}", errname(e))))?;
    Ok(())
}

/// Hot-unplug with dma-bufs alive: one process maps and touches a buffer,
/// a forked child holds the buffer's descriptor, and a device importer has
/// it mapped and unmaps only 500 ms after it is told. After `device_del`,
/// the importer was told once and had unmapped before the removal ended (a
/// new map gets ENODEV, a new vmap reads zeros), the mapping gets SIGBUS,
/// the child's SYNC and mmap get ENODEV, and the descriptors close
/// cleanly; after `device_add`, CREATE works again.
pub fn dmabuf_unplug() -> TestResult {
    let devs = devices(1)?;
    let pci = devs[0].clone();
    let _m = load()?;
    let node = open_rw("/dev/kvmfr0")?;
    let buf = create(&node, CLOEXEC, 0, PMD as u64)?;
    let map = Map::new(buf.as_fd(), PMD, RW, libc::MAP_SHARED, 0)?;
    write_at(&map, 0, &0xfeed_f00du32.to_ne_bytes());
    // A device importer with the buffer mapped, which unmaps 500 ms after
    // it is told: the removal must tell it and wait for that unmap. Without
    // the importer module the rest runs, and the test then skips.
    let (_loaded, no_importer) = match importer::load() {
        Ok(l) => (Some(l), None),
        Err(Failure::Skip(why)) => (None, Some(why)),
        Err(e) => return Err(e),
    };
    let imp = match _loaded {
        Some(_) => {
            let imp = Importer::open()?;
            imp.attach(&buf, &pci.address(), P2P | REVOCABLE | DEFER)
                .map_err(|e| Failure::Fail(format!("attaching the importer: {}", errname(e))))?;
            imp.map()
                .map_err(|e| Failure::Fail(format!("map_dma_buf: {}", errname(e))))?;
            Some(imp)
        }
        None => None,
    };
    // A child that holds the buffer's descriptor: once the device is gone,
    // it tries SYNC and mmap and exits with what it saw.
    let bfd = buf.as_raw_fd();
    let child = Forked::start(move || {
        let mut f = SYNC_RW;
        // SAFETY: In the child: `f` is a local of the size SYNC takes; the
        // descriptor was inherited; the mapping, if made, is never touched
        // and goes with the process.
        unsafe {
            if libc::ioctl(bfd, DMA_BUF_IOCTL_SYNC as _, &raw mut f) != -1
                || errno() != libc::ENODEV
            {
                2
            } else if libc::mmap(std::ptr::null_mut(), PAGE, RW, libc::MAP_SHARED, bfd, 0)
                != libc::MAP_FAILED
                || errno() != libc::ENODEV
            {
                3
            } else {
                0
            }
        }
    })?;
    println!("{}", Request::DeviceDel("shm0".into()).line());
    check!(
        sys::wait_for(60, || !pci.path.exists()),
        "{} still present 60 s after device_del",
        pci.address()
    );
    // At once: the importer unmaps 500 ms after it was told, and the
    // removal must have waited for that.
    if let Some(imp) = &imp {
        expect_revoked(imp, "the removal")?;
        // A new kernel mapping maps a zeroed page: BAR2 is gone.
        let got = imp
            .vmap_read(&buf, 0, 8)
            .map_err(|e| Failure::Fail(format!("vmap after the removal: {}", errname(e))))?;
        check!(
            got == [0; 8],
            "vmap after the removal read {got:x?}, want zeros"
        );
        println!(
            "# the importer was told once, unmapped before the removal ended; a new vmap reads zeros"
        );
    }
    drop(imp);
    let ended = child.go()?;
    check!(
        ended == Ok(0),
        "the child holding the buffer: {ended:?} (exit 2: SYNC did not fail with ENODEV, \
         3: mmap did not)"
    );
    expect_sigbus(map.ptr, "the buffer's mapping")?;
    expect_errno(
        "SYNC on the buffer after unplug",
        sync(&buf, SYNC_RW),
        libc::ENODEV,
    )?;
    drop((map, buf, node));
    println!("{}", Request::DeviceAdd("shm0".into()).line());
    // The kvmfr alias is made after /dev/ivshmem0: wait for it, not for
    // the node.
    check!(
        sys::wait_for(60, || std::path::Path::new("/dev/kvmfr0").exists()),
        "/dev/kvmfr0 did not come back"
    );
    let node = open_rw("/dev/kvmfr0")?;
    let again = create(&node, CLOEXEC, 0, PAGE as u64)?;
    let m = Map::new(again.as_fd(), PAGE, libc::PROT_READ, libc::MAP_SHARED, 0)?;
    let v = u32::from_ne_bytes(read_at(&m, 0, 4).try_into().unwrap_or_default());
    check!(
        v == 0xfeed_f00d,
        "a buffer of the replugged device reads {v:#x} where the old one wrote 0xfeedf00d"
    );
    if let Some(why) = no_importer {
        skip!("all but the device importer's checks passed; {why}");
    }
    Ok(())
}
