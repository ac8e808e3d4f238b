//! vfio-pci as a contender: an ivshmem PCI function handed to vfio-pci,
//! opened through its IOMMU group and a type1 container, its regions
//! mapped through the device file and an MSI-X vector routed to an
//! eventfd, as a user-space driver would do it.
//!
//! Debian's kernel has no `VFIO_NOIOMMU`, so this needs an IOMMU: the
//! bench guests get QEMU's `intel-iommu`. The vfio modules come from the
//! stock kernel's own modules, put into the initramfs by the runner
//! (`/lib/modules/extra`, loaded in the order of its `order` file).
//!
//! The ioctls of `<linux/vfio.h>` are written out here: libc has none.

use crate::sys;
use guest_sys::Map;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Where the runner puts the extra modules, with `order`.
const EXTRA_MODULES: &str = "/lib/modules/extra";

// `_IO(VFIO_TYPE, VFIO_BASE + n)`: no direction, no size.
const fn vfio_io(n: u32) -> u32 {
    ((b';' as u32) << 8) | (100 + n)
}
const VFIO_GET_API_VERSION: u32 = vfio_io(0);
const VFIO_CHECK_EXTENSION: u32 = vfio_io(1);
const VFIO_SET_IOMMU: u32 = vfio_io(2);
const VFIO_GROUP_GET_STATUS: u32 = vfio_io(3);
const VFIO_GROUP_SET_CONTAINER: u32 = vfio_io(4);
const VFIO_GROUP_GET_DEVICE_FD: u32 = vfio_io(6);
const VFIO_DEVICE_GET_REGION_INFO: u32 = vfio_io(8);
const VFIO_DEVICE_SET_IRQS: u32 = vfio_io(10);

const VFIO_API_VERSION: i32 = 0;
const VFIO_TYPE1_IOMMU: u64 = 1;
const VFIO_TYPE1V2_IOMMU: u64 = 3;
const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
/// The command register in config space, and its Bus Master Enable bit.
const PCI_COMMAND: u64 = 4;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// Region indexes of a vfio-pci device: BAR0 (the registers) and BAR2
/// (the shared memory).
pub const BAR0: u32 = 0;
pub const BAR2: u32 = 2;

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Debug, Default)]
struct GroupStatus {
    argsz: u32,
    flags: u32,
}

/// `struct vfio_region_info` (without capabilities).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RegionInfo {
    argsz: u32,
    pub flags: u32,
    pub index: u32,
    cap_offset: u32,
    /// Bytes.
    pub size: u64,
    /// Where the region is in the device file.
    pub offset: u64,
}

/// `struct vfio_irq_set` with room for one eventfd (`data[]` of one s32).
#[repr(C)]
#[derive(Debug)]
struct IrqSetOne {
    argsz: u32,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    fd: i32,
}

fn os(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// `ioctl(fd, request, arg)` where the argument is a plain value.
fn ioctl_val(fd: BorrowedFd<'_>, request: u32, arg: libc::c_ulong) -> libc::c_int {
    // SAFETY: The vfio value ioctls (API version, extension check, IOMMU type)
    // read nothing through their argument; `fd` is borrowed, so the descriptor
    // stays open for the call, and a bad request is an error return, not
    // undefined behaviour.
    unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) }
}

/// `ioctl(fd, request, arg)` where the argument points to a `T` the
/// kernel reads and may write back.
fn ioctl_ptr<T>(fd: BorrowedFd<'_>, request: u32, arg: &mut T) -> libc::c_int {
    // SAFETY: The `arg` is a live, exclusive `T` of the layout the request
    // expects (the `repr(C)` structs above, an int, or a NUL-terminated name);
    // the kernel writes back at most `argsz`, its size; `fd` is borrowed, so
    // the descriptor stays open for the call.
    unsafe { libc::ioctl(fd.as_raw_fd(), request as _, std::ptr::from_mut(arg)) }
}

fn as_fd(fd: &OwnedFd) -> BorrowedFd<'_> {
    std::os::fd::AsFd::as_fd(fd)
}

