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
    c_int,
    c_uint,
    c_void, //
};
