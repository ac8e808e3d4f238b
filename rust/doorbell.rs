// SPDX-License-Identifier: GPL-2.0

//! Doorbells: the interrupts peers ring on this device, counted per vector
//! ([`Events`]) and delivered to every open file ([`Listener`]: read, poll,
//! vector masks, eventfds).
//!
//! The interrupt handler only counts, timestamps, signals the eventfds
//! bound to its vector (at most [`MAX_EVENTFDS_PER_VECTOR`], of which one
//! user may bind [`MAX_EVENTFDS_PER_USER`]) and wakes waiters. Each open
//! file keeps the counts it has seen, so readers never take events from
//! each other, and has its own wait queue, which the device's relays to:
//! an interrupt wakes every file, a file's `SET_MASK` only that file.

use crate::raw::{
    capability,
    eventfd::EventFd,
    helpers,
    irqlock::{
        new_irq_spinlock,
        IrqSpinLock, //
    },
    waitq::{
        PollTable,
        Relay,
        WaitQueue, //
    },
};
use crate::{
    compat,
    uapi, //
};
use kernel::{
    alloc::{
        kvec::PushError,
        KVec, //
    },
    fs::File,
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
    task::Kuid,
    uaccess::UserSliceWriter,
};

/// Most eventfds bound to one vector of a device, over all its open files
/// (`IVSHMEM_MAX_EVENTFDS`): one more gets `ENOSPC`. It bounds the work of
/// the interrupt handler and the time spent with interrupts off.
pub(crate) const MAX_EVENTFDS_PER_VECTOR: usize = uapi::MAX_EVENTFDS;

/// Most eventfds bound to one vector of a device by the files of one user
/// (the effective uid that opened them), unless the caller has
/// `CAP_SYS_RESOURCE` (`IVSHMEM_MAX_EVENTFDS_PER_USER`): one more gets
/// `EDQUOT`. A quarter of [`MAX_EVENTFDS_PER_VECTOR`], so that one user
/// cannot take the slots that others need.
pub(crate) const MAX_EVENTFDS_PER_USER: usize = uapi::MAX_EVENTFDS_PER_USER;

/// Who binds an eventfd: the file and the user that opened it. (Whether
/// the caller is exempt from [`MAX_EVENTFDS_PER_USER`] is asked only when
/// the user's bound is reached.)
#[derive(Clone, Copy)]
pub(crate) struct Binder {
    /// The file, by address.
    pub(crate) file: usize,
    /// The effective uid that opened it.
    pub(crate) user: Kuid,
}

/// An eventfd bound by an open file to a vector.
struct Binding {
    file: usize,
    user: Kuid,
    efd: EventFd,
}

/// What the interrupt handler updates, under [`Events::state`].
pub(crate) struct State {
    /// The device is gone: readers get `ENODEV`.
    pub(crate) gone: bool,
    /// Interrupts so far, per vector.
    pub(crate) counts: KVec<u64>,
    /// CLOCK_MONOTONIC of the latest interrupt, per vector.
    pub(crate) stamps: KVec<u64>,
    /// Per vector, the eventfds bound to it. A list's storage is allocated
    /// (outside the lock) when its vector is first bound, with room for
    /// [`MAX_EVENTFDS_PER_VECTOR`]: nothing grows under the lock.
    bindings: KVec<KVec<Binding>>,
}

/// The doorbell state of a device.
#[pin_data]
pub(crate) struct Events {
    /// Vectors the state has room for.
    nvec: usize,
    /// Vectors that have an interrupt handler: set once at probe, before
    /// any file can be opened.
    usable: Atomic<usize>,
    #[pin]
    pub(crate) state: IrqSpinLock<State>,
    /// Woken by interrupts and removal; relays to the queue of every open
    /// file ([`Listener`]), where readers and pollers wait. Freed after an
    /// RCU grace period (`kfree_rcu`) rather than waiting for one on drop:
    /// the last reference to a device's state may go in a VMA's close,
    /// under the mmap lock, where `synchronize_rcu()` must not stall.
    pub(crate) wait: WaitQueue,
}

