// SPDX-License-Identifier: GPL-2.0

//! Interrupt handler names made at run time, so that `/proc/interrupts`
//! tells the vectors apart (`ivshmem0-3`: device 0, vector 3). 7.3's
//! `irq::Registration` takes a `&'static CStr`; these names live as long as
//! the device's handlers instead, which the caller promises.

use kernel::{
    alloc::KVec,
    prelude::*,
    str::CString, //
};

/// The handler names of one device, owned: each is a separate heap
/// allocation, so moving this value does not move the names.
pub(crate) struct IrqNames {
    names: KVec<CString>,
}

impl IrqNames {
    /// `ivshmem{index}-{vector}` for `count` MSI-X vectors, or
    /// `ivshmem{index}` for the INTx line (`intx`).
    pub(crate) fn new(index: usize, count: usize, intx: bool) -> Result<Self> {
        let mut names = KVec::with_capacity(count, GFP_KERNEL)?;
        for vector in 0..count {
            let name = if intx {
                CString::try_from_fmt(fmt!("ivshmem{index}"))?
            } else {
                CString::try_from_fmt(fmt!("ivshmem{index}-{vector}"))?
            };
            names.push_within_capacity(name)?;
        }
        Ok(Self { names })
    }

    /// The name of `vector`, with a lifetime the caller bounds.
    ///
    /// # Safety
    ///
    /// The name must not be used once `self` is dropped: every interrupt
    /// handler registered with it must be freed before.
    pub(crate) unsafe fn get(&self, vector: usize) -> Option<&'static CStr> {
        let name: &CStr = self.names.get(vector)?;
        // SAFETY: The bytes live in their own allocation until `self`
        // drops, and the caller stops using them before that.
        Some(unsafe { &*core::ptr::from_ref(name) })
    }
}
