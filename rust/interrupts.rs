// SPDX-License-Identifier: GPL-2.0

//! Interrupts: how doorbells arrive (MSI-X vectors, or INTx on revision 0
//! devices without MSI-X), the vectors and handlers a device gets at probe
//! ([`Interrupts`]), the handler of one vector ([`IrqHandler`]), and INTx's
//! registers, enabled while its handler is registered ([`IntxEnabled`]).
//!
//! A handler only counts the doorbell ([`Events::fire`]); on INTx it first
//! asks IntrStatus whether the (possibly shared) line was raised by this
//! device.

use crate::device::Device;
use crate::doorbell::Events;
use crate::raw::{
    self,
    irq::{
        Handlers,
        VectorKind,
        Vectors, //
    },
    irqname::IrqNames, //
};
use crate::regs::{
    self,
    Bar0, //
};
use kernel::{
    device::Core,
    io::Io,
    pci,
    prelude::*,
    sync::Arc, //
};

/// How doorbells arrive: the MSI-X table size (0 without MSI-X), and
/// whether INTx is used instead (revision 0 devices without MSI-X; current
/// QEMU never presents one: its interrupt pin is 0).
pub(crate) fn interrupt_kind(pdev: &pci::Device<Core<'_>>) -> Result<(u16, bool)> {
    let vectors = raw::pci::msix_vec_count(pdev);
    let intx = vectors == 0 && regs::interrupt_pin(pdev) != 0;
    Ok((vectors, intx))
}

/// Allocates up to `nvec` interrupt vectors (INTx: one), as many as can be
/// had; with none, the shared memory and ringing peers still work.
fn irq_vectors<'bound>(
    pdev: &'bound pci::Device<Core<'_>>,
    nvec: usize,
    intx: bool,
) -> Result<Option<Vectors<'bound>>> {
    if nvec == 0 {
        return Ok(None);
    }
    pdev.set_master();
    let n = u32::try_from(nvec)?;
    let kind = if intx {
        VectorKind::Intx
    } else {
        VectorKind::MsiX
    };
    match Vectors::alloc(pdev, 1, n, kind) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            dev_warn!(
                pdev,
                "no interrupt vectors ({e:?}): doorbells can be rung, not received\n"
            );
            Ok(None)
        }
    }
}

/// The interrupts of a bound device.
///
/// One handler per usable vector, with the vectors and their names, and
/// INTx enabled over them on revision 0 devices ([`Wired`]).
pub(crate) struct Interrupts<'bound> {
    _wired: Wired<IntxEnabled<Arc<Device>>, Handlers<'bound, IrqHandler>>,
}

/// Interrupt handlers `H` and, over them, INTx enabled in the device `I`:
/// how the driver wires the two, generic so that KUnit checks the very
/// order the driver uses.
///
/// # Invariants
///
/// INTx is enabled only while at least one handler is registered: it was
/// enabled after the handlers were, and fields drop in order, so it is
/// masked in the device before the handlers are freed (then their names
/// and vectors). Otherwise a doorbell between the two would leave a
/// level-triggered line asserted with no handler ("nobody cared").
pub(crate) struct Wired<I, H> {
    _intx: Option<I>,
    _handlers: Option<H>,
}

impl<I, H> Wired<I, H> {
    /// Wires `handlers`, of which `usable` are registered, then enables
    /// INTx with `enable` on an INTx device (`intx`) that has a handler.
    pub(crate) fn new(
        handlers: Option<H>,
        usable: usize,
        intx: bool,
        enable: impl FnOnce() -> I,
    ) -> Self {
        Self {
            _intx: (intx && usable != 0).then(enable),
            _handlers: handlers,
        }
    }
}

impl<'bound> Interrupts<'bound> {
    /// Allocates up to `nvec` vectors of `dev` (INTx: one, `intx`) and
    /// requests a handler for each in turn, stopping at the first that
    /// cannot be had: on x86 a CPU vector is only assigned here, and the
    /// CPUs' vector space can run out (256 vectors on one CPU). The
    /// handlers obtained are the usable vectors, `0..len`, and the count is
    /// recorded in `dev`. `index` is N of `/dev/ivshmemN`, for the names in
    /// `/proc/interrupts`.
    pub(crate) fn new(
        pdev: &'bound pci::Device<Core<'_>>,
        dev: &Arc<Device>,
        index: usize,
        nvec: usize,
        intx: bool,
    ) -> Result<Self> {
        let vectors = irq_vectors(pdev, nvec, intx)?;
        let names = IrqNames::new(index, nvec, intx)?;
        let handlers = match vectors {
            None => None,
            Some(vectors) => {
                let all = vectors.len();
                let (handlers, stopped) = Handlers::request(vectors, names, intx, |vector| {
                    IrqHandler::new(dev.clone(), vector, intx)
                })?;
                if let Some(e) = stopped {
                    let vector = handlers.len();
                    dev_warn!(
                        pdev,
                        "interrupt vector {vector} of {all}: {e:?}; receiving on {vector} vectors\n"
                    );
                }
                Some(handlers)
            }
        };
        let usable = handlers.as_ref().map_or(0, Handlers::len);
        dev.set_usable_vectors(usable);
        Ok(Self {
            // INTx only now that its handler is registered; if the probe
            // fails later, dropping this masks it again.
            _wired: Wired::new(handlers, usable, intx, || IntxEnabled::new(dev.clone())),
        })
    }
}

