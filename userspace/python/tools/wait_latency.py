#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""What the Python package's wait path costs over a raw ``os.read``.

On an ivshmem-doorbell device, rings this peer itself, many times, and
times each ring-to-wake with every way of waiting, on the same open file,
interleaved so that drift hits all alike:

- ``raw os.read``: a blocking ``os.read`` of the fd, nothing decoded;
- ``Device.wait``: ``poll`` then ``read``, decoded into ``Event``s;
- ``Device.events``: the blocking iterator (``read``, decoded);
- ``raw add_reader``: the least asyncio can do, ``loop.add_reader`` on the
  fd, then ``os.read``, nothing decoded: the baseline of the next;
- ``Device.wait_async``: ``loop.add_reader`` in a running asyncio loop.

Every sample rings with the same raw ioctl, so the ring costs the same in
each. Prints, per method, the median and the 99th percentile of
ring-to-wake (clock before the ring to clock after the wait returned) and
of interrupt-to-wake (the kernel's interrupt timestamp to the same clock),
and the package's extra over raw ``os.read``. A second pass times only
the call, with the event already pending (``select`` saw the fd readable
before the clock starts): the package's own CPU cost per wait, without the
interrupt's jitter. Each wait must return exactly the one interrupt rung
(vector, count 1), else the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import select
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import ivshmem  # noqa: E402
from ivshmem import uapi  # noqa: E402

Sample = Tuple[int, int]  # (ring-to-wake ns, interrupt-to-wake ns)


def pct(values: List[int], p: float) -> float:
    """The p-th percentile (nearest rank), in microseconds."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k] / 1000


def find_doorbell() -> str:
    for path in ivshmem.devices():
        with ivshmem.Device.open(path) as d:
            if d.info.doorbell:
                return path
    raise SystemExit("wait_latency: no ivshmem-doorbell device")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000, help="rings per method")
    ap.add_argument("--vector", type=int, default=0)
    ap.add_argument("--device", default=None, help="node (default: the first doorbell device)")
    args = ap.parse_args()

    dev = ivshmem.Device.open(args.device or find_doorbell())
    info = dev.info
    assert info.ivposition is not None
    fd = dev.fileno()
    vec = args.vector
    ring_arg = uapi.RING.pack(info.ivposition, vec, 0, 0)
    ring_req = uapi.IVSHMEM_IOCTL_RING
    size = 32 * uapi.EVENT.size
    clock = time.monotonic_ns
    bad: List[str] = []

    def check(what: str, vector: int, count: int) -> None:
        if (vector, count) != (vec, 1) and len(bad) < 5:
            bad.append(f"{what}: got vector {vector} count {count}, want {vec} 1")

    def raw() -> Sample:
        t0 = clock()
        fcntl.ioctl(fd, ring_req, ring_arg)
        data = os.read(fd, size)
        t1 = clock()
        if len(data) != uapi.EVENT.size:
            bad.append(f"raw read returned {len(data)} bytes, not one event")
            return t1 - t0, 0
        v, _f, n, ts = uapi.EVENT.unpack(data)
        check("raw os.read", v, n)
        return t1 - t0, t1 - ts

    def wait() -> Sample:
        t0 = clock()
        fcntl.ioctl(fd, ring_req, ring_arg)
        evs = dev.wait()
        t1 = clock()
        check("Device.wait", evs[0].vector, sum(e.count for e in evs))
        return t1 - t0, t1 - evs[0].timestamp_ns

    it = dev.events()

    def iterate() -> Sample:
        t0 = clock()
        fcntl.ioctl(fd, ring_req, ring_arg)
        ev = next(it)
        t1 = clock()
        check("Device.events", ev.vector, ev.count)
        return t1 - t0, t1 - ev.timestamp_ns

    async def raw_add_reader() -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(fd)
        return os.read(fd, size)

    async def run() -> Dict[str, List[Sample]]:
        out: Dict[str, List[Sample]] = {
            "raw os.read": [],
            "Device.wait": [],
            "Device.events": [],
            "raw add_reader": [],
            "Device.wait_async": [],
        }
        sync: List[Tuple[str, Callable[[], Sample]]] = [
            ("raw os.read", raw),
            ("Device.wait", wait),
            ("Device.events", iterate),
        ]
        for _ in range(args.samples):
            for name, f in sync:
                out[name].append(f())
            t0 = clock()
            fcntl.ioctl(fd, ring_req, ring_arg)
            data = await raw_add_reader()
            t1 = clock()
            v, _f, n, ts = uapi.EVENT.unpack(data[: uapi.EVENT.size])
            check("raw add_reader", v, n)
            out["raw add_reader"].append((t1 - t0, t1 - ts))
            t0 = clock()
            fcntl.ioctl(fd, ring_req, ring_arg)
            evs = await dev.wait_async()
            t1 = clock()
            check("Device.wait_async", evs[0].vector, sum(e.count for e in evs))
            out["Device.wait_async"].append((t1 - t0, t1 - evs[0].timestamp_ns))
        return out

    def pending() -> None:
        fcntl.ioctl(fd, ring_req, ring_arg)
        if select.select([fd], [], [], 10)[0] != [fd]:
            raise SystemExit("wait_latency: a ring did not arrive within 10 s")

    async def run_pending() -> Dict[str, List[int]]:
        names = (
            "raw os.read",
            "Device.wait",
            "Device.events",
            "raw add_reader",
            "Device.wait_async",
        )
        out: Dict[str, List[int]] = {k: [] for k in names}
        for _ in range(args.samples):
            pending()
            t0 = clock()
            data = os.read(fd, size)
            out["raw os.read"].append(clock() - t0)
            v, _f, n, _ts = uapi.EVENT.unpack(data[: uapi.EVENT.size])
            check("raw os.read (pending)", v, n)
            pending()
            t0 = clock()
            evs = dev.wait()
            out["Device.wait"].append(clock() - t0)
            check("Device.wait (pending)", evs[0].vector, sum(e.count for e in evs))
            pending()
            t0 = clock()
            ev = next(it)
            out["Device.events"].append(clock() - t0)
            check("Device.events (pending)", ev.vector, ev.count)
            pending()
            t0 = clock()
            data = await raw_add_reader()
            out["raw add_reader"].append(clock() - t0)
            v, _f, n, _ts = uapi.EVENT.unpack(data[: uapi.EVENT.size])
            check("raw add_reader (pending)", v, n)
            pending()
            t0 = clock()
            evs = await dev.wait_async()
            out["Device.wait_async"].append(clock() - t0)
            check("Device.wait_async (pending)", evs[0].vector, sum(e.count for e in evs))
        return out

    # Warm up (page in code, the first interrupts), not counted.
    for _ in range(20):
        raw()
    results = asyncio.run(run())
    calls = asyncio.run(run_pending())
    # What each method is compared with: the package's synchronous waits
    # with a raw os.read, its asyncio wait with both.
    bases = {
        "Device.wait": ["raw os.read"],
        "Device.events": ["raw os.read"],
        "raw add_reader": ["raw os.read"],
        "Device.wait_async": ["raw os.read", "raw add_reader"],
    }
    print(
        f"ring-to-wake on {dev.path} (vector {vec}, {args.samples} samples per method, "
        f"interleaved; Python {sys.version.split()[0]}), microseconds:"
    )
    for name, samples in results.items():
        r = [s[0] for s in samples]
        k = [s[1] for s in samples]
        print(
            f"{name:18} ring-to-wake median {pct(r, 50):8.1f} p99 {pct(r, 99):8.1f}"
            f" | interrupt-to-wake median {pct(k, 50):8.1f} p99 {pct(k, 99):8.1f}"
        )
    print("cost over the baseline (difference of the statistics), microseconds:")
    for name, base_names in bases.items():
        r = [s[0] for s in results[name]]
        k = [s[1] for s in results[name]]
        for b in base_names:
            br = [s[0] for s in results[b]]
            bk = [s[1] for s in results[b]]
            print(
                f"{name:18} over {b:15} ring-to-wake median {pct(r, 50) - pct(br, 50):+8.1f}"
                f" p99 {pct(r, 99) - pct(br, 99):+8.1f}"
                f" | interrupt-to-wake median {pct(k, 50) - pct(bk, 50):+8.1f}"
                f" p99 {pct(k, 99) - pct(bk, 99):+8.1f}"
            )
    print("the call alone, the event already pending, microseconds:")
    for name, c in calls.items():
        print(f"{name:18} median {pct(c, 50):8.1f} p99 {pct(c, 99):8.1f}")
    for name, base_names in bases.items():
        c = calls[name]
        for b in base_names:
            bc = calls[b]
            print(
                f"{name:18} over {b:15} median {pct(c, 50) - pct(bc, 50):+8.1f}"
                f" p99 {pct(c, 99) - pct(bc, 99):+8.1f}"
            )
    for b in bad:
        print(f"error: {b}")
    dev.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
