#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""Await doorbells with asyncio while ringing a peer now and then.

    python3 examples/doorbell_async.py /dev/ivshmem0 PEER

Rings PEER (vector 0) five times, each after writing a counter (1..5) to
the shared memory at offset 0, while a listener task prints each doorbell
that rings here with the counter it finds, until it finds 5. With this
guest's own IVPosition as PEER it hears itself.
"""

import asyncio
import sys

import ivshmem

LAST = 5


async def ring_now_and_then(dev: ivshmem.Device, peer: int) -> None:
    shm = dev.map(length=4096)
    for n in range(1, LAST + 1):
        shm[0:8] = n.to_bytes(8, "little")  # visible to the peer before its interrupt
        dev.ring(peer, 0)
        await asyncio.sleep(0.2)


async def listen(dev: ivshmem.Device) -> None:
    shm = dev.map(length=4096)
    async for ev in dev.aevents():
        n = int.from_bytes(shm[0:8], "little")
        print(f"vector {ev.vector} rang {ev.count}x; counter {n}")
        if n == LAST:
            return


async def main() -> None:
    dev = ivshmem.Device.open(sys.argv[1])
    listener = asyncio.create_task(listen(dev))
    await ring_now_and_then(dev, int(sys.argv[2]))
    await asyncio.wait_for(listener, timeout=10)  # the last ring is never lost


asyncio.run(main())
