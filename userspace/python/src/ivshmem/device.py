# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""``/dev/ivshmemN``: open, describe, map, ring and wait."""

from __future__ import annotations

import asyncio
import ctypes
import enum
import fcntl
import mmap
import os
import re
import select
from struct import error as struct_error
from dataclasses import dataclass
from typing import (
    AsyncIterator,
    Iterable,
    Iterator,
    List,
    Optional,
    Protocol,
    Union,
)

from . import uapi

__all__ = ["CacheMode", "Device", "DoorbellPage", "Event", "Info", "devices"]

#: How many events one ``read()`` asks for (each vector that fired is one).
READ_BATCH = 32


class HasFileno(Protocol):
    """Anything with a ``fileno()``, such as a file or a socket."""

    def fileno(self) -> int: ...


PathLike = Union[str, "os.PathLike[str]"]


class CacheMode(enum.IntEnum):
    """How a mapping is cached (``IVSHMEM_CACHE_*``)."""

    #: Write-back: the default and the fastest.
    WRITE_BACK = uapi.IVSHMEM_CACHE_WB
    #: Write-combining.
    WRITE_COMBINING = uapi.IVSHMEM_CACHE_WC
    #: Uncached (UC-).
    UNCACHED = uapi.IVSHMEM_CACHE_UC


@dataclass(frozen=True)
class Info:
    """What a device is (``IVSHMEM_IOCTL_INFO``)."""

    #: Bytes of shared memory.
    size: int
    #: This peer's id (IVPosition): given by the ivshmem server on doorbell
    #: devices, 0 on ivshmem-plain, ``None`` while a revision 0 device waits
    #: for its memory.
    ivposition: Optional[int]
    #: Doorbell vectors this peer receives on (0 on ivshmem-plain).
    vectors: int
    #: ``IVSHMEM_FEATURE_*`` bits.
    features: int
    #: ``IVSHMEM_INFO_*`` bits.
    flags: int
    #: N of ``/dev/ivshmemN``.
    index: int
    #: PCI revision.
    revision: int
    #: PCI domain (segment).
    pci_domain: int
    #: PCI bus.
    pci_bus: int
    #: PCI device (slot).
    pci_slot: int
    #: PCI function.
    pci_function: int
    #: PCI subsystem vendor id.
    subsystem_vendor: int
    #: PCI subsystem id.
    subsystem_device: int

    @property
    def doorbell(self) -> bool:
        """Whether peers can be rung (ivshmem-doorbell)."""
        return bool(self.features & uapi.IVSHMEM_FEATURE_DOORBELL)

    @property
    def msix(self) -> bool:
        """Whether doorbells arrive as MSI-X."""
        return bool(self.features & uapi.IVSHMEM_FEATURE_MSIX)

    @property
    def doorbell_mmap(self) -> bool:
        """Whether peers can be rung with a store (:meth:`Device.map_doorbell`)."""
        return bool(self.features & uapi.IVSHMEM_FEATURE_DOORBELL_MMAP)

    @property
    def ready(self) -> bool:
        """False while a revision 0 device waits for its memory."""
        return not self.flags & uapi.IVSHMEM_INFO_NOT_READY

    @property
    def pci_address(self) -> str:
        """The PCI address as sysfs names it, e.g. ``0000:00:03.0``."""
        return (
            f"{self.pci_domain:04x}:{self.pci_bus:02x}:"
            f"{self.pci_slot:02x}.{self.pci_function:x}"
        )

    @classmethod
    def from_raw(cls, r: uapi.ivshmem_info) -> "Info":
        """Decodes the raw structure."""
        return cls(
            size=r.size,
            ivposition=r.ivposition if r.ivposition >= 0 else None,
            vectors=r.vectors,
            features=r.features,
            flags=r.flags,
            index=r.index,
            revision=r.revision,
            pci_domain=r.pci_domain,
            pci_bus=r.pci_bus,
            pci_slot=r.pci_devfn >> 3,
            pci_function=r.pci_devfn & 7,
            subsystem_vendor=r.subsystem_vendor,
            subsystem_device=r.subsystem_device,
        )


