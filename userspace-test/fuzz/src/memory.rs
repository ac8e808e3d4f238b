//! Calls on mappings: mmap of a device file, partial munmap, mremap,
//! mprotect, madvise, and touching the mapped pages.

use crate::config::{DOORBELL_MMAP_OFFSET, MAX_MAPS, MIB, PAGE};
use crate::worker::{Map, Worker};

impl Worker<'_> {
    pub(crate) fn mmap(&mut self) {
        let Some(fd) = self.some_fd() else { return };
        while self.maps.len() >= MAX_MAPS {
            self.munmap_whole();
        }
        let size = fd.size;
        let pages = (size / PAGE) as u64;
        let offset = match self.rng.below(9) {
            0..=2 => 0,
            3 | 4 => self.rng.below(pages) as usize * PAGE,
            5 => size.saturating_sub(PAGE),
            6 => size,
            // The doorbell page: touches then store to the registers.
            7 => DOORBELL_MMAP_OFFSET,
            _ => (self.rng.next_u64() as usize) & !(PAGE - 1),
        };
        let len = match self.rng.below(8) {
            0 | 1 => PAGE,
            2 | 3 => (1 + self.rng.below(pages.min(16 * MIB as u64 / PAGE as u64))) as usize * PAGE,
            4 => 2 * MIB,
            5 => size.saturating_sub(offset),
            6 => 0,
            _ => size + PAGE,
        };
        let prot = self.rng.pick(&[
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ,
            libc::PROT_WRITE,
            libc::PROT_NONE,
            libc::PROT_READ | libc::PROT_EXEC,
        ]);
        let mut flags = if self.rng.chance(85) {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        if self.rng.chance(10) {
            flags |= libc::MAP_POPULATE;
        }
        if self.rng.chance(5) {
            flags |= libc::MAP_NORESERVE;
        }
        if let Ok(p) = guest_sys::mmap(0, fd.fd, len, prot, flags, offset as libc::off_t) {
            self.maps.push(Map {
                addr: p as usize,
                len,
                prot,
                dontfork: false,
            });
        } else {
            self.result(-1);
        }
    }

    /// Unmaps a random page-aligned part of a mapping: its head, its tail,
    /// its middle (splitting it) or all of it.
    pub(crate) fn munmap(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let m = self.maps.swap_remove(i);
        let pages = m.len / PAGE;
        let a = self.rng.below(pages as u64) as usize;
        let b = a + 1 + self.rng.below((pages - a) as u64) as usize;
        // SAFETY: The range `a..b` pages lies inside `m` (`a < b <= pages`), a
        // mapping this worker made and has taken out of its table (the pieces
        // left are put back below), reached only through raw addresses, so
        // nothing refers to the unmapped part.
        let r = unsafe { libc::munmap((m.addr + a * PAGE) as *mut libc::c_void, (b - a) * PAGE) };
        if self.result(r as i64) < 0 {
            self.maps.push(m);
            return;
        }
        if a > 0 {
            self.maps.push(Map { len: a * PAGE, ..m });
        }
        if b < pages {
            self.maps.push(Map {
                addr: m.addr + b * PAGE,
                len: (pages - b) * PAGE,
                ..m
            });
        }
    }

    pub(crate) fn mremap(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let m = self.maps[i];
        let pages = (m.len / PAGE) as u64;
        let new_len = match self.rng.below(3) {
            0 => (1 + self.rng.below(pages)) as usize * PAGE,
            1 => m.len + PAGE * (1 + self.rng.below(4)) as usize,
            _ => m.len,
        };
        let flags = if self.rng.chance(70) {
            libc::MREMAP_MAYMOVE
        } else {
            0
        };
        // SAFETY: The `m` is a mapping this worker made and reaches only
        // through its raw table entry; mremap without MREMAP_FIXED picks any
        // new address itself, so no other memory is replaced, and the table is
        // updated with the result.
        let p = unsafe { libc::mremap(m.addr as *mut libc::c_void, m.len, new_len, flags) };
        if p == libc::MAP_FAILED {
            self.result(-1);
        } else {
            self.maps[i] = Map {
                addr: p as usize,
                len: new_len,
                ..m
            };
        }
    }

    pub(crate) fn mprotect(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let prot = self.rng.pick(&[
            libc::PROT_READ,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_NONE,
            libc::PROT_READ | libc::PROT_EXEC,
        ]);
        let m = self.maps[i];
        // SAFETY: The `m.addr` and `m.len` are exactly a mapping this worker
        // made and reaches only through raw addresses; accesses to it check
        // `prot` in the table, updated below.
        let r = unsafe { libc::mprotect(m.addr as *mut libc::c_void, m.len, prot) };
        let ok = self.result(r as i64) == 0;
        self.maps[i].prot = after_mprotect(m.prot, prot, ok);
    }

    pub(crate) fn madvise(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let m = self.maps[i];
        let advice = self.rng.pick(&[
            libc::MADV_DONTNEED,
            libc::MADV_DONTNEED,
            libc::MADV_WILLNEED,
            libc::MADV_NOHUGEPAGE,
            libc::MADV_DONTFORK,
            libc::MADV_DOFORK,
        ]);
        // SAFETY: The `m.addr` and `m.len` are exactly a mapping this worker
        // made. None of the advice frees memory a Rust reference points to (the
        // mapping is device memory reached only through raw addresses).
        // DONTFORK keeps it out of forked children, which touch the mappings in
        // their table: it is undone at once, and where the kernel refuses that
        // (VM_IO mappings), the mapping is marked so that children leave it.
        let r = unsafe { libc::madvise(m.addr as *mut libc::c_void, m.len, advice) };
        if self.result(r as i64) == 0 && advice == libc::MADV_DONTFORK {
            // SAFETY: The `m.addr` and `m.len` are exactly the mapping just
            // advised, still in this worker's table; MADV_DOFORK only undoes
            // the DONTFORK.
            let undone =
                unsafe { libc::madvise(m.addr as *mut libc::c_void, m.len, libc::MADV_DOFORK) };
            if undone != 0 {
                self.maps[i].dontfork = true;
            }
        }
    }

    /// Reads or writes a random page of a mapping, as its protection allows.
    pub(crate) fn touch(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        let m = self.maps[self.rng.below(self.maps.len() as u64) as usize];
        let off = self.rng.below((m.len / PAGE) as u64) as usize * PAGE
            + self.rng.below((PAGE / 8) as u64) as usize * 8;
        let p = (m.addr + off) as *mut u64;
        if m.prot & libc::PROT_WRITE != 0 && self.rng.chance(50) {
            // SAFETY: The 8 bytes at `off` (8-aligned, below `m.len`) lie
            // inside `m`, a mapping this worker made and maps writable; it is
            // device memory no Rust reference points to, and a removed device's
            // SIGBUS is mended by the handler.
            unsafe { p.write_volatile(self.rng.next_u64()) };
        } else if m.prot & libc::PROT_READ != 0 {
            // SAFETY: The 8 bytes at `off` (8-aligned, below `m.len`) lie
            // inside `m`, a mapping this worker made and maps readable; a
            // removed device's SIGBUS is mended by the handler.
            std::hint::black_box(unsafe { p.read_volatile() });
        }
    }
}