/// What one pass of [`Events::bind`] under the lock decided.
enum BindStep {
    /// Done; the eventfd replaced or removed, if any, is to be released.
    Done(Option<EventFd>),
    /// The vector already has [`MAX_EVENTFDS_PER_VECTOR`] eventfds.
    Full(EventFd),
    /// The binder's user already has [`MAX_EVENTFDS_PER_USER`] of them.
    UserFull(EventFd),
    /// The vector's list needs its storage, to be allocated unlocked.
    Grow(EventFd),
}

impl Events {
    /// State for up to `nvec` vectors (0 on ivshmem-plain); none is usable
    /// before [`Events::set_usable`].
    pub(crate) fn new(nvec: usize) -> Result<impl PinInit<Self, Error>> {
        let mut counts = KVec::with_capacity(nvec, GFP_KERNEL)?;
        let mut stamps = KVec::with_capacity(nvec, GFP_KERNEL)?;
        let mut bindings = KVec::with_capacity(nvec, GFP_KERNEL)?;
        for _ in 0..nvec {
            counts.push(0, GFP_KERNEL)?;
            stamps.push(0, GFP_KERNEL)?;
            bindings.push(KVec::new(), GFP_KERNEL)?;
        }
        let wait = WaitQueue::new()?;
        Ok(try_pin_init!(Self {
            nvec,
            usable: Atomic::new(0),
            state <- new_irq_spinlock!(
                State {
                    gone: false,
                    counts,
                    stamps,
                    bindings,
                },
                c"ivshmem_events"
            ),
            wait,
        }))
    }

    /// Records how many vectors got an interrupt handler (the first `n`).
    pub(crate) fn set_usable(&self, n: usize) {
        self.usable.store(n.min(self.nvec), Relaxed);
    }

    /// Vectors this device receives on: those with an interrupt handler.
    pub(crate) fn vectors(&self) -> usize {
        self.usable.load(Relaxed)
    }

    /// An interrupt on `vector`. Interrupt context.
    pub(crate) fn fire(&self, vector: usize) {
        let now = helpers::now_ns();
        let mut st = self.state.lock();
        if let Some(c) = st.counts.get_mut(vector) {
            *c = c.wrapping_add(1);
        }
        if let Some(t) = st.stamps.get_mut(vector) {
            *t = now;
        }
        if let Some(list) = st.bindings.get(vector) {
            for b in list.iter() {
                b.efd.signal();
            }
        }
        drop(st);
        self.wait.notify_all();
    }

    /// The device is gone: wake every reader and poller, release every
    /// eventfd.
    pub(crate) fn revoke(&self) {
        let released = {
            let mut st = self.state.lock();
            st.gone = true;
            core::mem::take(&mut st.bindings)
        };
        drop(released);
        self.wait.notify_all();
    }

    /// The counts now, for a new file to start from.
    pub(crate) fn counts(&self) -> Result<KVec<u64>> {
        let mut v = KVec::with_capacity(self.nvec, GFP_KERNEL)?;
        let st = self.state.lock();
        for c in st.counts.iter() {
            v.push_within_capacity(*c)?;
        }
        Ok(v)
    }