/// The interrupt handler of one vector of a device.
pub(crate) struct IrqHandler {
    dev: Arc<Device>,
    vector: usize,
    intx: bool,
}

impl IrqHandler {
    /// A handler for `vector` (MSI-X), or for the INTx line.
    fn new(dev: Arc<Device>, vector: usize, intx: bool) -> Self {
        Self { dev, vector, intx }
    }
}

impl raw::irq::Handler for IrqHandler {
    fn handle(&self) -> bool {
        if self.intx {
            // The line may be shared: IntrStatus says whether it is ours.
            match self.dev.regs().try_access() {
                Some(bar) => intx_service(&*bar, self.dev.event_state()),
                None => false,
            }
        } else {
            // MSI-X: the interrupt is ours; IntrStatus is not involved.
            self.dev.event_state().fire(self.vector);
            true
        }
    }
}

/// The registers an INTx handler touches (revision 0 devices): a trait so
/// that KUnit can check the logic without a device that raises INTx.
pub(crate) trait IntxRegs {
    /// Reads IntrStatus; the read clears it.
    fn read_status(&self) -> u32;
    /// Writes IntrMask.
    fn write_mask(&self, mask: u32);
}

/// Enables INTx on the device: the spec's IntrMask selects which status
/// bits raise the line.
pub(crate) fn intx_enable(regs: &(impl IntxRegs + ?Sized)) {
    regs.write_mask(u32::MAX);
}

/// Disables INTx on the device: clears IntrMask, then acknowledges
/// anything pending (the read of IntrStatus clears it), so the line is
/// left deasserted.
pub(crate) fn intx_disable(regs: &(impl IntxRegs + ?Sized)) {
    regs.write_mask(0);
    regs.read_status();
}

/// A device whose INTx registers may be gone (BAR0 unmapped).
pub(crate) trait IntxDevice {
    /// Runs `f` on the registers, unless they are gone.
    fn with_regs(&self, f: &mut dyn FnMut(&dyn IntxRegs));
}

/// INTx enabled in the device's IntrMask; disabled again on drop, i.e. on
/// unbind and when a probe fails after enabling it. Without that, a
/// revision 0 device would keep a shared level-triggered line asserted
/// with no handler left to acknowledge it ("nobody cared").
pub(crate) struct IntxEnabled<D: IntxDevice> {
    dev: D,
}

impl<D: IntxDevice> IntxEnabled<D> {
    /// Enables INTx; call only once its handler is registered.
    pub(crate) fn new(dev: D) -> Self {
        dev.with_regs(&mut |r| intx_enable(r));
        Self { dev }
    }
}

impl<D: IntxDevice> Drop for IntxEnabled<D> {
    fn drop(&mut self) {
        self.dev.with_regs(&mut |r| intx_disable(r));
    }
}

/// Services an INTx interrupt: acknowledges it by reading IntrStatus (the
/// read clears it), and returns whether it was this device's: not when it
/// reads zero, since the line may be shared with other devices. A doorbell
/// counts on vector 0, the only one INTx has.
pub(crate) fn intx_service(regs: &(impl IntxRegs + ?Sized), events: &Events) -> bool {
    if regs.read_status() == 0 {
        return false;
    }
    events.fire(0);
    true
}

impl IntxRegs for Bar0<'_> {
    fn read_status(&self) -> u32 {
        self.read(regs::INTR_STATUS).status().get()
    }

    fn write_mask(&self, mask: u32) {
        self.write_reg(regs::INTR_MASK::zeroed().with_mask(mask));
    }
}

impl IntxDevice for Arc<Device> {
    fn with_regs(&self, f: &mut dyn FnMut(&dyn IntxRegs)) {
        if let Some(bar) = self.regs().try_access() {
            f(&*bar);
        }
    }
}

#[kunit_tests(ivshmem_intx)]
mod tests {
    use super::*;
    use core::cell::Cell;

    /// Registers that read as a device would: the status clears on read.
    struct FakeRegs {
        status: Cell<u32>,
        mask: Cell<u32>,
        reads: Cell<u32>,
    }

    impl IntxRegs for FakeRegs {
        fn read_status(&self) -> u32 {
            self.reads.set(self.reads.get() + 1);
            self.status.replace(0)
        }

