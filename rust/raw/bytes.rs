// SPDX-License-Identifier: GPL-2.0

//! The user API structures as bytes: what may be copied to user space
//! (`AsBytes`) and read from it (`FromBytes`). The structures themselves
//! are in `rust/uapi.rs`, which uses `core` only so that a host test can
//! check them against the C header.

use crate::uapi::{
    Cache,
    Event,
    EventFdBind,
    Info,
    KvmfrDmabufCreate,
    Mask,
    Ring, //
};
use kernel::transmute::{
    AsBytes,
    FromBytes, //
};

// SAFETY: The type `Info` is `repr(C)` with integer fields only and no
// padding:
// `userspace/ivshmem/tests/kernel_uapi.rs` checks that its fields are
// contiguous and fill it, as in the C header, so every byte is initialised.
unsafe impl AsBytes for Info {}

// SAFETY: The type `Cache` is `repr(C)`, integers only, no padding (as
// for `Info`).
unsafe impl AsBytes for Cache {}
// SAFETY: Any bit pattern is a valid `Cache`: its fields are integers.
unsafe impl FromBytes for Cache {}

// SAFETY: The type `Ring` is `repr(C)`, integers only, no padding (as
// for `Info`).
unsafe impl AsBytes for Ring {}
// SAFETY: Any bit pattern is a valid `Ring`: its fields are integers.
unsafe impl FromBytes for Ring {}

// SAFETY: The type `Mask` is `repr(C)`, integers only, no padding (as
// for `Info`).
unsafe impl AsBytes for Mask {}
// SAFETY: Any bit pattern is a valid `Mask`: its fields are integers.
unsafe impl FromBytes for Mask {}

// SAFETY: The type `EventFdBind` is `repr(C)`, integers only, no
// padding (as for `Info`).
unsafe impl AsBytes for EventFdBind {}
// SAFETY: Any bit pattern is a valid `EventFdBind`: its fields are
// integers.
unsafe impl FromBytes for EventFdBind {}

// SAFETY: The type `Event` is `repr(C)`, integers only, no padding (as
// for `Info`).
unsafe impl AsBytes for Event {}

// SAFETY: Any bit pattern is a valid `KvmfrDmabufCreate`: its fields are
// integers, and the padding after `flags` (kvmfr's ABI) is never read. It
// is not `AsBytes`: that padding would go to user space uninitialised.
unsafe impl FromBytes for KvmfrDmabufCreate {}
