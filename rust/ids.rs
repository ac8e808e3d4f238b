// SPDX-License-Identifier: GPL-2.0

//! Device numbers: each device becomes `/dev/ivshmemN` with the lowest free
//! N, and a number is free again as soon as its device is gone.

use kernel::{
    prelude::*,
    sync::atomic::{
        Atomic,
        Full,
        Relaxed, //
    }, //
};

const WORDS: usize = 4;

/// How many devices the driver can bind at once.
pub(crate) const MAX_DEVICES: usize = WORDS * 64;

/// Bit N is set while number N is in use.
static USED: [Atomic<u64>; WORDS] = [const { Atomic::new(0) }; WORDS];

/// A device number, free again when dropped.
///
/// # Invariants
///
/// Bit `self.0` of [`USED`] is set, by this object only.
pub(crate) struct Index(usize);

impl Index {
    /// Takes the lowest free number, or fails with `ENOSPC`.
    pub(crate) fn alloc() -> Result<Self> {
        for (w, word) in USED.iter().enumerate() {
            let mut cur = word.load(Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros();
                match word.cmpxchg(cur, cur | (1u64 << bit), Full) {
                    // INVARIANT: The bit was clear and this call set it.
                    Ok(_) => return Ok(Self(w * 64 + bit as usize)),
                    Err(now) => cur = now,
                }
            }
        }
        Err(ENOSPC)
    }

    /// The number.
    pub(crate) fn get(&self) -> usize {
        self.0
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let word = &USED[self.0 / 64];
        let mask = 1u64 << (self.0 % 64);
        let mut cur = word.load(Relaxed);
        // By the type invariant only this object clears the bit.
        while let Err(now) = word.cmpxchg(cur, cur & !mask, Full) {
            cur = now;
        }
    }
}