/// The access a mapping is known to allow after `mprotect` from `old` to
/// `new`. A failed mprotect may have changed part of the range: it walks the
/// range's VMAs in order and stops at the first it may not change. A range
/// the SIGBUS handler mended holds anonymous pages between the device's,
/// and those may be made executable where the device's may not; so after a
/// failure, only what both protections allow is sure.
pub(crate) fn after_mprotect(old: i32, new: i32, ok: bool) -> i32 {
    if ok { new } else { old & new }
}

#[cfg(test)]
mod tests {
    use super::after_mprotect;
    use libc::{PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE};

    #[test]
    fn a_failed_mprotect_leaves_only_what_both_protections_allow() {
        // stress_bind's SIGSEGV: a mended anonymous page became read-only
        // and executable, the device's pages refused PROT_EXEC, and the
        // table still said writable.
        assert_eq!(
            after_mprotect(PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC, false),
            PROT_READ
        );
        assert_eq!(
            after_mprotect(PROT_READ, PROT_READ | PROT_WRITE, false),
            PROT_READ
        );
        assert_eq!(
            after_mprotect(PROT_READ | PROT_WRITE, PROT_NONE, false),
            PROT_NONE
        );
        assert_eq!(
            after_mprotect(PROT_READ, PROT_READ | PROT_WRITE, true),
            PROT_READ | PROT_WRITE
        );
    }
}
