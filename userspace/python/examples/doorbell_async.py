#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""Await doorbells with asyncio while ringing a peer now and then.

    python3 examples/doorbell_async.py /dev/ivshmem0 PEER

Each ring to PEER (vector 0) carries a counter in the shared memory at
offset 0; every doorbell that rings here prints what is there.
"""

import asyncio
import sys

import ivshmem


async def ring_every_second(dev: ivshmem.Device, peer: int) -> None:
    shm = dev.map(length=4096)
    for n in range(5):
        shm[0:8] = n.to_bytes(8, "little")  # visible to the peer before its interrupt
        dev.ring(peer, 0)
        await asyncio.sleep(1)


async def listen(dev: ivshmem.Device) -> None:
    shm = dev.map(length=4096)
    async for ev in dev.aevents():
        n = int.from_bytes(shm[0:8], "little")
        print(f"vector {ev.vector} rang {ev.count}x; counter {n}")


async def main() -> None:
    dev = ivshmem.Device.open(sys.argv[1])
    listener = asyncio.create_task(listen(dev))
    await ring_every_second(dev, int(sys.argv[2]))
    listener.cancel()


asyncio.run(main())
