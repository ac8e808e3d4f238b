# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""The raw user API of ``uapi/linux/ivshmem.h``, field for field.

Each structure is a :mod:`ctypes` mirror of the C one; the ioctl numbers
are computed with the kernel's ``_IOC`` encoding from those sizes. The
project's host tests compile a C program against the header and compare
every size, offset and constant with :func:`facts` (run
``python3 -m ivshmem.uapi`` to see them), so that drift fails.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Dict, List, Tuple, Type

#: The ioctl type byte.
IVSHMEM_IOCTL_MAGIC = 0xB9

#: ``ivshmem_info.features``: can ring peers (ivshmem-doorbell).
IVSHMEM_FEATURE_DOORBELL = 1 << 0
#: ``ivshmem_info.features``: doorbells arrive as MSI-X.
IVSHMEM_FEATURE_MSIX = 1 << 1
#: ``ivshmem_info.features``: doorbells arrive as INTx (revision 0).
IVSHMEM_FEATURE_INTX = 1 << 2
#: ``ivshmem_info.features``: the doorbell page can be mapped.
IVSHMEM_FEATURE_DOORBELL_MMAP = 1 << 3
#: The mmap offset of the doorbell page (the device's registers).
IVSHMEM_DOORBELL_MMAP_OFFSET = 1 << 52
#: Offset of the Doorbell register in the doorbell page.
IVSHMEM_REG_DOORBELL = 12
#: ``ivshmem_info.flags``: IVPosition reads -1, the memory is not there yet.
IVSHMEM_INFO_NOT_READY = 1 << 0

#: ``ivshmem_cache.mode``: write-back (the default).
IVSHMEM_CACHE_WB = 0
#: ``ivshmem_cache.mode``: write-combining.
IVSHMEM_CACHE_WC = 1
#: ``ivshmem_cache.mode``: uncached (UC-).
IVSHMEM_CACHE_UC = 2

#: Vectors a doorbell can address (QEMU honours 8 bits).
IVSHMEM_MAX_VECTORS = 256

#: Eventfds bound to one vector of a device, over all its open files;
#: one more gets ``ENOSPC``.
IVSHMEM_MAX_EVENTFDS = 64
IVSHMEM_MAX_EVENTFDS_PER_USER = 16


class ivshmem_info(ctypes.Structure):
    """``struct ivshmem_info``: what the device is (``IVSHMEM_IOCTL_INFO``)."""

    _fields_ = [
        ("size", ctypes.c_uint64),
        ("ivposition", ctypes.c_int32),
        ("vectors", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("revision", ctypes.c_uint8),
        ("pci_bus", ctypes.c_uint8),
        ("pci_devfn", ctypes.c_uint8),
        ("pad0", ctypes.c_uint8),
        ("pci_domain", ctypes.c_uint32),
        ("subsystem_vendor", ctypes.c_uint16),
        ("subsystem_device", ctypes.c_uint16),
        ("reserved", ctypes.c_uint64 * 4),
    ]


class ivshmem_cache(ctypes.Structure):
    """``struct ivshmem_cache``: cache mode of later mmaps (``IVSHMEM_IOCTL_SET_CACHE``)."""

    _fields_ = [
        ("mode", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint64),
    ]


class ivshmem_ring(ctypes.Structure):
    """``struct ivshmem_ring``: interrupt a peer (``IVSHMEM_IOCTL_RING``)."""

    _fields_ = [
        ("peer", ctypes.c_uint16),
        ("vector", ctypes.c_uint16),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint64),
    ]


