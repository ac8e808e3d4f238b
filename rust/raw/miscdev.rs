// SPDX-License-Identifier: GPL-2.0

//! A misc character device registration with what 7.3's
//! `kernel::miscdevice` lacks: an owned name (`ivshmem3`), a parent device
//! (so `/sys/class/misc/<name>/device` links to the PCI function), a mode,
//! sysfs attributes (one of them a mappable binary file), data shared with
//! every open file, and poll.
//!
//! Modelled on `rust/kernel/miscdevice.rs`: the driver implements
//! [`FileOps`] in safe Rust, this module turns it into a C
//! `file_operations` table.

use super::{
    kvmfr_node::KvmfrNode,
    waitq::PollTable,
    StaticTable, //
};
use core::fmt;
use core::marker::PhantomData;
use kernel::{
    bindings,
    device,
    error::to_result,
    fs::File,
    mm::virt::VmaNew,
    prelude::*,
    str::CString,
    types::{
        ForeignOwnable,
        Opaque, //
    }, //
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceWriter, //
    },
};

/// The file operations of a misc device, implemented by the driver on the
/// state of one open file (`Self`), as `kernel::miscdevice::MiscDevice`
/// is.
pub(crate) trait FileOps: Sized + 'static {
    /// Data of the device, shared by its open files.
    type Data: Send + Sync;
    /// How an open file holds its state, e.g. `Pin<KBox<Self>>`.
    type Ptr: ForeignOwnable + Send + Sync;

    /// Opens the device.
    fn open(dev: &Self::Data, file: &File) -> Result<Self::Ptr>;

    /// Releases an open file.
    fn release(this: Self::Ptr, _file: &File) {
        drop(this);
    }

    /// Sets up a mapping.
    fn mmap(this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>, file: &File, vma: &VmaNew)
        -> Result;

    /// Reads into `out`; `nonblock` is the file's O_NONBLOCK.
    fn read(
        this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        file: &File,
        out: &mut UserSliceWriter,
        nonblock: bool,
    ) -> Result<usize>;

    /// Registers `table` on the file's wait queues and returns the
    /// `EPOLL*` events ready now.
    fn poll(
        this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        file: &File,
        table: &PollTable,
    ) -> u32;

    /// Handles an ioctl.
    fn ioctl(
        this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        file: &File,
        cmd: u32,
        arg: usize,
    ) -> Result<isize>;

    /// Prints sysfs attribute `name` of the device (without the newline).
    fn show(dev: &Self::Data, name: &CStr, out: &mut dyn fmt::Write) -> Result;

    /// Sets up a mapping of the device's sysfs binary attribute (see
    /// [`misc_attribute_groups!`]).
    fn bin_mmap(dev: &Self::Data, vma: &VmaNew) -> Result;

    /// The size of the device's sysfs binary attribute.
    fn bin_size(dev: &Self::Data) -> usize;
}

/// The C side of a registration: the misc device and its optional
/// `/dev/kvmfrN` alias, which opens it.
#[repr(C)]
struct Inner {
    misc: bindings::miscdevice,
    kvmfr: Option<KvmfrNode>,
}

/// A registered misc device, with an optional `/dev/kvmfrN` alias.
///
/// # Invariants
///
/// `inner.misc` is registered with `misc_register()` from creation until
/// drop. Its `name` points into `name`, its `fops` to [`Vtable::FOPS`] of
/// `T`. `inner.kvmfr`, if any, opens `inner.misc` and is deleted in drop
/// before `inner.misc` is deregistered. `inner` is the first field and
/// `misc` the first of `inner`, so a pointer to the misc device is a
/// pointer to `Self`.
#[repr(C)]
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: FileOps> {
    #[pin]
    inner: Opaque<Inner>,
    data: T::Data,
    name: CString,
}

// SAFETY: The registration may be dropped (`misc_deregister`) on any thread;
// `T::Data` is `Send`.
unsafe impl<T: FileOps> Send for Registration<T> {}
// SAFETY: A shared reference only gives out `&T::Data`, which is `Sync`.
unsafe impl<T: FileOps> Sync for Registration<T> {}

