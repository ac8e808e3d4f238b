# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""An ivshmem-plain device: open, info, the mapping, what it refuses."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import ivshmem
from ivshmem import CacheMode, Device


def sysfs(dev: Device, attr: str) -> str:
    name = os.path.basename(os.path.realpath(dev.path))
    with open(f"/sys/class/misc/{name}/{attr}") as f:
        return f.read().strip()


def test_devices_lists_it(plain_path: str) -> None:
    assert plain_path in ivshmem.devices()
    nodes = ivshmem.devices()
    assert nodes == sorted(nodes, key=lambda p: int(p.rsplit("ivshmem", 1)[1]))


def test_open_by_index_and_by_path(plain: Device) -> None:
    info = plain.info
    with Device.open(info.index) as by_index:
        assert by_index.path == f"/dev/ivshmem{info.index}"
        assert by_index.info == info
    with Device.open(plain.path) as by_path:
        assert by_path.info == info


def test_open_by_udev_path(plain: Device) -> None:
    """The distribution's stable name (the ivshmem-dkms udev rule)."""
    info = plain.info
    link = f"/dev/ivshmem/by-path/pci-{info.pci_address}"
    if not os.path.exists(link):
        pytest.skip(f"no {link} (no udev rule of ivshmem-dkms here)")
    with Device.open(link) as dev:
        assert dev.info == info


def test_open_missing_says_which() -> None:
    with pytest.raises(FileNotFoundError) as e:
        Device.open("/dev/ivshmem-nonexistent")
    assert e.value.filename == "/dev/ivshmem-nonexistent"


def test_info_matches_sysfs(plain: Device) -> None:
    info = plain.info
    assert not info.doorbell and not info.msix and not info.doorbell_mmap
    assert info.ready
    assert info.size == int(sysfs(plain, "size"))
    assert info.size > 0 and info.size % mmap.PAGESIZE == 0
    assert info.ivposition == 0
    assert info.vectors == 0 == int(sysfs(plain, "vectors"))
    assert info.revision == int(sysfs(plain, "revision"))
    # The misc device's parent is the PCI function INFO names.
    name = os.path.basename(plain.path)
    pci = os.path.basename(os.path.realpath(f"/sys/class/misc/{name}/device"))
    assert info.pci_address == pci
    assert plain.path == f"/dev/ivshmem{info.index}"


def test_fileno_and_close(plain_path: str) -> None:
    dev = Device.open(plain_path)
    fd = dev.fileno()
    assert os.fstat(fd).st_rdev == os.stat(plain_path).st_rdev
    dev.close()
    assert dev.closed
    with pytest.raises(ValueError):
        dev.fileno()
    with pytest.raises(OSError) as e:
        os.fstat(fd)
    assert e.value.errno == errno.EBADF
    dev.close()  # twice is fine


def test_map_write_read_through_another_file(plain: Device) -> None:
    """What one mapping writes, a mapping of another open file reads: the
    buffer is the device's memory, not a private copy."""
    size = plain.info.size
    a = plain.map()
    assert len(a) == size
    marker = os.urandom(64)
    a[0:64] = marker
    a[size - 64 : size] = marker[::-1]
    words = memoryview(a).cast("Q")
    words[8] = 0x1122334455667788
    with Device.open(plain.path) as other:
        b = other.map()
        assert b[0:64] == marker
        assert b[size - 64 : size] == marker[::-1]
        assert int.from_bytes(b[64:72], "little") == 0x1122334455667788
        b[128:133] = b"reply"
        assert a[128:133] == b"reply"
        b.close()
    del words
    a.close()


def test_map_at_an_offset(plain: Device) -> None:
    page = mmap.PAGESIZE
    whole = plain.map()
    whole[page : page + 8] = b"offset!!"
    part = plain.map(offset=page, length=page)
    assert len(part) == page
    assert part[0:8] == b"offset!!"
    part.close()
    whole.close()


def test_map_outside_is_refused(plain: Device) -> None:
    size = plain.info.size
    with pytest.raises(OSError) as e:
        plain.map(offset=0, length=size + mmap.PAGESIZE)
    assert e.value.errno == errno.EINVAL
    assert e.value.filename == plain.path
    with pytest.raises(ValueError):
        plain.map(offset=size)


def test_cache_modes_and_aliasing(plain: Device) -> None:
    """Each cache mode maps; while a mapping exists, another mode is
    refused with EBUSY and the same mode is not."""
    for mode in CacheMode:
        m = plain.map(cache=mode)
        m[0:4] = b"mode"
        assert m[0:4] == b"mode"
        m.close()
    wb = plain.map(cache=CacheMode.WRITE_BACK)
    with Device.open(plain.path) as other:
        with pytest.raises(OSError) as e:
            other.map(cache=CacheMode.WRITE_COMBINING)
        assert e.value.errno == errno.EBUSY
        same = other.map(cache=CacheMode.WRITE_BACK)
        same.close()
    wb.close()
    # No mapping left: another mode maps again.
    wc = plain.map(cache=CacheMode.WRITE_COMBINING)
    wc.close()


def test_doorbell_calls_are_refused(plain: Device) -> None:
    with pytest.raises(OSError) as e:
        plain.ring(0, 0)
    assert e.value.errno == errno.EOPNOTSUPP
    assert "ringing peer 0 vector 0" in str(e.value)
    with pytest.raises(OSError) as e:
        plain.wait(0)
    assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as e:
        plain.map_doorbell()
    assert e.value.errno == errno.EOPNOTSUPP