class ivshmem_mask(ctypes.Structure):
    """``struct ivshmem_mask``: vectors an open file waits on (``IVSHMEM_IOCTL_SET_MASK``)."""

    _fields_ = [
        ("mask", ctypes.c_uint64 * (IVSHMEM_MAX_VECTORS // 64)),
        ("flags", ctypes.c_uint32),
        ("reserved0", ctypes.c_uint32),
        ("reserved", ctypes.c_uint64),
    ]


class ivshmem_eventfd(ctypes.Structure):
    """``struct ivshmem_eventfd``: signal an eventfd on a vector (``IVSHMEM_IOCTL_BIND_EVENTFD``)."""

    _fields_ = [
        ("fd", ctypes.c_int32),
        ("vector", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("reserved", ctypes.c_uint64),
    ]


class ivshmem_event(ctypes.Structure):
    """``struct ivshmem_event``: what ``read()`` returns, one per vector that fired."""

    _fields_ = [
        ("vector", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("count", ctypes.c_uint32),
        ("timestamp_ns", ctypes.c_uint64),
    ]


#: ``struct ivshmem_event`` as a :class:`struct.Struct` (vector, flags,
#: count, timestamp_ns), for decoding ``read()`` quickly; its size is
#: checked against the C header like the rest.
EVENT = struct.Struct("=HHIQ")
#: ``struct ivshmem_ring`` (peer, vector, flags, reserved) packed.
RING = struct.Struct("=HHIQ")

# The kernel's generic ioctl encoding (include/uapi/asm-generic/ioctl.h),
# which x86 uses: dir:2 | size:14 | type:8 | nr:8.
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = 30
_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, nr: int, size: int) -> int:
    if not 0 <= size < 1 << 14:
        raise ValueError(f"ioctl argument of {size} bytes does not fit _IOC_SIZE")
    return (
        (direction << _IOC_DIRSHIFT)
        | (IVSHMEM_IOCTL_MAGIC << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def _ior(nr: int, t: Type[ctypes.Structure]) -> int:
    return _ioc(_IOC_READ, nr, ctypes.sizeof(t))


def _iow(nr: int, t: Type[ctypes.Structure]) -> int:
    return _ioc(_IOC_WRITE, nr, ctypes.sizeof(t))


#: ``IVSHMEM_IOCTL_INFO``
IVSHMEM_IOCTL_INFO = _ior(0x00, ivshmem_info)
#: ``IVSHMEM_IOCTL_SET_CACHE``
IVSHMEM_IOCTL_SET_CACHE = _iow(0x01, ivshmem_cache)
#: ``IVSHMEM_IOCTL_RING``
IVSHMEM_IOCTL_RING = _iow(0x02, ivshmem_ring)
#: ``IVSHMEM_IOCTL_SET_MASK``
IVSHMEM_IOCTL_SET_MASK = _iow(0x03, ivshmem_mask)
#: ``IVSHMEM_IOCTL_BIND_EVENTFD``
IVSHMEM_IOCTL_BIND_EVENTFD = _iow(0x04, ivshmem_eventfd)

STRUCTURES: Tuple[Type[ctypes.Structure], ...] = (
    ivshmem_info,
    ivshmem_cache,
    ivshmem_ring,
    ivshmem_mask,
    ivshmem_eventfd,
    ivshmem_event,
)

CONSTANTS: Tuple[str, ...] = (
    "IVSHMEM_IOCTL_MAGIC",
    "IVSHMEM_FEATURE_DOORBELL",
    "IVSHMEM_FEATURE_MSIX",
    "IVSHMEM_FEATURE_INTX",
    "IVSHMEM_FEATURE_DOORBELL_MMAP",
    "IVSHMEM_DOORBELL_MMAP_OFFSET",
    "IVSHMEM_REG_DOORBELL",
    "IVSHMEM_INFO_NOT_READY",
    "IVSHMEM_CACHE_WB",
    "IVSHMEM_CACHE_WC",
    "IVSHMEM_CACHE_UC",
    "IVSHMEM_MAX_VECTORS",
    "IVSHMEM_MAX_EVENTFDS",
    "IVSHMEM_MAX_EVENTFDS_PER_USER",
    "IVSHMEM_IOCTL_INFO",
    "IVSHMEM_IOCTL_SET_CACHE",
    "IVSHMEM_IOCTL_RING",
    "IVSHMEM_IOCTL_SET_MASK",
    "IVSHMEM_IOCTL_BIND_EVENTFD",
)


def facts() -> List[Tuple[str, str, int]]:
    """Every size, field offset and constant of this module.

    Returns ``(kind, name, value)`` triples, ``kind`` being ``sizeof``,
    ``offsetof`` (name ``struct.field``) or ``const``: the same lines a C
    program built against the header prints, for comparing the two.
    """
    out: List[Tuple[str, str, int]] = []
    for t in STRUCTURES:
        out.append(("sizeof", t.__name__, ctypes.sizeof(t)))
        for f in t._fields_:
            name = f[0]
            out.append(("offsetof", f"{t.__name__}.{name}", getattr(t, name).offset))
    g = globals()
    for c in CONSTANTS:
        out.append(("const", c, int(g[c])))
    return out


def _self_check() -> Dict[str, int]:
    """The packed formats agree with the ctypes layouts they stand for."""
    assert EVENT.size == ctypes.sizeof(ivshmem_event)
    assert RING.size == ctypes.sizeof(ivshmem_ring)
    return {"event": EVENT.size, "ring": RING.size}


_self_check()

if __name__ == "__main__":
    for kind, name, value in facts():
        print(kind, name, value)