@dataclass(frozen=True)
class Event:
    """Doorbells that rang on one vector, as ``read()`` reports them."""

    #: The vector.
    vector: int
    #: Interrupts on it since this file last reported it (QEMU merges rings
    #: that arrive before it delivered the previous one).
    count: int
    #: ``CLOCK_MONOTONIC`` time of the latest one, in nanoseconds, taken in
    #: the interrupt handler: compare with ``time.monotonic_ns()``.
    timestamp_ns: int


def _decode(data: bytes) -> List[Event]:
    """Decodes what ``read()`` returned into events."""
    n = len(data) - len(data) % uapi.EVENT.size
    return [
        Event(vector, count, ts)
        for vector, _flags, count, ts in uapi.EVENT.iter_unpack(data[:n])
    ]


def _oserror(e: OSError, what: str, path: str) -> OSError:
    """The same error (errno and class), saying what failed on which device."""
    if e.errno is None:
        return e
    err = OSError(e.errno, f"{os.strerror(e.errno)} ({what})", path)
    err.__cause__ = e
    return err


_NODE = re.compile(r"ivshmem(\d+)\Z")


class DoorbellPage:
    """A device's mapped doorbell page (:meth:`Device.map_doorbell`)."""

    def __init__(self, page: mmap.mmap) -> None:
        self._page = page
        self._reg = ctypes.c_uint32.from_buffer(page, uapi.IVSHMEM_REG_DOORBELL)

    def ring(self, peer: int, vector: int) -> None:
        """Interrupts ``peer`` on ``vector`` with one 32-bit store to the
        Doorbell register, as :meth:`Device.ring` does with an ioctl."""
        if not (0 <= peer <= 0xFFFF and 0 <= vector <= 0xFFFF):
            raise ValueError(f"peer {peer} vector {vector}: out of range")
        self._reg.value = peer << 16 | vector

    def close(self) -> None:
        """Unmaps the page."""
        del self._reg
        self._page.close()

    def __enter__(self) -> "DoorbellPage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def devices() -> List[str]:
    """Paths of every ``/dev/ivshmemN`` of this system, in N order.

    Taken from ``/sys/class/misc`` where the driver registers them (or
    ``/dev`` when sysfs is not mounted). Open one with :meth:`Device.open`.
    """
    for where in ("/sys/class/misc", "/dev"):
        try:
            names = os.listdir(where)
        except OSError:
            continue
        found = sorted(
            (int(m.group(1)), name) for name in names if (m := _NODE.match(name))
        )
        return [f"/dev/{name}" for _, name in found]
    return []


