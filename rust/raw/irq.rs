// SPDX-License-Identifier: GPL-2.0

//! PCI interrupt vectors and their handlers, over the C API on every
//! kernel: 7.2's Rust API reaches only the first and the last vector of an
//! allocation, and its `irq` abstractions differ from 7.3's.

use super::{
    helpers,
    irqname::IrqNames,
    pci::raw, //
};
use kernel::{
    alloc::KVec,
    bindings,
    device::Bound,
    error::to_result,
    pci,
    prelude::*, //
};

/// The kind of interrupt vectors to allocate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum VectorKind {
    /// MSI-X, one vector per doorbell vector.
    MsiX,
    /// The legacy INTx line (one vector).
    Intx,
}

/// Interrupt vectors allocated for a device (`pci_alloc_irq_vectors()`),
/// freed on drop (`pci_free_irq_vectors()`).
///
/// # Invariants
///
/// `len` vectors (at least one) are allocated for `pdev` until drop.
pub(crate) struct Vectors<'bound> {
    pdev: &'bound pci::Device<Bound>,
    len: usize,
}

impl<'bound> Vectors<'bound> {
    /// Allocates between `min` and `max` vectors of `kind`.
    pub(crate) fn alloc(
        pdev: &'bound pci::Device<Bound>,
        min: u32,
        max: u32,
        kind: VectorKind,
    ) -> Result<Self> {
        let flags = match kind {
            VectorKind::MsiX => bindings::PCI_IRQ_MSIX,
            VectorKind::Intx => bindings::PCI_IRQ_INTX,
        };
        // SAFETY: The device `raw(pdev)` is valid and bound; the function
        // checks the counts.
        let n = unsafe { bindings::pci_alloc_irq_vectors(raw(pdev), min, max, flags) };
        to_result(n)?;
        // INVARIANT: `n` (>= `min` >= 1) vectors were just allocated.
        Ok(Self {
            pdev,
            len: usize::try_from(n)?,
        })
    }

    /// How many vectors were allocated.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The Linux interrupt number of vector `index`.
    pub(crate) fn irq(&self, index: usize) -> Result<u32> {
        if index >= self.len {
            return Err(EINVAL);
        }
        let i = u32::try_from(index)?;
        // SAFETY: By the type invariant the vectors are allocated and
        // `index` is one of them.
        let irq = unsafe { bindings::pci_irq_vector(raw(self.pdev), i) };
        to_result(irq)?;
        Ok(u32::try_from(irq)?)
    }
}

impl Drop for Vectors<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the vectors are allocated; the
        // handlers on them were freed before (the driver data drops its
        // registrations first).
        unsafe { bindings::pci_free_irq_vectors(raw(self.pdev)) };
    }
}

/// An interrupt handler.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Called in hard interrupt context; returns whether the interrupt was
    /// this device's (`IRQ_HANDLED`) or not (`IRQ_NONE`, shared lines).
    fn handle(&self) -> bool;
}

/// What the C handler's `data` points to: the call for `T`, then `T`.
#[repr(C)]
struct Slot<T> {
    call: unsafe fn(*const c_void) -> bool,
    handler: T,
}

/// Calls the handler of a [`Slot<T>`].
///
/// # Safety
///
/// `slot` points to a live `Slot<T>`.
unsafe fn call<T: Handler>(slot: *const c_void) -> bool {
    // SAFETY: Guaranteed by the caller.
    unsafe { (*slot.cast::<Slot<T>>()).handler.handle() }
}

/// The Rust side of the C handler `ivshmem_irq`.
///
/// # Safety
///
/// `data` is the `data` of a live [`Registration`].
#[no_mangle]
unsafe extern "C" fn ivshmem_irq_rust(data: *mut c_void) -> bool {
    // SAFETY: The pointer `data` is to a live `Slot<T>`, whose first field is
    // its `call` for that `T` (`repr(C)`).
    let call = unsafe { (*data.cast::<Slot<()>>()).call };
    // SAFETY: The function `call` is `call::<T>` and `data` a live `Slot<T>`.
    unsafe { call(data.cast_const()) }
}

