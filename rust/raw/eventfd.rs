// SPDX-License-Identifier: GPL-2.0

//! Eventfds given by user space, signalled from interrupt handlers.

use core::ptr::NonNull;
use kernel::{
    bindings,
    prelude::*, //
};

/// A reference on a user's eventfd.
///
/// # Invariants
///
/// `ctx` is a valid eventfd context on which this object holds one
/// reference, dropped on drop.
pub(crate) struct EventFd {
    ctx: NonNull<bindings::eventfd_ctx>,
}

// SAFETY: Eventfd contexts are refcounted and may be signalled and released
// from any thread.
unsafe impl Send for EventFd {}
// SAFETY: Shared references only call `signal` (`eventfd_signal()`),
// which may run concurrently on several CPUs.
unsafe impl Sync for EventFd {}

impl EventFd {
    /// Takes a reference on the eventfd open as `fd` in the calling
    /// process: `EBADF` if it is not open, `EINVAL` if it is not an eventfd.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: Any fd number is accepted; errors come back as ERR_PTR.
        let ctx = unsafe { bindings::eventfd_ctx_fdget(fd) };
        let ptr = kernel::error::from_err_ptr(ctx)?;
        // INVARIANT: A valid context with a reference taken for us.
        Ok(Self {
            ctx: NonNull::new(ptr).ok_or(EINVAL)?,
        })
    }

    /// Adds 1 to the eventfd's counter and wakes its waiters. Callable from
    /// interrupt context.
    pub(crate) fn signal(&self) {
        // SAFETY: By the type invariant `ctx` is valid; a zero mask means
        // the default EPOLLIN.
        unsafe { bindings::eventfd_signal_mask(self.ctx.as_ptr(), 0) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold a reference.
        unsafe { bindings::eventfd_ctx_put(self.ctx.as_ptr()) };
    }
}