        fn write_mask(&self, mask: u32) {
            self.mask.set(mask);
        }
    }

    impl IntxDevice for &FakeRegs {
        fn with_regs(&self, f: &mut dyn FnMut(&dyn IntxRegs)) {
            f(*self);
        }
    }

    fn fake(status: u32) -> FakeRegs {
        FakeRegs {
            status: Cell::new(status),
            mask: Cell::new(0),
            reads: Cell::new(0),
        }
    }

    fn count(ev: &Events) -> u64 {
        ev.state.lock().counts[0]
    }

    #[test]
    fn intx_enable_sets_the_mask() {
        let regs = fake(0);
        intx_enable(&regs);
        assert_eq!(regs.mask.get(), u32::MAX);
    }

    #[test]
    fn intx_unbind_clears_the_mask_and_the_status() {
        let regs = fake(0);
        let enabled = IntxEnabled::new(&regs);
        assert_eq!(regs.mask.get(), u32::MAX);
        // A doorbell after the handler is gone leaves the status set.
        regs.status.set(1);
        // What unbind, or a probe that fails later, does.
        drop(enabled);
        assert_eq!(regs.mask.get(), 0);
        assert_eq!(regs.status.get(), 0);
    }

    /// What happened to the fakes below, in order.
    struct Log {
        events: [Cell<u8>; 8],
        len: Cell<usize>,
    }

    const HANDLERS_UP: u8 = 1;
    const INTX_ON: u8 = 2;
    const INTX_OFF: u8 = 3;
    const HANDLERS_FREED: u8 = 4;

    impl Log {
        fn new() -> Self {
            Self {
                events: Default::default(),
                len: Cell::new(0),
            }
        }

        fn push(&self, e: u8) {
            let n = self.len.get();
            if let Some(slot) = self.events.get(n) {
                slot.set(e);
                self.len.set(n + 1);
            }
        }

        fn is(&self, want: &[u8]) -> bool {
            self.len.get() == want.len() && self.events.iter().zip(want).all(|(e, w)| e.get() == *w)
        }
    }

    /// Stands for the registered handlers, or for INTx enabled: logs `up`
    /// when made and `down` when dropped.
    struct Logged<'a> {
        log: &'a Log,
        down: u8,
    }

    impl<'a> Logged<'a> {
        fn new(log: &'a Log, up: u8, down: u8) -> Self {
            log.push(up);
            Self { log, down }
        }

        fn handlers(log: &'a Log) -> Self {
            Self::new(log, HANDLERS_UP, HANDLERS_FREED)
        }

        fn intx(log: &'a Log) -> Self {
            Self::new(log, INTX_ON, INTX_OFF)
        }
    }

    impl Drop for Logged<'_> {
        fn drop(&mut self) {
            self.log.push(self.down);
        }
    }

    #[test]
    fn wired_intx_goes_on_after_the_handlers_and_off_before_them() {
        let log = Log::new();
        let wired = Wired::new(Some(Logged::handlers(&log)), 1, true, || Logged::intx(&log));
        assert!(log.is(&[HANDLERS_UP, INTX_ON]));
        // Unbind, or a probe that fails after this.
        drop(wired);
        assert!(log.is(&[HANDLERS_UP, INTX_ON, INTX_OFF, HANDLERS_FREED]));
    }

    #[test]
    fn wired_no_intx_without_a_handler_or_on_msix() {
        let log = Log::new();
        // INTx device whose one handler could not be had.
        drop(Wired::<Logged<'_>, Logged<'_>>::new(None, 0, true, || {
            Logged::intx(&log)
        }));
        assert!(log.is(&[]));
        // MSI-X device: handlers, never INTx.
        drop(Wired::new(Some(Logged::handlers(&log)), 2, false, || {
            Logged::intx(&log)
        }));
        assert!(log.is(&[HANDLERS_UP, HANDLERS_FREED]));
    }

    #[test]
    fn intx_status_zero_is_not_ours() -> Result {
        let ev = KBox::pin_init(Events::new(1)?, GFP_KERNEL)?;
        let regs = fake(0);
        assert!(!intx_service(&regs, &ev));
        assert_eq!(regs.reads.get(), 1);
        assert_eq!(count(&ev), 0);
        Ok(())
    }

    #[test]
    fn intx_status_set_is_acknowledged_and_counted() -> Result {
        let ev = KBox::pin_init(Events::new(1)?, GFP_KERNEL)?;
        let regs = fake(1);
        assert!(intx_service(&regs, &ev));
        // The status was read, and so cleared.
        assert_eq!(regs.status.get(), 0);
        assert_eq!(count(&ev), 1);
        // The status is clear now: a second interrupt on a shared line is
        // someone else's.
        assert!(!intx_service(&regs, &ev));
        assert_eq!(count(&ev), 1);
        assert_eq!(regs.reads.get(), 2);
        Ok(())
    }
}