/// A handler requested on an interrupt (`request_irq()`), freed on drop
/// (`free_irq()`, which waits for a running handler to finish).
///
/// # Invariants
///
/// `slot` is registered as the `data` of a handler of `irq` until drop.
pub(crate) struct Registration<T: Handler> {
    irq: u32,
    slot: KBox<Slot<T>>,
}

impl<T: Handler> Registration<T> {
    /// Requests `handler` on vector `index` of `vectors`, shared with other
    /// devices when `shared` (INTx), named `name` in `/proc/interrupts`.
    ///
    /// # Safety
    ///
    /// The registration must drop before `vectors`, and before `name`.
    unsafe fn new(
        vectors: &Vectors<'_>,
        index: usize,
        shared: bool,
        name: &CStr,
        handler: T,
    ) -> Result<Self> {
        let irq = vectors.irq(index)?;
        let slot = KBox::new(
            Slot {
                call: call::<T>,
                handler,
            },
            GFP_KERNEL,
        )?;
        let data = core::ptr::from_ref::<Slot<T>>(&slot).cast_mut().cast();
        // SAFETY: The interrupt `irq` is a vector of the device; `name`
        // outlives the registration (caller); `data` stays valid (boxed) until
        // `free_irq` on drop.
        to_result(unsafe { helpers::ivshmem_request_irq(irq, shared, name.as_char_ptr(), data) })?;
        // INVARIANT: Just registered.
        Ok(Self { irq, slot })
    }
}

impl<T: Handler> Drop for Registration<T> {
    fn drop(&mut self) {
        let data = core::ptr::from_ref::<Slot<T>>(&self.slot).cast_mut().cast();
        // SAFETY: By the type invariant the handler is registered with this
        // `data`; once `free_irq` returns, it is not running and never runs
        // again, so the slot may go.
        unsafe { bindings::free_irq(self.irq, data) };
    }
}

/// The handlers of an allocation of vectors: one per vector from the
/// first, each named in `/proc/interrupts` by [`IrqNames`]. Dropping it
/// frees the handlers, then the names, then the vectors.
///
/// # Invariants
///
/// `registrations[i]` is registered on vector `i` of `vectors`, named by
/// entry `i` of `names`. The fields drop in declaration order, so every
/// handler is freed before its name and its vector.
pub(crate) struct Handlers<'bound, T: Handler> {
    registrations: KVec<Registration<T>>,
    _names: IrqNames,
    _vectors: Vectors<'bound>,
}

impl<'bound, T: Handler> Handlers<'bound, T> {
    /// Requests a handler, made by `handler(vector)`, on each vector of
    /// `vectors` in turn (shared with other devices when `shared`: INTx),
    /// named by `names`, and stops at the first that cannot be had. Returns
    /// the handlers obtained, and the error that stopped the requests, if
    /// any.
    pub(crate) fn request(
        vectors: Vectors<'bound>,
        names: IrqNames,
        shared: bool,
        mut handler: impl FnMut(usize) -> T,
    ) -> Result<(Self, Option<Error>)> {
        let mut registrations = KVec::with_capacity(vectors.len(), GFP_KERNEL)?;
        let mut stopped = None;
        for vector in 0..vectors.len() {
            // SAFETY: The name is used by the registrations made below,
            // which drop before `names`: as locals before the arguments on
            // an early return, as fields of `Handlers` after (invariant).
            let name = unsafe { names.get(vector) }.ok_or(EINVAL)?;
            // SAFETY: The registration goes into `registrations`, which
            // drops before `vectors` and `names`, as above.
            match unsafe { Registration::new(&vectors, vector, shared, name, handler(vector)) } {
                Ok(r) => registrations.push_within_capacity(r)?,
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        // INVARIANT: Registration `i` is on vector `i`, named `names[i]`.
        Ok((
            Self {
                registrations,
                _names: names,
                _vectors: vectors,
            },
            stopped,
        ))
    }

    /// How many handlers were requested: the usable vectors are `0..len`.
    pub(crate) fn len(&self) -> usize {
        self.registrations.len()
    }
}