    /// Binds `efd` to `vector` for the file of `who`, replacing its
    /// previous binding of that vector; `None` only removes it. `ENOSPC`
    /// when the vector already has [`MAX_EVENTFDS_PER_VECTOR`] eventfds of
    /// other files, `EDQUOT` when [`MAX_EVENTFDS_PER_USER`] of them are
    /// the user's.
    pub(crate) fn bind(&self, who: Binder, vector: usize, efd: Option<EventFd>) -> Result {
        if vector >= self.vectors() {
            return Err(EINVAL);
        }
        // Asked only when the user's bound is reached: `capable()` marks
        // the task as having used the privilege, and is audited.
        let mut unlimited = false;
        let mut efd = efd;
        let mut storage: Option<KVec<Binding>> = None;
        loop {
            let step = {
                let mut st = self.state.lock();
                if st.gone {
                    return Err(ENODEV);
                }
                let list = st.bindings.get_mut(vector).ok_or(EINVAL)?;
                Self::bind_locked(list, who, unlimited, efd.take(), &mut storage)
            };
            // Eventfds and storage are released outside the lock.
            match step {
                BindStep::Done(old) => {
                    drop(old);
                    return Ok(());
                }
                BindStep::Full(e) => {
                    drop(e);
                    return Err(ENOSPC);
                }
                BindStep::UserFull(e) => {
                    if unlimited || !capability::sys_resource() {
                        drop(e);
                        return Err(compat::edquot());
                    }
                    unlimited = true;
                    efd = Some(e);
                }
                BindStep::Grow(e) => {
                    efd = Some(e);
                    storage = Some(KVec::with_capacity(MAX_EVENTFDS_PER_VECTOR, GFP_KERNEL)?);
                }
            }
        }
    }

    /// One pass of [`Events::bind`] on a vector's list, under the lock.
    fn bind_locked(
        list: &mut KVec<Binding>,
        who: Binder,
        unlimited: bool,
        efd: Option<EventFd>,
        storage: &mut Option<KVec<Binding>>,
    ) -> BindStep {
        if let Some(i) = list.iter().position(|b| b.file == who.file) {
            return BindStep::Done(match efd {
                Some(e) => list.get_mut(i).map(|b| core::mem::replace(&mut b.efd, e)),
                None => list.remove(i).ok().map(|b| b.efd),
            });
        }
        let Some(efd) = efd else {
            // Nothing bound, nothing to remove.
            return BindStep::Done(None);
        };
        if list.len() >= MAX_EVENTFDS_PER_VECTOR {
            return BindStep::Full(efd);
        }
        if !unlimited && list.iter().filter(|b| b.user == who.user).count() >= MAX_EVENTFDS_PER_USER
        {
            return BindStep::UserFull(efd);
        }
        if list.capacity() == 0 {
            match storage.take() {
                // Empty, so nothing is lost by the swap; the old (empty)
                // list owns no memory.
                Some(s) => *list = s,
                None => return BindStep::Grow(efd),
            }
        }
        let (file, user) = (who.file, who.user);
        match list.push_within_capacity(Binding { file, user, efd }) {
            Ok(()) => BindStep::Done(None),
            Err(PushError(b)) => BindStep::Full(b.efd),
        }
    }

    /// Releases every binding of `file` (it is closing). Each vector is
    /// handled in its own short critical section.
    pub(crate) fn unbind_file(&self, file: usize) {
        for vector in 0..self.nvec {
            let old = {
                let mut st = self.state.lock();
                st.bindings.get_mut(vector).and_then(|list| {
                    let i = list.iter().position(|b| b.file == file)?;
                    list.remove(i).ok()
                })
            };
            drop(old);
        }
    }
}

/// A file's vector mask: bit `v` selects vector `v`. Stored and loaded
/// under [`Events::state`] only, so that nobody sees half of an update.
pub(crate) type Mask = [Atomic<u64>; uapi::MAX_VECTORS / 64];

/// Whether `mask` selects `vector`.
fn selects(mask: &Mask, vector: usize) -> bool {
    mask.get(vector / 64)
        .is_some_and(|m| m.load(Relaxed) & (1u64 << (vector % 64)) != 0)
}

/// One pending event: `(vector, count now, interrupts since the file last
/// reported it, timestamp of the latest)`.
pub(crate) type Pending = (usize, u64, u64, u64);

/// The pending events of a file: for each vector `mask` selects whose
/// count differs from what the file saw, starting at vector `start` and
/// wrapping around (so that a busy vector cannot starve the others of a
/// reader that takes few at a time). Allocates nothing (poll calls it).
/// Called under [`Events::state`], which also guards `seen` and `mask`.
pub(crate) fn pending<'a>(
    st: &'a State,
    seen: &'a [Atomic<u64>],
    mask: &'a Mask,
    start: usize,
) -> impl Iterator<Item = Pending> + 'a {
    let n = st.counts.len().min(seen.len());
    let start = if n == 0 { 0 } else { start % n };
    Iterator::chain(start..n, 0..start).filter_map(move |v: usize| {
        let c = *st.counts.get(v)?;
        let s = seen.get(v)?.load(Relaxed);
        let stamp = *st.stamps.get(v)?;
        (selects(mask, v) && c != s).then(|| (v, c, c.wrapping_sub(s), stamp))
    })
}