/// Loads the modules the runner put in the initramfs, in their order,
/// and checks that vfio-pci can take `dev`. The error says why it
/// cannot, for the SKIP.
pub fn prepare(dev: &Path) -> Result<(), String> {
    if guest_sys::setting_or("vfio", 1) == 0 {
        return Err("left out by the setting ivt_vfio=0".into());
    }
    if !Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
        let order = format!("{EXTRA_MODULES}/order");
        let list = fs::read_to_string(&order).map_err(|e| {
            format!(
                "no vfio modules in the guest ({order}: {e}): the runner was given no \
                 --guest-modules (IVSHMEM_GUEST_MODULES, written by scripts/dkms-install.sh)"
            )
        })?;
        let loaded = fs::read_to_string("/proc/modules").unwrap_or_default();
        for file in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let name = file.trim_end_matches(".ko").replace('-', "_");
            if loaded
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&name))
            {
                continue;
            }
            let out = std::process::Command::new("insmod")
                .arg(format!("{EXTRA_MODULES}/{file}"))
                .output()
                .map_err(|e| format!("cannot run insmod: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "insmod {file} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        if !Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
            return Err("vfio-pci loaded, but /sys/bus/pci/drivers/vfio-pci is missing".into());
        }
    }
    if !dev.join("iommu_group").exists() {
        return Err(format!(
            "{} has no IOMMU group: the guest has no IOMMU, and this kernel has no \
             VFIO_NOIOMMU (the bench guests need the vIOMMU)",
            dev.display()
        ));
    }
    Ok(())
}

