#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""List every ivshmem device, and show the first bytes of its memory.

    python3 examples/info.py
"""

import ivshmem

for path in ivshmem.devices():
    with ivshmem.Device.open(path) as dev:
        info = dev.info
        kind = f"doorbell, peer {info.ivposition}, {info.vectors} vectors" if info.doorbell else "plain"
        print(f"{path}: {info.pci_address}, {info.size} bytes, {kind}")
        shm = dev.map(length=4096)  # write-back; cache=ivshmem.CacheMode.UNCACHED etc.
        print("   ", bytes(shm[:32]).hex(" "))
        shm.close()
