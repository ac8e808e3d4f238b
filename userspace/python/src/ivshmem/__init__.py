# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""Python access to ``/dev/ivshmemN``, the Linux guest driver of QEMU's
inter-VM shared memory device (ivshmem).

Pure Python on the standard library::

    import ivshmem

    with ivshmem.Device.open(0) as dev:
        info = dev.info
        print(info.size, info.ivposition, info.vectors)
        shm = dev.map()                       # a writable mmap of the memory
        shm[0:5] = b"hello"
        if info.doorbell:
            dev.ring(peer=1, vector=0)         # interrupt peer 1
            for ev in dev.wait(timeout=1.0):  # doorbells that rang here
                print(ev.vector, ev.count)

Asyncio programs await doorbells with :meth:`Device.wait_async` or
``async for ev in dev.aevents()``. The raw structures and ioctl numbers
are in :mod:`ivshmem.uapi`.
"""

from .device import CacheMode, Device, Event, Info, devices

__all__ = ["CacheMode", "Device", "Event", "Info", "devices"]
__version__ = "0.1.0"
