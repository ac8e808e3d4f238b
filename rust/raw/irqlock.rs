// SPDX-License-Identifier: GPL-2.0

//! A spinlock taken with interrupts off (`spin_lock_irqsave`), for state
//! shared with an interrupt handler. 7.3 has `SpinLockIrq`, 7.2 nothing of
//! the kind; this one is the same on both.

use super::helpers;
use core::{
    cell::UnsafeCell,
    marker::{
        PhantomData,
        PhantomPinned, //
    },
    ops::{
        Deref,
        DerefMut, //
    },
};
use kernel::{
    bindings,
    prelude::*,
    sync::LockClassKey,
    types::Opaque, //
};

/// A spinlock taken with local interrupts saved and disabled.
///
/// # Invariants
///
/// `lock` is initialised; `data` is only accessed through an
/// [`IrqGuard`], that is, with `lock` held.
#[pin_data]
pub(crate) struct IrqSpinLock<T> {
    #[pin]
    lock: Opaque<bindings::spinlock_t>,
    data: UnsafeCell<T>,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: The lock serialises access to `data`, which may move between
// threads when `T: Send`.
unsafe impl<T: Send> Send for IrqSpinLock<T> {}
// SAFETY: As above: shared references only reach `data` under the lock.
unsafe impl<T: Send> Sync for IrqSpinLock<T> {}

impl<T> IrqSpinLock<T> {
    /// A lock holding `data`, of lockdep class `key` named `name`.
    pub(crate) fn new(
        data: T,
        name: &'static CStr,
        key: Pin<&'static LockClassKey>,
    ) -> impl PinInit<Self> {
        // INVARIANT: `lock` is initialised by `ffi_init`.
        pin_init!(Self {
            // SAFETY: The slot is valid for the call; `name` and `key` live
            // forever, as lockdep keeps pointers to them.
            lock <- Opaque::ffi_init(|slot| unsafe {
                bindings::__spin_lock_init(slot, name.as_char_ptr(), key.as_ptr())
            }),
            data: UnsafeCell::new(data),
            _pin: PhantomPinned,
        })
    }

    /// Takes the lock, with local interrupts off until the guard drops.
    pub(crate) fn lock(&self) -> IrqGuard<'_, T> {
        // SAFETY: By the type invariant the lock is initialised.
        let flags = unsafe { helpers::ivshmem_spin_lock_irqsave(self.lock.get()) };
        // INVARIANT: The lock was just taken, with `flags` saved.
        IrqGuard {
            lock: self,
            flags,
            _not_send: PhantomData,
        }
    }
}

/// The lock of an [`IrqSpinLock`], held; released (and the interrupt flags
/// restored) on drop.
///
/// # Invariants
///
/// `lock.lock` is held by this CPU, taken with `flags` saved.
pub(crate) struct IrqGuard<'a, T> {
    lock: &'a IrqSpinLock<T>,
    flags: c_ulong,
    /// Released on the CPU it was taken on.
    _not_send: PhantomData<*mut ()>,
}

impl<T> IrqGuard<'_, T> {
    /// The raw lock and the saved flags, for a wait that releases and
    /// retakes the lock ([`super::waitq::WaitQueue::wait_interruptible`]).
    ///
    /// # Safety
    ///
    /// Whoever releases the lock through these must hold it again, with
    /// the flags updated, before the guard is used or dropped.
    pub(crate) unsafe fn raw_parts(&mut self) -> (*mut bindings::spinlock_t, *mut c_ulong) {
        (self.lock.lock.get(), &raw mut self.flags)
    }
}

impl<T> Deref for IrqGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariant the lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariant the lock is held, by this guard
        // alone.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for IrqGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the lock is held with `flags`.
        unsafe { helpers::ivshmem_spin_unlock_irqrestore(self.lock.lock.get(), self.flags) };
    }
}

/// A new [`IrqSpinLock`] with a lockdep class of its own at the call site.
macro_rules! new_irq_spinlock {
    ($data:expr, $name:literal) => {
        $crate::raw::irqlock::IrqSpinLock::new($data, $name, kernel::static_lock_class!())
    };
}
pub(crate) use new_irq_spinlock;