/// The PCI address of the function at `dev` (its sysfs directory name).
fn addr(dev: &Path) -> String {
    dev.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Hands the PCI function at `dev`, which no driver holds, to vfio-pci.
pub fn bind(dev: &Path) -> Result<(), String> {
    guest_sys::write_sysfs(dev.join("driver_override"), "vfio-pci").map_err(|e| e.to_string())?;
    guest_sys::write_sysfs("/sys/bus/pci/drivers/vfio-pci/bind", &addr(dev))
        .map_err(|e| e.to_string())
}

/// Takes the PCI function at `dev` from vfio-pci, and lets any driver
/// bind it again.
pub fn unbind(dev: &Path) -> Result<(), String> {
    let r = guest_sys::write_sysfs("/sys/bus/pci/drivers/vfio-pci/unbind", &addr(dev))
        .map_err(|e| e.to_string());
    // An empty override lets the ordinary matching bind again.
    guest_sys::write_sysfs(dev.join("driver_override"), "\n").map_err(|e| e.to_string())?;
    r
}

/// An open vfio-pci device: its container (type1 IOMMU), group and
/// device file.
#[derive(Debug)]
pub struct Device {
    device: OwnedFd,
    // Held for the device's lifetime: closing them detaches it.
    _group: OwnedFd,
    _container: OwnedFd,
}

impl Device {
    /// Opens the PCI function at `dev`, bound to vfio-pci: a container
    /// with the type1 IOMMU (v2 where offered), its IOMMU group in it, and
    /// the device file.
    pub fn open(dev: &Path) -> Result<Self, String> {
        let group = fs::read_link(dev.join("iommu_group"))
            .map_err(|e| format!("{}/iommu_group: {e}", dev.display()))?;
        let group = group.file_name().unwrap_or_default().to_string_lossy();
        let open = |p: &str| -> Result<OwnedFd, String> {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map(OwnedFd::from)
                .map_err(|e| format!("opening {p}: {e}"))
        };
        let container = open("/dev/vfio/vfio")?;
        let v = ioctl_val(as_fd(&container), VFIO_GET_API_VERSION, 0);
        if v != VFIO_API_VERSION {
            return Err(format!("VFIO_GET_API_VERSION: {v}, not {VFIO_API_VERSION}"));
        }
        let iommu = [VFIO_TYPE1V2_IOMMU, VFIO_TYPE1_IOMMU]
            .into_iter()
            .find(|t| ioctl_val(as_fd(&container), VFIO_CHECK_EXTENSION, *t as _) > 0)
            .ok_or("the container offers no type1 IOMMU (vfio_iommu_type1 not loaded?)")?;
        let group_fd = open(&format!("/dev/vfio/{group}"))?;
        let mut status = GroupStatus {
            argsz: size_of::<GroupStatus>() as u32,
            flags: 0,
        };
        if ioctl_ptr(as_fd(&group_fd), VFIO_GROUP_GET_STATUS, &mut status) < 0 {
            return Err(os("VFIO_GROUP_GET_STATUS"));
        }
        if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(format!(
                "IOMMU group {group} is not viable (another device in it has a driver other than vfio-pci)"
            ));
        }
        let mut cfd: libc::c_int = container.as_raw_fd();
        if ioctl_ptr(as_fd(&group_fd), VFIO_GROUP_SET_CONTAINER, &mut cfd) < 0 {
            return Err(os("VFIO_GROUP_SET_CONTAINER"));
        }
        if ioctl_val(as_fd(&container), VFIO_SET_IOMMU, iommu as _) < 0 {
            return Err(os(&format!("VFIO_SET_IOMMU (type {iommu})")));
        }
        let name = CString::new(addr(dev)).map_err(|e| e.to_string())?;
        // SAFETY: The `name` is a NUL-terminated CString that outlives the
        // call, and the kernel only reads it; `group_fd` is owned here and
        // open.
        let fd = unsafe {
            libc::ioctl(
                group_fd.as_raw_fd(),
                VFIO_GROUP_GET_DEVICE_FD as _,
                name.as_ptr(),
            )
        };
        if fd < 0 {
            return Err(os("VFIO_GROUP_GET_DEVICE_FD"));
        }
        Ok(Self {
            // SAFETY: The `fd` is the new device descriptor
            // VFIO_GROUP_GET_DEVICE_FD just returned (checked non-negative
            // above); nothing else owns it, so the `OwnedFd` is its only owner.
            device: unsafe { OwnedFd::from_raw_fd(fd) },
            _group: group_fd,
            _container: container,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO`.
    fn region_info(&self, index: u32) -> Result<RegionInfo, String> {
        let mut info = RegionInfo {
            argsz: size_of::<RegionInfo>() as u32,
            index,
            ..RegionInfo::default()
        };
        if ioctl_ptr(as_fd(&self.device), VFIO_DEVICE_GET_REGION_INFO, &mut info) < 0 {
            return Err(os(&format!("VFIO_DEVICE_GET_REGION_INFO({index})")));
        }
        Ok(info)
    }

    /// Sets Bus Master Enable in the function's command register, through
    /// vfio's config space region: vfio-pci clears it when the device is
    /// opened, and without it the function's MSI-X writes are dropped.
    pub fn bus_master(&self) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let cfg = self.region_info(VFIO_PCI_CONFIG_REGION_INDEX)?;
        let f = fs::File::from(
            self.device
                .try_clone()
                .map_err(|e| format!("dup of the device fd: {e}"))?,
        );
        let at = cfg.offset + PCI_COMMAND;
        let mut cmd = [0u8; 2];
        f.read_exact_at(&mut cmd, at)
            .map_err(|e| format!("reading the command register: {e}"))?;
        let v = u16::from_le_bytes(cmd) | PCI_COMMAND_MASTER;
        f.write_all_at(&v.to_le_bytes(), at)
            .map_err(|e| format!("writing the command register: {e}"))
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` of a region that can be mapped.
    pub fn region(&self, index: u32) -> Result<RegionInfo, String> {
        let info = self.region_info(index)?;
        if info.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Err(format!(
                "region {index} ({} bytes) cannot be mapped (flags {:#x})",
                info.size, info.flags
            ));
        }
        Ok(info)
    }

    /// Maps `len` bytes of a region from its start; returns the
    /// nanoseconds the mmap call took too.
    pub fn map(&self, region: &RegionInfo, len: usize) -> Result<(f64, Map), String> {
        let off = libc::off_t::try_from(region.offset).map_err(|e| e.to_string())?;
        sys::map_timed(as_fd(&self.device), len, off)
    }

    /// Routes MSI-X vector `vector` to `efd` (`VFIO_DEVICE_SET_IRQS`,
    /// eventfd trigger); vfio-pci enables MSI-X for it.
    pub fn msix_eventfd(&self, vector: u32, efd: BorrowedFd<'_>) -> Result<(), String> {
        let mut set = IrqSetOne {
            argsz: size_of::<IrqSetOne>() as u32,
            flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            index: VFIO_PCI_MSIX_IRQ_INDEX,
            start: vector,
            count: 1,
            fd: efd.as_raw_fd(),
        };
        if ioctl_ptr(as_fd(&self.device), VFIO_DEVICE_SET_IRQS, &mut set) < 0 {
            return Err(os("VFIO_DEVICE_SET_IRQS (MSI-X eventfd)"));
        }
        Ok(())
    }

    /// Disables MSI-X again (`VFIO_DEVICE_SET_IRQS`, no data, count 0).
    pub fn msix_off(&self) -> Result<(), String> {
        let mut set = IrqSetOne {
            argsz: size_of::<IrqSetOne>() as u32,
            flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
            index: VFIO_PCI_MSIX_IRQ_INDEX,
            start: 0,
            count: 0,
            fd: -1,
        };
        if ioctl_ptr(as_fd(&self.device), VFIO_DEVICE_SET_IRQS, &mut set) < 0 {
            return Err(os("VFIO_DEVICE_SET_IRQS (MSI-X off)"));
        }
        Ok(())
    }
}

/// Runs `f` with the PCI function at `dev` (our driver unbound) bound to
/// vfio-pci and open, then gives it back to no driver, whatever `f`
/// returned.
pub fn with_device<T>(
    dev: &Path,
    f: impl FnOnce(&Device) -> Result<T, String>,
) -> Result<T, String> {
    bind(dev)?;
    let r = Device::open(dev).and_then(|d| f(&d));
    let u = unbind(dev);
    let v = r?;
    u?;
    Ok(v)
}

/// Everything a contender does once, with our driver unbound from `dev`
/// and bound again after: bind vfio-pci, open, map BAR2 (and BAR0, and
/// route MSI-X vector 0 to an eventfd, with `msix`), undo it all. The
/// error says what failed, for the SKIP.
pub fn preflight(dev: &Path, msix: bool) -> Result<(), String> {
    guest_sys::unbind(dev).map_err(|e| e.to_string())?;
    let r = with_device(dev, |d| {
        let bar2 = d.region(BAR2)?;
        let len = usize::try_from(bar2.size).map_err(|e| e.to_string())?;
        let (_, map) = d.map(&bar2, len)?;
        drop(map);
        if msix {
            let bar0 = d.region(BAR0)?;
            let (_, regs) = d.map(&bar0, 4096)?;
            drop(regs);
            let efd = guest_sys::eventfd(0).map_err(|e| e.to_string())?;
            d.bus_master()?;
            d.msix_eventfd(0, std::os::fd::AsFd::as_fd(&efd))?;
            d.msix_off()?;
        }
        Ok(())
    });
    let b = guest_sys::bind(dev).map_err(|e| e.to_string());
    r?;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_and_layouts_match_the_uapi_header() {
        // <linux/vfio.h>: _IO(';', 100 + n).
        assert_eq!(VFIO_GET_API_VERSION, 0x3b64);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
        // struct vfio_region_info is 32 bytes; vfio_irq_set's header 20,
        // with one s32 of data 24; vfio_group_status 8.
        assert_eq!(size_of::<RegionInfo>(), 32);
        assert_eq!(std::mem::offset_of!(RegionInfo, size), 16);
        assert_eq!(size_of::<IrqSetOne>(), 24);
        assert_eq!(std::mem::offset_of!(IrqSetOne, fd), 20);
        assert_eq!(size_of::<GroupStatus>(), 8);
    }
}