class Device:
    """An open ivshmem device.

    Errors are :class:`OSError` subclasses with the kernel's ``errno``
    (``ENODEV`` once the device is gone, ``EOPNOTSUPP`` for doorbell calls
    on ivshmem-plain) whose message says what was being done; the device
    node is the error's ``filename``.
    """

    def __init__(self, fd: int, path: str) -> None:
        """Takes ownership of ``fd``, an open device node; see :meth:`open`."""
        self._fd: Optional[int] = fd
        self.path: str = path
        self._ring = bytearray(uapi.RING.size)
        # Made once: wait() is on the hot path.
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    @classmethod
    def open(cls, device: Union[int, PathLike] = 0) -> "Device":
        """Opens ``/dev/ivshmem<device>`` (an int) or a device node's path,
        read-write and close-on-exec."""
        if isinstance(device, int):
            path = f"/dev/ivshmem{device}"
        else:
            path = os.fspath(device)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return cls(fd, path)

    # -- file ----------------------------------------------------------

    def fileno(self) -> int:
        """The file descriptor, for ``select``, ``selectors`` or asyncio."""
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd is None

    def close(self) -> None:
        """Closes the file; its eventfd bindings go with it. Mappings stay."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Also when __init__ did not finish (no _fd yet).
        if getattr(self, "_fd", None) is not None:
            try:
                self.close()
            except OSError:
                pass

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"<ivshmem.Device {self.path} {state}>"

    def _ioctl(self, request: int, arg: ctypes.Structure, what: str) -> None:
        try:
            fcntl.ioctl(self.fileno(), request, arg, True)
        except OSError as e:
            raise _oserror(e, what, self.path) from None

    # -- facts and memory ---------------------------------------------

    @property
    def info(self) -> Info:
        """The device's facts (``IVSHMEM_IOCTL_INFO``, asked each time)."""
        raw = uapi.ivshmem_info()
        self._ioctl(uapi.IVSHMEM_IOCTL_INFO, raw, "IVSHMEM_IOCTL_INFO")
        return Info.from_raw(raw)

    def set_cache_mode(self, mode: CacheMode) -> None:
        """Chooses the cache mode of this open file's later mappings."""
        arg = uapi.ivshmem_cache(mode=int(mode))
        self._ioctl(
            uapi.IVSHMEM_IOCTL_SET_CACHE, arg, f"IVSHMEM_IOCTL_SET_CACHE {CacheMode(mode).name}"
        )

    def map(
        self,
        offset: int = 0,
        length: Optional[int] = None,
        cache: CacheMode = CacheMode.WRITE_BACK,
    ) -> mmap.mmap:
        """Maps shared memory, read-write and shared.

        ``offset`` must be page-aligned; ``length`` defaults to the rest of
        the memory. The result is a writable buffer: slice it, or take a
        ``memoryview`` (``memoryview(m).cast("Q")`` for 64-bit words). While
        any mapping of the device exists, a mapping with another cache mode
        fails with ``EBUSY`` (the CPU forbids aliases with different cache
        types). Once the device is gone, touching the mapping raises SIGBUS.
        """
        if length is None:
            length = self.info.size - offset
        if length <= 0:
            raise ValueError(f"nothing to map: {length} bytes at offset {offset:#x}")
        self.set_cache_mode(cache)
        try:
            return mmap.mmap(
                self.fileno(),
                length,
                flags=mmap.MAP_SHARED,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
                offset=offset,
            )
        except OSError as e:
            raise _oserror(
                e, f"mapping {length} bytes at {offset:#x} {CacheMode(cache).name}", self.path
            ) from None

    # -- doorbells -----------------------------------------------------

    def map_doorbell(self) -> "DoorbellPage":
        """Maps the doorbell page, to ring peers with a store instead of a
        system call (MSI-X devices; ``EOPNOTSUPP`` where
        :attr:`Info.doorbell_mmap` is false, ``EACCES`` on a read-only
        file)."""
        try:
            page = mmap.mmap(
                self.fileno(),
                mmap.PAGESIZE,
                flags=mmap.MAP_SHARED,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
                offset=uapi.IVSHMEM_DOORBELL_MMAP_OFFSET,
            )
        except OSError as e:
            raise _oserror(e, "mapping the doorbell page", self.path) from None
        return DoorbellPage(page)

    def ring(self, peer: int, vector: int) -> None:
        """Interrupts ``peer`` (its IVPosition) on ``vector``.

        Earlier writes to the shared memory are visible to the peer when
        its interrupt arrives. QEMU drops rings to absent peers silently.
        """
        try:
            uapi.RING.pack_into(self._ring, 0, peer, vector, 0, 0)
        except struct_error as e:
            raise ValueError(f"peer {peer} vector {vector}: {e}") from None
        try:
            fcntl.ioctl(self.fileno(), uapi.IVSHMEM_IOCTL_RING, self._ring, False)
        except OSError as e:
            raise _oserror(e, f"ringing peer {peer} vector {vector}", self.path) from None

    def set_mask(self, vectors: Optional[Iterable[int]] = None) -> None:
        """Chooses the vectors this open file waits on; ``None``: all (as
        when opened). Interrupts on other vectors are kept and reported
        once the mask selects them again."""
        arg = uapi.ivshmem_mask()
        if vectors is None:
            for i in range(len(arg.mask)):
                arg.mask[i] = (1 << 64) - 1
            chosen = "all"
        else:
            vs = sorted(set(vectors))
            for v in vs:
                if not 0 <= v < uapi.IVSHMEM_MAX_VECTORS:
                    raise ValueError(f"vector {v} is not below {uapi.IVSHMEM_MAX_VECTORS}")
                arg.mask[v // 64] |= 1 << (v % 64)
            chosen = str(vs)
        self._ioctl(uapi.IVSHMEM_IOCTL_SET_MASK, arg, f"setting the vector mask to {chosen}")

    def bind_eventfd(self, vector: int, fd: Union[int, HasFileno]) -> None:
        """Makes each interrupt on ``vector`` add 1 to the eventfd ``fd``
        (e.g. from ``os.eventfd``), until this file closes or
        :meth:`unbind_eventfd`. Binding again replaces the eventfd."""
        raw = fd if isinstance(fd, int) else fd.fileno()
        arg = uapi.ivshmem_eventfd(fd=raw, vector=vector)
        self._ioctl(
            uapi.IVSHMEM_IOCTL_BIND_EVENTFD, arg, f"binding eventfd {raw} to vector {vector}"
        )

    def unbind_eventfd(self, vector: int) -> None:
        """Removes this file's eventfd of ``vector``."""
        arg = uapi.ivshmem_eventfd(fd=-1, vector=vector)
        self._ioctl(
            uapi.IVSHMEM_IOCTL_BIND_EVENTFD, arg, f"unbinding the eventfd of vector {vector}"
        )

    def read_events(self) -> List[Event]:
        """Reads the pending events, blocking until there is one (unless the
        file is non-blocking: then ``[]`` when none is pending)."""
        try:
            data = os.read(self.fileno(), READ_BATCH * uapi.EVENT.size)
        except BlockingIOError:
            return []
        except OSError as e:
            raise _oserror(e, "reading events", self.path) from None
        return _decode(data)

    def wait(self, timeout: Optional[float] = None) -> List[Event]:
        """Waits up to ``timeout`` seconds (``None``: forever, 0: just look)
        for doorbells; returns the events, ``[]`` when the time ran out."""
        self.fileno()  # ValueError once closed
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        ready = self._poll.poll(ms)
        if not ready:
            return []
        # POLLIN: events to read. POLLERR/POLLHUP: the device is gone, or
        # has no doorbells; read() then fails at once with the reason
        # (ENODEV, EOPNOTSUPP) instead of blocking.
        return self.read_events()

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Events as they come, one by one. Without ``timeout`` the iterator
        is endless (it ends only by an error, e.g. ``ENODEV`` when the device
        goes away); with one, it ends when no event came for that long."""
        while True:
            batch = self.read_events() if timeout is None else self.wait(timeout)
            if not batch and timeout is not None:
                return
            yield from batch

    def __iter__(self) -> Iterator[Event]:
        """The endless :meth:`events` iterator."""
        return self.events()

    # -- asyncio -------------------------------------------------------

    async def wait_async(self, timeout: Optional[float] = None) -> List[Event]:
        """Awaits doorbells without blocking the event loop (the fd is
        watched with ``loop.add_reader``); ``[]`` when ``timeout`` seconds
        passed first."""
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            readable: asyncio.Future[None] = loop.create_future()

            def _ready() -> None:
                if not readable.done():
                    readable.set_result(None)

            loop.add_reader(fd, _ready)
            try:
                if deadline is None:
                    await readable
                else:
                    await asyncio.wait_for(readable, max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return []
            finally:
                loop.remove_reader(fd)
            # Readable: the events are there (or the device is gone, which
            # wait() reports); reading does not block.
            evs = self.wait(0)
            if evs:
                return evs

    async def aevents(self) -> AsyncIterator[Event]:
        """Events as they come, for ``async for``; endless."""
        while True:
            for ev in await self.wait_async():
                yield ev

