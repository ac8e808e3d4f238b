// SPDX-License-Identifier: GPL-2.0

//! Guest driver for QEMU's inter-VM shared memory device (ivshmem).
//!
//! Binds PCI `1af4:1110`, both `ivshmem-plain` (shared memory only) and
//! `ivshmem-doorbell` (shared memory plus MSI-X doorbells), with any
//! subsystem ids. The device is described in QEMU's
//! `docs/specs/ivshmem-spec.rst`: BAR0 holds four 32-bit registers, BAR1
//! the MSI-X table of doorbell devices, BAR2 the shared memory.
//!
//! Each device becomes a misc character device, `/dev/ivshmemN` (lowest
//! free N, mode 0600, parent the PCI function), whose user API is in
//! `uapi/linux/ivshmem.h`: mmap of the shared memory, and ioctls. Unless
//! the `kvmfr_nodes` parameter is off, each also gets a Looking Glass
//! name, `/dev/kvmfrN` in class `kvmfr`, that opens `/dev/ivshmemN`; both
//! accept kvmfr's `KVMFR_DMABUF_GETSIZE` ([`kvmfr`]).
//!
//! Layout: [`driver`] is the PCI driver (probe in named steps, unbind),
//! [`device`] the device state (facts, mappings, BAR2's memtype, removal),
//! [`interrupts`] the vectors and handlers (MSI-X, INTx), [`file`] the
//! file operations, ioctls and sysfs, [`doorbell`] the doorbells
//! (counting, read, poll, masks, eventfds), [`kvmfr`] Looking Glass's
//! ioctls, [`regs`] the registers,
//! [`uapi`] the user API structures, [`compat`] the names and signatures
//! that differ between 7.2 and 7.3, and [`raw`] the few wrappers over C
//! APIs the kernel crate lacks (or has differently in 7.2 and 7.3): the
//! driver's only code that is not safe Rust.

mod compat;
mod device;
mod doorbell;
mod driver;
mod file;
mod interrupts;
mod kvmfr;
mod raw;
mod regs;
mod uapi;

kernel::module_pci_driver! {
    type: driver::IvshmemDriver,
    name: "ivshmem",
    authors: ["The ivshmem-rs developers"],
    description: "Guest driver for QEMU's inter-VM shared memory device",
    license: "GPL",
}
