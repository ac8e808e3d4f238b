// SPDX-License-Identifier: GPL-2.0

//! The module's own `struct module`, for `file_operations::owner`: 7.3 has
//! `kernel::module::this_module`, 7.2 only a crate-root static that
//! `module!` makes; the C symbol is the same on both.

use kernel::bindings;

/// This module (`THIS_MODULE` in C).
pub(crate) const THIS_MODULE: *mut bindings::module = {
    // Older compilers want `unsafe` to take an extern static's address.
    #[allow(unused_unsafe)]
    // SAFETY: Only the address of `__this_module` is taken, which modpost
    // defines for every module; nothing reads it here.
    let this = unsafe { &raw const bindings::__this_module };
    this.cast_mut()
};
