// SPDX-License-Identifier: GPL-2.0

//! A reader-writer semaphore (`struct rw_semaphore`) guarding a value, which
//! 7.3's Rust abstractions do not have. Many readers (page faults, on any
//! number of CPUs) hold it at once; a writer (the device's removal) holds
//! it alone. Like `Mutex`, it may sleep: never take it in atomic context.

use core::{
    cell::UnsafeCell,
    marker::PhantomData,
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

/// A value guarded by a reader-writer semaphore.
///
/// # Invariants
///
/// `sem` was initialised by `__init_rwsem` and is never moved (the type is
/// pinned). `data` is read only with `sem` held for reading or writing, and
/// written only with it held for writing.
#[pin_data]
pub(crate) struct RwSem<T> {
    #[pin]
    sem: Opaque<bindings::rw_semaphore>,
    data: UnsafeCell<T>,
}

// SAFETY: The semaphore may be taken and released on any thread; `T` moves
// with the structure.
unsafe impl<T: Send> Send for RwSem<T> {}
// SAFETY: Readers share `&T` across threads (`T: Sync`); a writer gets
// `&mut T` from any thread (`T: Send`); the semaphore orders them.
unsafe impl<T: Send + Sync> Sync for RwSem<T> {}

/// Creates an [`RwSem`] initialiser with a lockdep class of its own, named
/// after the call site or the given literal.
macro_rules! new_rwsem {
    ($data:expr $(, $name:literal)? $(,)?) => {
        $crate::raw::rwsem::RwSem::new(
            $data,
            ::kernel::optional_name!($($name)?),
            ::kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_rwsem;

impl<T> RwSem<T> {
    /// An initialiser of a semaphore guarding `data`, in lockdep class
    /// `key` (see [`new_rwsem!`]).
    pub(crate) fn new(
        data: T,
        name: &'static CStr,
        key: Pin<&'static LockClassKey>,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            data: UnsafeCell::new(data),
            // SAFETY: The slot is valid for writes while the closure runs;
            // `name` and `key` are static, as lockdep requires.
            // INVARIANT: The semaphore is initialised in place, pinned.
            sem <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_rwsem(slot, name.as_char_ptr(), key.as_ptr())
            }),
        })
    }

    /// Takes the semaphore for reading, sleeping while a writer holds it.
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        // SAFETY: By the type invariant, `sem` is initialised.
        unsafe { bindings::down_read(self.sem.get()) };
        // INVARIANT: The semaphore is held for reading until the guard drops.
        ReadGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the semaphore for writing, sleeping while anyone holds it.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        // SAFETY: By the type invariant, `sem` is initialised.
        unsafe { bindings::down_write(self.sem.get()) };
        // INVARIANT: The semaphore is held for writing until the guard drops.
        WriteGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }
}

/// The semaphore held for reading: shared access to the value.
///
/// # Invariants
///
/// The current task holds `lock.sem` for reading; it is released (by the
/// same task: the guard is not `Send`) when the guard drops.
pub(crate) struct ReadGuard<'a, T> {
    lock: &'a RwSem<T>,
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariants, the semaphore is held for reading,
        // so no writer has `&mut T`.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, this task holds it for reading.
        unsafe { bindings::up_read(self.lock.sem.get()) };
    }
}

/// The semaphore held for writing: exclusive access to the value.
///
/// # Invariants
///
/// The current task holds `lock.sem` for writing; it is released (by the
/// same task) when the guard drops.
pub(crate) struct WriteGuard<'a, T> {
    lock: &'a RwSem<T>,
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariants, the semaphore is held for writing.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariants, the semaphore is held for writing:
        // no other reference to the value exists.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, this task holds it for writing.
        unsafe { bindings::up_write(self.lock.sem.get()) };
    }
}