/// What one open file has taken of a device's doorbells: the count of
/// each vector it has reported, the vectors it waits on, where its next
/// read starts, and whether it has bound eventfds.
///
/// Readers of one file (threads, `dup`s, forked children) need no lock of
/// their own: `seen`, `mask` and `next` are read and written under
/// [`Events::state`] only, so each interrupt is reported once per file and
/// a reader never sleeps in a lock that another reader's wait holds.
pub(crate) struct Listener {
    /// Per vector, the interrupt count this file has reported.
    seen: KVec<Atomic<u64>>,
    /// The vectors this file waits on.
    mask: Mask,
    /// The vector a read starts its scan at: one past the last reported.
    next: Atomic<usize>,
    /// This file has bound an eventfd (to release on close).
    bound: Atomic<bool>,
    /// This file's readers and pollers wait here.
    wait: WaitQueue,
    /// Wakes `wait` whenever the device's queue is woken.
    _relay: Relay,
}

impl Listener {
    /// A listener to which every interrupt of `events` from now on, on
    /// every vector, is new.
    pub(crate) fn new(events: &Events) -> Result<Self> {
        let counts = events.counts()?;
        let mut seen = KVec::with_capacity(counts.len(), GFP_KERNEL)?;
        for c in counts.iter() {
            seen.push_within_capacity(Atomic::new(*c))?;
        }
        let wait = WaitQueue::new_relayed()?;
        let relay = events.wait.relay_to(&wait)?;
        Ok(Self {
            seen,
            mask: [const { Atomic::new(u64::MAX) }; uapi::MAX_VECTORS / 64],
            next: Atomic::new(0),
            bound: Atomic::new(false),
            wait,
            _relay: relay,
        })
    }

    /// Waits for events of `ev` and writes them to `out`.
    ///
    /// The mask is read afresh on every wake-up (`SET_MASK` wakes this
    /// file's waiters), and the events found are claimed (`seen` advanced) under
    /// the same lock, so two readers of this file never report the same
    /// interrupt. Nothing but the wait itself sleeps, and that wait is
    /// interruptible.
    pub(crate) fn read(
        &self,
        ev: &Events,
        out: &mut UserSliceWriter,
        nonblock: bool,
    ) -> Result<usize> {
        let rec = core::mem::size_of::<uapi::Event>();
        let max = (out.len() / rec).min(ev.vectors());
        if max == 0 {
            return Err(EINVAL);
        }
        // Allocated before the interrupt-disabling lock; filled within
        // its capacity under it.
        let mut found = KVec::with_capacity(max, GFP_KERNEL)?;
        let mut st = ev.state.lock();
        loop {
            if st.gone {
                return Err(ENODEV);
            }
            let start = self.next.load(Relaxed);
            for p in pending(&st, &self.seen, &self.mask, start).take(max) {
                found.push_within_capacity(p)?;
            }
            if !found.is_empty() {
                break;
            }
            if nonblock {
                return Err(EAGAIN);
            }
            if self.wait.wait_interruptible(&mut st) {
                return Err(ERESTARTSYS);
            }
        }
        for (v, count, _, _) in found.iter() {
            if let Some(s) = self.seen.get(*v) {
                s.store(*count, Relaxed);
            }
        }
        if let Some((v, ..)) = found.last() {
            self.next.store(v + 1, Relaxed);
        }
        drop(st);
        for (i, (v, _, n, stamp)) in found.iter().enumerate() {
            let e = uapi::Event {
                vector: u16::try_from(*v)?,
                flags: 0,
                count: u32::try_from(*n).unwrap_or(u32::MAX),
                timestamp_ns: *stamp,
            };
            if let Err(err) = out.write(&e) {
                self.unclaim(ev, found.get(i..).unwrap_or(&[]));
                return if i == 0 { Err(err) } else { Ok(i * rec) };
            }
        }
        Ok(found.len() * rec)
    }