impl<T: FileOps> Registration<T> {
    /// Registers a misc device named `name`, child of `parent`, with
    /// permission bits `mode`, sysfs attributes `groups`, and `data`
    /// available to every open; with `kvmfr`, also its alias
    /// `/dev/kvmfr<kvmfr>` (see [`KvmfrNode::add`]; without one only if the
    /// `kvmfr_nodes` parameter is off or class `kvmfr` is another
    /// module's).
    pub(crate) fn register<'a>(
        name: CString,
        parent: &'a device::Device,
        mode: u16,
        groups: &'static Groups,
        data: T::Data,
        kvmfr: Option<usize>,
    ) -> impl PinInit<Self, Error> + 'a
    where
        T::Data: 'a,
    {
        let parent_dev = parent;
        // CAST: `device::Device` is a transparent wrapper of `struct device`.
        let parent = core::ptr::from_ref(parent)
            .cast::<bindings::device>()
            .cast_mut();
        try_pin_init!(Self {
            data,
            name,
            inner <- {
                let name_ptr = name.as_char_ptr();
                Opaque::try_ffi_init(move |slot: *mut Inner| {
                    let mut misc: bindings::miscdevice = pin_init::zeroed();
                    misc.minor = bindings::MISC_DYNAMIC_MINOR as c_int;
                    misc.name = name_ptr;
                    misc.fops = &Vtable::<T>::FOPS;
                    misc.parent = parent;
                    misc.mode = mode;
                    misc.groups = groups.0.get().as_ptr().cast_mut();
                    // SAFETY: The initializer may write to `slot`.
                    unsafe { slot.write(Inner { misc, kvmfr: None }) };
                    // SAFETY: `slot` is valid and initialised (just written).
                    let misc = unsafe { &raw mut (*slot).misc };
                    // SAFETY: The slot holds a filled-in miscdevice whose name
                    // and data are fields of this pinned registration, and
                    // which is deregistered in `drop` before they go.
                    // INVARIANT: Registered on success.
                    to_result(unsafe { bindings::misc_register(misc) })?;
                    let Some(index) = kvmfr else {
                        return Ok(());
                    };
                    // SAFETY: `misc` is registered, pinned in place, and
                    // stays registered until `drop` has dropped the node (or
                    // just below, on failure, where there is no node).
                    match unsafe { KvmfrNode::add(parent_dev, index, misc) } {
                        Ok(node) => {
                            // SAFETY: `slot` is valid; the field holds `None`,
                            // which needs no drop.
                            // INVARIANT: The node opens `misc`.
                            unsafe { (&raw mut (*slot).kvmfr).write(node) };
                            Ok(())
                        }
                        Err(e) => {
                            // SAFETY: Registered just above; the failed
                            // initializer leaves nothing that refers to it.
                            unsafe { bindings::misc_deregister(misc) };
                            Err(e)
                        }
                    }
                })
            },
        })
    }

    /// The device data.
    pub(crate) fn data(&self) -> &T::Data {
        &self.data
    }
}

#[pinned_drop]
impl<T: FileOps> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        let inner = self.inner.get();
        // SAFETY: `inner` is valid and initialised (type invariant); the node
        // is moved out once, here, and the `Opaque` never drops it. Dropping
        // it deletes `/dev/kvmfrN`: on return no open reaches the misc device
        // through it.
        drop(unsafe { (&raw mut (*inner).kvmfr).read() });
        // SAFETY: Registered, by the type invariant. On return, no open or
        // sysfs read can reach this registration any more.
        unsafe { bindings::misc_deregister(&raw mut (*inner).misc) };
    }
}

/// Formats into a sysfs buffer.
struct SysfsBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for SysfsBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A read-only sysfs attribute.
#[repr(transparent)]
pub(crate) struct Attribute(bindings::device_attribute);

