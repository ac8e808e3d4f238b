// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C forwarders in `rust/ivshmem_helpers.c`, for kernel
//! macros and inline functions that have no Rust binding.

use kernel::bindings;

extern "C" {
    /// `pgprot_noncached()`: the protection bits with the UC- cache mode.
    pub(crate) fn ivshmem_pgprot_noncached(prot: bindings::pgprot_t) -> bindings::pgprot_t;
    /// `pgprot_writecombine()`: the protection bits with the WC cache mode.
    pub(crate) fn ivshmem_pgprot_writecombine(prot: bindings::pgprot_t) -> bindings::pgprot_t;
    /// `pgprot_decrypted()`: the protection bits for memory shared with
    /// the host (a no-op outside confidential guests).
    pub(crate) fn ivshmem_pgprot_decrypted(prot: bindings::pgprot_t) -> bindings::pgprot_t;
    /// `pci_domain_nr(pdev->bus)` of a `struct pci_dev *`. (The pointee is
    /// opaque here: `struct pci_dev` ends in a flexible array Rust deems
    /// not FFI-safe.)
    pub(crate) fn ivshmem_pci_domain_nr(pdev: *mut c_void) -> c_int;
    /// `wmb()`: orders earlier memory writes (write-combined ones too)
    /// before later ones, including MMIO.
    pub(crate) fn ivshmem_wmb();
    /// `ktime_get_ns()`: CLOCK_MONOTONIC in nanoseconds; NMI-safe.
    pub(crate) fn ivshmem_ktime_ns() -> u64;
    /// `ida_alloc_max()` on the driver's IDA of device numbers: the lowest
    /// free number up to `max`, or a negative errno (`-ENOSPC` when all are
    /// taken, `-ENOMEM`). May sleep.
    pub(crate) fn ivshmem_ida_alloc(max: c_uint) -> c_int;
    /// `ida_free()` on the driver's IDA: `id` must have been allocated and
    /// not yet freed.
    pub(crate) fn ivshmem_ida_free(id: c_uint);
    /// `spin_lock_irqsave()`: returns the saved interrupt flags.
    pub(crate) fn ivshmem_spin_lock_irqsave(lock: *mut bindings::spinlock_t) -> c_ulong;
    /// `spin_unlock_irqrestore()`.
    pub(crate) fn ivshmem_spin_unlock_irqrestore(lock: *mut bindings::spinlock_t, flags: c_ulong);
    /// Allocates and initialises a wait queue (NULL without memory).
    pub(crate) fn ivshmem_waitq_alloc() -> *mut c_void;
    /// `wake_up_pollfree()`, then frees the queue after an RCU grace period.
    pub(crate) fn ivshmem_waitq_free(q: *mut c_void);
    /// `wake_up_all()`.
    pub(crate) fn ivshmem_waitq_wake_all(q: *mut c_void);
    /// `poll_wait()` on the queue.
    pub(crate) fn ivshmem_waitq_poll(q: *mut c_void, file: *mut c_void, table: *mut c_void);
    /// Sleeps interruptibly on the queue with `lock` (held, with `*flags`
    /// saved) released meanwhile; returns whether a signal is pending.
    pub(crate) fn ivshmem_waitq_wait(
        q: *mut c_void,
        lock: *mut bindings::spinlock_t,
        flags: *mut c_ulong,
    ) -> bool;
    /// `request_irq()` with the C handler that calls `ivshmem_irq_rust`
    /// with `data`; `IRQF_SHARED` when `shared`.
    pub(crate) fn ivshmem_request_irq(
        irq: c_uint,
        shared: bool,
        name: *const c_char,
        data: *mut c_void,
    ) -> c_int;
    /// `VM_MAYSHARE`, from C: 7.2's Rust binding of it is wrong.
    pub(crate) fn ivshmem_vm_mayshare() -> bindings::vm_flags_t;
}

/// `wmb()`.
pub(crate) fn wmb() {
    // SAFETY: A barrier; no memory is touched.
    unsafe { ivshmem_wmb() }
}

/// CLOCK_MONOTONIC in nanoseconds, callable in interrupt context.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: Reads the clock.
    unsafe { ivshmem_ktime_ns() }
}

use kernel::prelude::{
    c_char,
    c_int,
    c_uint,
    c_ulong,
    c_void, //
};
