// SPDX-License-Identifier: GPL-2.0

//! Small wrappers over C APIs that the kernel's Rust abstractions do not
//! cover, or cover differently in 7.2 and 7.3: each works on both.
//!
//! Every raw `bindings` call of the driver lives here, behind types whose
//! safe methods cannot be misused from the driver logic. Each wrapper
//! documents its invariants; the rest of the crate is safe Rust.

pub(crate) mod bytes;
pub(crate) mod capability;
pub(crate) mod dmabuf;
pub(crate) mod eventfd;
pub(crate) mod helpers;
pub(crate) mod ida;
pub(crate) mod irq;
pub(crate) mod irqlock;
pub(crate) mod irqname;
pub(crate) mod kvmfr_node;
pub(crate) mod mappings;
pub(crate) mod miscdev;
pub(crate) mod module;
pub(crate) mod pat;
pub(crate) mod pci;
pub(crate) mod rwsem;
pub(crate) mod vma;
pub(crate) mod waitq;

/// A wrapper that lets a static hold C structures with raw pointers.
///
/// # Invariants
///
/// The wrapped value is only read after initialisation: it is a constant
/// table handed to C code that never writes to it.
#[repr(transparent)]
pub(crate) struct StaticTable<T>(T);

impl<T> StaticTable<T> {
    /// Wraps a table.
    ///
    /// # Safety
    ///
    /// Nothing may write to the table (or through interior mutability in
    /// it) once it is in a static.
    pub(crate) const unsafe fn new(table: T) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(table)
    }

    /// The table.
    pub(crate) const fn get(&self) -> &T {
        &self.0
    }
}

// SAFETY: By the type invariant the value is never written after
// initialisation, so sharing it between threads is sound.
unsafe impl<T> Sync for StaticTable<T> {}
