//! Peer id allocation.
//!
//! Ids are handed out round robin: the next free id after the last one
//! given, wrapping from 65535 to 0, as QEMU's server does. An id that was
//! just released is therefore not reused until the other 65535 have been
//! tried, which keeps a guest that has not yet processed a peer's departure
//! from ringing a newcomer that inherited its id.

use ivshmem_proto::PeerId;

const WORDS: usize = (PeerId::MAX as usize + 1) / 64;

/// The set of ids in use and where to look next.
#[derive(Debug, Clone)]
pub struct IdAllocator {
    used: Box<[u64; WORDS]>,
    next: usize,
    count: usize,
}

impl Default for IdAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl IdAllocator {
    /// How many ids there are: 0..=65535.
    pub const CAPACITY: usize = PeerId::MAX as usize + 1;

    /// All ids free; the first one given is 0.
    pub fn new() -> Self {
        Self {
            used: Box::new([0; WORDS]),
            next: 0,
            count: 0,
        }
    }

    fn is_used(&self, id: usize) -> bool {
        self.used[id / 64] & (1 << (id % 64)) != 0
    }

    /// The next free id at or after the cursor, or `None` if all are taken.
    pub fn alloc(&mut self) -> Option<PeerId> {
        if self.count == Self::CAPACITY {
            return None;
        }
        let mut id = self.next;
        while self.is_used(id) {
            id = (id + 1) % Self::CAPACITY;
        }
        self.used[id / 64] |= 1 << (id % 64);
        self.count += 1;
        self.next = (id + 1) % Self::CAPACITY;
        Some(id as PeerId)
    }

    /// Releases an id.
    pub fn free(&mut self, id: PeerId) {
        let id = usize::from(id);
        if self.is_used(id) {
            self.used[id / 64] &= !(1 << (id % 64));
            self.count -= 1;
        }
    }

    /// Ids in use.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no id is in use.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skipping_used_ids() {
        let mut a = IdAllocator::new();
        assert_eq!(a.alloc(), Some(0));
        assert_eq!(a.alloc(), Some(1));
        assert_eq!(a.alloc(), Some(2));
        a.free(1);
        // 1 is free, but the cursor moved on.
        assert_eq!(a.alloc(), Some(3));
        a.free(0);
        a.free(2);
        a.free(3);
        assert!(a.is_empty());
        assert_eq!(a.alloc(), Some(4));
    }

    #[test]
    fn wraps_and_fills_all_65536() {
        let mut a = IdAllocator::new();
        for i in 0..IdAllocator::CAPACITY {
            assert_eq!(a.alloc(), Some(i as PeerId));
        }
        assert_eq!(a.len(), 65536);
        assert_eq!(a.alloc(), None);
        a.free(10);
        a.free(65535);
        // Cursor wrapped to 0: the next free one from there is 10.
        assert_eq!(a.alloc(), Some(10));
        assert_eq!(a.alloc(), Some(65535));
        assert_eq!(a.alloc(), None);
        a.free(7);
        assert_eq!(a.alloc(), Some(7));
    }
}
