# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""An ivshmem-doorbell device that rings itself (its own IVPosition):
ring, wait, the event iterator, masks, eventfds and asyncio.

Every wait that must succeed has a bound (10 s), so a lost interrupt fails
the test instead of hanging it; every "nothing arrived" check is made
after a later interrupt proved the earlier one was delivered.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import time
from typing import Dict, List

import pytest

from ivshmem import Device, Event

LONG = 10.0  # seconds a ring may take to arrive, at most


def me(dev: Device) -> int:
    pos = dev.info.ivposition
    assert pos is not None, "the doorbell device has no IVPosition"
    return pos


def counts(evs: List[Event]) -> Dict[int, int]:
    out: Dict[int, int] = {}
    for e in evs:
        out[e.vector] = out.get(e.vector, 0) + e.count
    return out


def wait_for(dev: Device, want: Dict[int, int]) -> List[Event]:
    """Waits (at most LONG) until exactly ``want`` interrupts arrived."""
    got: List[Event] = []
    deadline = time.monotonic() + LONG
    while sum(e.count for e in got) < sum(want.values()):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        got.extend(dev.wait(left))
    assert counts(got) == want
    return got


def test_info(bell: Device) -> None:
    info = bell.info
    assert info.doorbell and info.msix
    assert info.ivposition is not None
    assert info.vectors >= 4, f"the tests need 4 vectors, the device has {info.vectors}"
    name = os.path.basename(bell.path)
    with open(f"/sys/class/misc/{name}/ivposition") as f:
        assert int(f.read()) == info.ivposition
    with open(f"/sys/class/misc/{name}/vectors") as f:
        assert int(f.read()) == info.vectors


def test_ring_self_and_wait(bell: Device) -> None:
    before = time.monotonic_ns()
    bell.ring(me(bell), 1)
    (ev,) = wait_for(bell, {1: 1})
    after = time.monotonic_ns()
    assert ev.vector == 1 and ev.count == 1
    assert before <= ev.timestamp_ns <= after, "the interrupt's time is not between ring and wake"
    assert bell.wait(0) == [], "the event was reported twice"


def test_ring_by_store(bell: Device) -> None:
    assert bell.info.doorbell_mmap
    with bell.map_doorbell() as page:
        page.ring(me(bell), 2)
        wait_for(bell, {2: 1})
        with pytest.raises(ValueError):
            page.ring(1 << 16, 0)


def test_wait_times_out(bell: Device) -> None:
    t = time.monotonic()
    assert bell.wait(0.05) == []
    assert time.monotonic() - t >= 0.05


def test_every_file_sees_every_interrupt(bell: Device) -> None:
    with Device.open(bell.path) as other:
        bell.ring(me(bell), 2)
        wait_for(bell, {2: 1})
        wait_for(other, {2: 1})


def test_event_iterator(bell: Device) -> None:
    """events() yields one Event per vector that fired; with a timeout it
    ends once nothing more comes."""
    peer = me(bell)
    for v in (0, 1, 2, 3):
        bell.ring(peer, v)
    got: List[Event] = []
    for ev in bell.events(timeout=LONG):
        got.append(ev)
        if sum(e.count for e in got) == 4:
            break
    assert counts(got) == {0: 1, 1: 1, 2: 1, 3: 1}
    t = time.monotonic()
    assert list(bell.events(timeout=0.05)) == []
    assert time.monotonic() - t >= 0.05
    # The endless iterator (iter(dev)) blocks in read() until the next one;
    # select() first, so that a lost interrupt fails instead of hanging.
    bell.ring(peer, 3)
    assert select.select([bell], [], [], LONG)[0] == [bell], "no interrupt"
    ev = next(iter(bell))
    assert (ev.vector, ev.count) == (3, 1)


def test_set_mask(bell: Device) -> None:
    """A masked vector's interrupts wait until the mask selects it again."""
    peer = me(bell)
    with Device.open(bell.path) as other:
        other.set_mask([0])
        bell.ring(peer, 1)
        wait_for(bell, {1: 1})  # delivered: every file has counted it
        assert other.wait(0) == [], "a masked vector was reported"
        bell.ring(peer, 0)
        wait_for(bell, {0: 1})
        assert counts(other.wait(0)) == {0: 1}
        other.set_mask()  # all again: the kept interrupt shows up
        assert counts(other.wait(0)) == {1: 1}
        other.set_mask([])
        bell.ring(peer, 2)
        wait_for(bell, {2: 1})
        assert other.wait(0) == []
        other.set_mask(range(256))
        assert counts(other.wait(0)) == {2: 1}
    with pytest.raises(ValueError):
        bell.set_mask([256])


def test_bind_eventfd(bell: Device) -> None:
    peer = me(bell)
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        bell.bind_eventfd(2, efd)
        bell.ring(peer, 2)
        readable, _, _ = select.select([efd], [], [], LONG)
        assert readable == [efd], "the eventfd was not signalled"
        assert os.eventfd_read(efd) == 1
        wait_for(bell, {2: 1})
        # Another vector does not signal it.
        bell.ring(peer, 1)
        wait_for(bell, {1: 1})
        assert select.select([efd], [], [], 0)[0] == []
        bell.unbind_eventfd(2)
        bell.ring(peer, 2)
        wait_for(bell, {2: 1})  # the handler ran; the eventfd stays quiet
        assert select.select([efd], [], [], 0)[0] == []
    finally:
        os.close(efd)
    efd = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        with pytest.raises(OSError) as e:
            bell.bind_eventfd(bell.info.vectors, efd)
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(efd)


def test_ring_refuses_bad_arguments(bell: Device) -> None:
    with pytest.raises(OSError) as e:
        bell.ring(me(bell), 256)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(ValueError):
        bell.ring(65536, 0)
    with pytest.raises(ValueError):
        bell.ring(0, -1)


def test_asyncio_wait(bell: Device) -> None:
    """A coroutine awaits a doorbell while the event loop keeps running:
    the ring is made by another task once the waiter is parked."""
    peer = me(bell)

    async def main() -> List[Event]:
        waiter = asyncio.ensure_future(bell.wait_async(LONG))
        # One turn of the loop runs the new task up to its first await:
        # its reader is registered and it is parked, not blocking us.
        await asyncio.sleep(0)
        assert not waiter.done()
        bell.ring(peer, 3)
        evs = await waiter
        return evs

    evs = asyncio.run(main())
    assert counts(evs) == {3: 1}


def test_asyncio_timeout_and_events(bell: Device) -> None:
    peer = me(bell)

    async def main() -> Dict[int, int]:
        assert await bell.wait_async(0.05) == []
        for v in (0, 1):
            bell.ring(peer, v)
        got: List[Event] = []

        async def collect() -> None:
            async for ev in bell.aevents():
                got.append(ev)
                if sum(e.count for e in got) == 2:
                    return

        await asyncio.wait_for(collect(), LONG)
        return counts(got)

    assert asyncio.run(main()) == {0: 1, 1: 1}


def test_asyncio_plain_device_fails(plain: Device) -> None:
    """On ivshmem-plain the loop wakes (poll says EPOLLERR) and the wait
    fails with the kernel's reason instead of hanging."""

    async def main() -> None:
        await asyncio.wait_for(plain.wait_async(), LONG)

    with pytest.raises(OSError) as e:
        asyncio.run(main())
    assert e.value.errno == errno.EOPNOTSUPP