    /// Gives back claimed events that did not reach the caller (a faulting
    /// buffer), unless another reader of this file has meanwhile reported
    /// newer interrupts of the vector: then those are lost.
    fn unclaim(&self, ev: &Events, events: &[Pending]) {
        let _st = ev.state.lock();
        for (v, count, n, _) in events {
            if let Some(s) = self.seen.get(*v) {
                if s.load(Relaxed) == *count {
                    s.store(count.wrapping_sub(*n), Relaxed);
                }
            }
        }
    }

    /// Registers `table` on this file's wait queue and returns the
    /// `EPOLL*` events of `ev` ready now.
    pub(crate) fn poll(&self, ev: &Events, file: &File, table: &PollTable) -> u32 {
        self.wait.register(file, table);
        let st = ev.state.lock();
        if st.gone {
            uapi::EPOLLHUP | uapi::EPOLLERR
        } else if pending(&st, &self.seen, &self.mask, 0).next().is_some() {
            uapi::EPOLLIN | uapi::EPOLLRDNORM
        } else {
            0
        }
    }

    /// Selects the vectors this file waits on. Stored under the events
    /// lock, so that no reader or poller sees half of it; then this file's
    /// waiters (only) are woken to look again with the new mask.
    pub(crate) fn set_mask(&self, ev: &Events, mask: &[u64; uapi::MAX_VECTORS / 64]) {
        let st = ev.state.lock();
        for (d, s) in self.mask.iter().zip(mask) {
            d.store(*s, Relaxed);
        }
        drop(st);
        self.wait.notify_all();
    }

    /// Binds `efd` to `vector` for the file of `who` (see
    /// [`Events::bind`]).
    pub(crate) fn bind(
        &self,
        ev: &Events,
        who: Binder,
        vector: usize,
        efd: Option<EventFd>,
    ) -> Result {
        // Close then has bindings to release (release cannot run while
        // this call holds the file).
        self.bound.store(true, Relaxed);
        ev.bind(who, vector, efd)
    }

    /// The file is closing: releases its eventfds, if it bound any.
    pub(crate) fn release(&self, ev: &Events, file: usize) {
        if self.bound.load(Relaxed) {
            ev.unbind_file(file);
        }
    }
}

#[kunit_tests(ivshmem_doorbell)]
mod doorbell_tests {
    use super::*;

    fn mask_of(vectors: &[usize]) -> Mask {
        let m: Mask = [const { Atomic::new(0) }; uapi::MAX_VECTORS / 64];
        for v in vectors {
            if let Some(w) = m.get(v / 64) {
                w.store(w.load(Relaxed) | 1u64 << (v % 64), Relaxed);
            }
        }
        m
    }

    #[test]
    fn pending_is_round_robin_and_masked() -> Result {
        let ev = KBox::pin_init(Events::new(4)?, GFP_KERNEL)?;
        ev.set_usable(4);
        for v in [0, 1, 3] {
            ev.fire(v);
        }
        let seen = [const { Atomic::new(0u64) }; 4];
        let all = mask_of(&[0, 1, 2, 3]);
        let st = ev.state.lock();
        let first =
            |start: usize, mask: &Mask| pending(&st, &seen, mask, start).next().map(|p| p.0);
        assert_eq!(first(0, &all), Some(0));
        // After reporting vector 0, the scan starts at 1.
        assert_eq!(first(1, &all), Some(1));
        assert_eq!(first(2, &all), Some(3));
        // Wraps around.
        assert_eq!(first(4, &all), Some(0));
        assert_eq!(first(7, &all), Some(3));
        // The mask is honoured.
        assert_eq!(first(0, &mask_of(&[1])), Some(1));
        assert_eq!(first(0, &mask_of(&[2])), None);
        Ok(())
    }
}