/// Makes the attribute table of [`misc_attribute_groups!`].
pub(crate) const fn attributes<T: FileOps, const N: usize>(
    names: &[&'static CStr],
) -> [Attribute; N] {
    // SAFETY: All-zero is a valid `device_attribute`.
    let mut out: [Attribute; N] = unsafe { core::mem::zeroed() };
    let mut i = 0;
    while i < N {
        out[i].0.attr.name = kernel::str::as_char_ptr_in_const_context(names[i]);
        out[i].0.attr.mode = 0o444;
        out[i].0.__bindgen_anon_1.show = Some(show::<T>);
        i += 1;
    }
    out
}

/// Makes the NULL-terminated pointer list of [`misc_attribute_groups!`].
pub(crate) const fn attribute_list<const N: usize, const M: usize>(
    attrs: &'static [Attribute; N],
) -> [*mut bindings::attribute; M] {
    let mut out = [core::ptr::null_mut(); M];
    let mut i = 0;
    while i < N {
        out[i] = (&raw const attrs[i].0.attr).cast_mut();
        i += 1;
    }
    out
}

/// The NULL-terminated attribute group list of a misc device.
pub(crate) struct Groups(pub(crate) StaticTable<[*const bindings::attribute_group; 2]>);

/// Makes the binary attribute of [`misc_attribute_groups!`]: mode 0600
/// (udev rules widen it), mapped by [`FileOps::bin_mmap`], neither read
/// nor written.
pub(crate) const fn bin_attribute<T: FileOps>(name: &'static CStr) -> bindings::bin_attribute {
    // SAFETY: All-zero is a valid `bin_attribute`.
    let mut out: bindings::bin_attribute = unsafe { core::mem::zeroed() };
    out.attr.name = kernel::str::as_char_ptr_in_const_context(name);
    out.attr.mode = 0o600;
    out.mmap = Some(bin_mmap::<T>);
    out
}

/// The size callback of [`misc_attribute_groups!`]'s group.
pub(crate) const fn bin_size_fn<T: FileOps>() -> BinSizeFn {
    Some(bin_size::<T>)
}

/// The type of `attribute_group::bin_size`.
pub(crate) type BinSizeFn = Option<
    unsafe extern "C" fn(*mut bindings::kobject, *const bindings::bin_attribute, c_int) -> usize,
>;

/// Defines `static $name: Groups` with read-only attributes named
/// `$names`, printed by `<$ops as FileOps>::show`, and the binary
/// attribute `$bin`, mapped by `<$ops as FileOps>::bin_mmap` and sized by
/// `<$ops as FileOps>::bin_size`.
macro_rules! misc_attribute_groups {
    ($name:ident: $ops:ty = [$($attr:expr),* $(,)?], bin: $bin:expr) => {
        static $name: $crate::raw::miscdev::Groups = {
            const NAMES: &[&::kernel::str::CStr] = &[$($attr),*];
            const N: usize = NAMES.len();
            static ATTRS: $crate::raw::StaticTable<[$crate::raw::miscdev::Attribute; N]> =
                // SAFETY: Sysfs only reads attributes and attribute groups.
                unsafe { $crate::raw::StaticTable::new($crate::raw::miscdev::attributes::<$ops, N>(NAMES)) };
            // SAFETY: As above.
            static LIST: $crate::raw::StaticTable<[*mut ::kernel::bindings::attribute; N + 1]> = unsafe {
                $crate::raw::StaticTable::new($crate::raw::miscdev::attribute_list::<N, { N + 1 }>(ATTRS.get()))
            };
            static BIN: $crate::raw::StaticTable<::kernel::bindings::bin_attribute> =
                // SAFETY: As above.
                unsafe { $crate::raw::StaticTable::new($crate::raw::miscdev::bin_attribute::<$ops>($bin)) };
            static BIN_LIST: $crate::raw::StaticTable<[*const ::kernel::bindings::bin_attribute; 2]> =
                // SAFETY: As above.
                unsafe { $crate::raw::StaticTable::new([::core::ptr::from_ref(BIN.get()), ::core::ptr::null()]) };
            // SAFETY: As above; all-zero is a valid `attribute_group`.
            static GROUP: $crate::raw::StaticTable<::kernel::bindings::attribute_group> = unsafe {
                $crate::raw::StaticTable::new(::kernel::bindings::attribute_group {
                    __bindgen_anon_2: ::kernel::bindings::attribute_group__bindgen_ty_2 {
                        attrs: LIST.get().as_ptr().cast_mut(),
                    },
                    bin_attrs: BIN_LIST.get().as_ptr(),
                    bin_size: $crate::raw::miscdev::bin_size_fn::<$ops>(),
                    ..::core::mem::zeroed()
                })
            };
            // SAFETY: As above.
            $crate::raw::miscdev::Groups(unsafe {
                $crate::raw::StaticTable::new([::core::ptr::from_ref(GROUP.get()), ::core::ptr::null()])
            })
        };
    };
}
pub(crate) use misc_attribute_groups;

/// # Safety
///
/// Called by sysfs for an attribute made by [`attributes`] of a device
/// registered by [`Registration<T>`], while that device is registered.
unsafe extern "C" fn show<T: FileOps>(
    dev: *mut bindings::device,
    attr: *mut bindings::device_attribute,
    buf: *mut c_char,
) -> isize {
    // SAFETY: As this function's.
    let reg = unsafe { registration::<T>(dev) };
    // SAFETY: The attribute's name is a static C string (`attributes`).
    let name = unsafe { CStr::from_char_ptr((*attr).attr.name) };
    // SAFETY: Sysfs hands `show` a buffer of one page.
    let page = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), bindings::PAGE_SIZE) };
    let mut out = SysfsBuf { buf: page, len: 0 };
    match T::show(&reg.data, name, &mut out)
        .and_then(|()| fmt::Write::write_str(&mut out, "\n").map_err(|_| EINVAL))
    {
        // CAST: At most one page.
        Ok(()) => out.len as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// The registration of a misc device.
///
/// # Safety
///
/// `dev` is a misc device registered by [`Registration<T>`] (or being
/// registered, once `misc_register` has set its driver data), and stays so
/// for `'a`: sysfs callbacks of its attributes meet this.
unsafe fn registration<'a, T: FileOps>(dev: *mut bindings::device) -> &'a Registration<T> {
    // SAFETY: The misc core (`misc_register`) made `dev` with the miscdevice as
    // its driver data before adding its attributes; by the `Registration`
    // invariant that is a pointer to it, whose `data` is initialised before
    // `misc_register` is called.
    unsafe { &*(*dev).driver_data.cast::<Registration<T>>() }
}

/// The device whose kobject is `kobj`.
fn kobj_to_dev(kobj: *mut bindings::kobject) -> *mut bindings::device {
    kobj.wrapping_byte_sub(core::mem::offset_of!(bindings::device, kobj))
        .cast()
}

/// # Safety
///
/// Called by sysfs for the binary attribute made by [`bin_attribute`] of a
/// device registered by [`Registration<T>`], with that device's kobject and
/// a VMA being set up, while the attribute exists.
unsafe extern "C" fn bin_mmap<T: FileOps>(
    _file: *mut bindings::file,
    kobj: *mut bindings::kobject,
    _attr: *const bindings::bin_attribute,
    vma: *mut bindings::vm_area_struct,
) -> c_int {
    // SAFETY: The attribute is the device's, so `kobj` is its kobject, and
    // kernfs holds an active reference to the attribute for the call, so the
    // device stays registered.
    let reg = unsafe { registration::<T>(kobj_to_dev(kobj)) };
    // SAFETY: The VMA is undergoing setup for this call.
    let vma = unsafe { VmaNew::from_raw(vma) };
    match T::bin_mmap(&reg.data, vma) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by sysfs while it adds the group of [`misc_attribute_groups!`]
/// to a device registered by [`Registration<T>`], with its kobject.
unsafe extern "C" fn bin_size<T: FileOps>(
    kobj: *mut bindings::kobject,
    _attr: *const bindings::bin_attribute,
    _index: c_int,
) -> usize {
    // SAFETY: The group is being added to the device by `misc_register`, with
    // its driver data already set (see `registration`).
    let reg = unsafe { registration::<T>(kobj_to_dev(kobj)) };
    T::bin_size(&reg.data)
}

struct Vtable<T: FileOps>(PhantomData<T>);

impl<T: FileOps> Vtable<T> {
    const FOPS: bindings::file_operations = bindings::file_operations {
        owner: super::module::THIS_MODULE,
        open: Some(Self::open),
        release: Some(Self::release),
        mmap: Some(Self::mmap),
        unlocked_ioctl: Some(Self::ioctl),
        read: Some(Self::read),
        poll: Some(Self::poll),
        #[cfg(CONFIG_COMPAT)]
        compat_ioctl: bindings::compat_ptr_ioctl,
        // PMD-align mappings (with the file offset) so that huge entries fit.
        #[cfg(CONFIG_TRANSPARENT_HUGEPAGE)]
        get_unmapped_area: Some(bindings::thp_get_unmapped_area),
        ..pin_init::zeroed()
    };

    /// # Safety
    ///
    /// Called by `misc_open()` with the misc device as private data, under
    /// `misc_mtx`, or by the open of the `/dev/kvmfrN` alias
    /// (`rust/ivshmem_helpers.c`) likewise under its own mutex, so the
    /// registration cannot go away meanwhile.
    unsafe extern "C" fn open(inode: *mut bindings::inode, raw: *mut bindings::file) -> c_int {
        // SAFETY: See above; the misc device is the first field of the
        // registration (type invariant).
        let reg = unsafe { &*(*raw).private_data.cast::<Registration<T>>() };
        // SAFETY: The file is valid for the call and not shared yet.
        let ret = unsafe { bindings::stream_open(inode, raw) };
        if ret != 0 {
            return ret;
        }
        // SAFETY: The file is valid for the call; no fdget_pos region.
        let file = unsafe { File::from_raw_file(raw) };
        match T::open(&reg.data, file) {
            Ok(ptr) => {
                // SAFETY: The open call owns the private data; the other
                // callbacks read it back as `T::Ptr`.
                unsafe { (*raw).private_data = ptr.into_foreign() };
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called once per successfully opened file.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, raw: *mut bindings::file) -> c_int {
        // SAFETY: The `open` callback stored a `T::Ptr`; release takes it back
        // once.
        let ptr = unsafe { T::Ptr::from_foreign((*raw).private_data) };
        // SAFETY: The file is valid for the call.
        T::release(ptr, unsafe { File::from_raw_file(raw) });
        0
    }

    /// # Safety
    ///
    /// Called on an open file with a VMA being set up.
    unsafe extern "C" fn mmap(
        raw: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: Between open and release, private data is a `T::Ptr`.
        let this = unsafe { T::Ptr::borrow((*raw).private_data) };
        // SAFETY: The VMA is undergoing setup for this call.
        let vma = unsafe { VmaNew::from_raw(vma) };
        // SAFETY: The file is valid for the call.
        match T::mmap(this, unsafe { File::from_raw_file(raw) }, vma) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called on an open file with a user buffer of `len` bytes.
    unsafe extern "C" fn read(
        raw: *mut bindings::file,
        buf: *mut c_char,
        len: usize,
        _pos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: Between open and release, private data is a `T::Ptr`.
        let this = unsafe { T::Ptr::borrow((*raw).private_data) };
        // SAFETY: The file is valid for the call.
        let file = unsafe { File::from_raw_file(raw) };
        let nonblock = file.flags() & bindings::O_NONBLOCK != 0;
        let mut out = UserSlice::new(UserPtr::from_addr(buf as usize), len).writer();
        match T::read(this, file, &mut out, nonblock) {
            // CAST: At most `len`, which fits an `isize`.
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called on an open file with a valid poll table (or NULL).
    unsafe extern "C" fn poll(
        raw: *mut bindings::file,
        wait: *mut bindings::poll_table_struct,
    ) -> bindings::__poll_t {
        // SAFETY: Between open and release, private data is a `T::Ptr`.
        let this = unsafe { T::Ptr::borrow((*raw).private_data) };
        // SAFETY: The file is valid for the call.
        let file = unsafe { File::from_raw_file(raw) };
        // SAFETY: The caller provides a valid poll table for this call.
        let table = unsafe { PollTable::from_raw(wait) };
        T::poll(this, file, &table)
    }

    /// # Safety
    ///
    /// Called on an open file.
    unsafe extern "C" fn ioctl(raw: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: Between open and release, private data is a `T::Ptr`.
        let this = unsafe { T::Ptr::borrow((*raw).private_data) };
        // SAFETY: The file is valid for the call.
        match T::ioctl(this, unsafe { File::from_raw_file(raw) }, cmd, arg) {
            // CAST: Ioctl results fit a `c_long`.
            Ok(v) => v as c_long,
            Err(e) => e.to_errno() as c_long,
        }
    }
}
