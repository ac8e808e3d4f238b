// SPDX-License-Identifier: GPL-2.0

//! A wait queue for readers and pollers, that an interrupt handler wakes
//! (directly, or through a [`Relay`] from another queue) and that is freed
//! after an RCU grace period rather than by waiting for one: the last reference to a device's state may go in a VMA's `close`,
//! under the mmap lock, where `synchronize_rcu()` must not stall. (7.3's
//! `PollCondVarBox` does this; 7.2 has only `PollCondVar`, whose drop
//! waits.) The same on both kernels.

use super::{
    helpers,
    irqlock::IrqGuard, //
};
use kernel::{
    bindings,
    fs::File,
    prelude::*, //
};

/// A wait queue in its own allocation.
///
/// # Invariants
///
/// `q` is a queue from `ivshmem_waitq_alloc()`, whose owner's reference
/// this object holds until drop.
pub(crate) struct WaitQueue {
    q: *mut helpers::ivshmem_waitq,
}

// SAFETY: Wait queues are used from any thread; their own lock protects
// them.
unsafe impl Send for WaitQueue {}
// SAFETY: As above.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    /// A new, empty queue, woken directly.
    pub(crate) fn new() -> Result<Self> {
        Self::alloc(false)
    }

    /// A new, empty queue, woken by a [`Relay`] from another queue.
    pub(crate) fn new_relayed() -> Result<Self> {
        Self::alloc(true)
    }

    fn alloc(relayed: bool) -> Result<Self> {
        // SAFETY: Allocates; no precondition.
        let q = unsafe { helpers::ivshmem_waitq_alloc(relayed) };
        if q.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: Just allocated, with the owner's reference.
        Ok(Self { q })
    }

    /// A relay that wakes `to` whenever this queue is woken.
    pub(crate) fn relay_to(&self, to: &WaitQueue) -> Result<Relay> {
        // SAFETY: By the type invariant both queues are valid; the relay takes
        // a reference to each, so neither is freed before it.
        let r = unsafe { helpers::ivshmem_waitq_relay_add(self.q, to.q) };
        if r.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: Just added.
        Ok(Relay { r })
    }

    /// Wakes every waiter and poller. Any context.
    pub(crate) fn notify_all(&self) {
        // SAFETY: By the type invariant the queue is valid.
        unsafe { helpers::ivshmem_waitq_wake_all(self.q) };
    }

    /// Sleeps until woken (or signalled), with the lock of `guard`
    /// released meanwhile. Returns whether a signal is pending. The caller
    /// checks its condition under the lock before and after, so no wake-up
    /// between its check and the sleep is lost.
    pub(crate) fn wait_interruptible<T>(&self, guard: &mut IrqGuard<'_, T>) -> bool {
        // SAFETY: The C side releases the lock and takes it again (with the
        // flags updated) before it returns, as `raw_parts` requires.
        let (lock, flags) = unsafe { guard.raw_parts() };
        // SAFETY: By the type invariant the queue is valid; `lock` is held
        // with `*flags` saved, as the guard says.
        unsafe { helpers::ivshmem_waitq_wait(self.q, lock, flags) }
    }

    /// Registers `table` of a `poll` on `file` with this queue.
    pub(crate) fn register(&self, file: &File, table: &PollTable) {
        // SAFETY: By the type invariant the queue is valid; `table` is the
        // poll table of the current `poll` call on `file` (or NULL), and
        // the queue outlives the registration: its drop tells pollers to
        // let go (`wake_up_pollfree`) and frees it after a grace period.
        unsafe { helpers::ivshmem_waitq_poll(self.q, file.as_ptr().cast(), table.0.cast()) };
    }
}

impl Drop for WaitQueue {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the queue is valid and this object
        // holds the owner's reference, dropped once, here; the C side frees
        // the queue after an RCU grace period once no relay holds it.
        unsafe { helpers::ivshmem_waitq_free(self.q) };
    }
}

/// An entry on one wait queue that wakes another whenever the first is
/// woken (see [`WaitQueue::relay_to`]); taken off on drop.
///
/// # Invariants
///
/// `r` is a relay from `ivshmem_waitq_relay_add()`, on its queue until
/// drop, holding a reference to both queues.
pub(crate) struct Relay {
    r: *mut helpers::ivshmem_waitq_relay,
}

// SAFETY: A relay may be dropped on any thread; the queue's lock protects
// the list it is on.
unsafe impl Send for Relay {}
// SAFETY: A shared reference allows nothing.
unsafe impl Sync for Relay {}

impl Drop for Relay {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the relay is on its queue; it is
        // taken off and freed once, here.
        unsafe { helpers::ivshmem_waitq_relay_del(self.r) };
    }
}

/// The poll table of one `poll` call.
///
/// # Invariants
///
/// The pointer is the poll table the VFS passed to the current `poll`
/// call (possibly NULL), valid for the lifetime of this object.
pub(crate) struct PollTable(*mut bindings::poll_table_struct);

impl PollTable {
    /// Wraps the poll table of a `poll` call.
    ///
    /// # Safety
    ///
    /// `table` is the (possibly NULL) poll table passed to the current
    /// `file_operations::poll` call; the object must not outlive it.
    pub(crate) unsafe fn from_raw(table: *mut bindings::poll_table_struct) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(table)
    }
}
