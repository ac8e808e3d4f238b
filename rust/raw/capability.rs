// SPDX-License-Identifier: GPL-2.0

//! Capabilities of the calling task, for the limits that a privileged
//! caller may exceed (as `RLIMIT_*` may be exceeded with
//! `CAP_SYS_RESOURCE`).

use super::helpers;

/// Whether the current task has `CAP_SYS_RESOURCE` (and so may exceed
/// per-user limits). Like `capable()`, a positive answer marks the task as
/// having used the capability (for auditing).
pub(crate) fn sys_resource() -> bool {
    // SAFETY: capable() looks at the current task's credentials only; any
    // process context.
    unsafe { helpers::ivshmem_capable_sys_resource() }
}
