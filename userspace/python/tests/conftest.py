# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""Fixtures: the guest's ivshmem devices, by kind.

The tests run against real devices (``/dev/ivshmemN``) in a QEMU guest. A
test needing a kind of device this machine lacks is skipped with the
reason, unless ``IVSHMEM_TEST_REQUIRE`` (e.g. ``plain,doorbell``) says the
machine must have it: then it fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator, Optional

import pytest

# The package from this source tree, whether installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import ivshmem  # noqa: E402


def _find(doorbell: bool) -> Optional[str]:
    for path in ivshmem.devices():
        try:
            with ivshmem.Device.open(path) as dev:
                if dev.info.doorbell == doorbell:
                    return path
        except OSError:
            continue
    return None


def _need(kind: str, doorbell: bool) -> str:
    path = _find(doorbell)
    if path is not None:
        return path
    required = os.environ.get("IVSHMEM_TEST_REQUIRE", "").split(",")
    why = f"no ivshmem-{kind} device here (devices: {ivshmem.devices()})"
    if kind in required:
        pytest.fail(f"{why}, but IVSHMEM_TEST_REQUIRE names it")
    pytest.skip(why)


@pytest.fixture(scope="session")
def plain_path() -> str:
    """The node of the first ivshmem-plain device."""
    return _need("plain", False)


@pytest.fixture(scope="session")
def bell_path() -> str:
    """The node of the first ivshmem-doorbell device."""
    return _need("doorbell", True)


@pytest.fixture
def plain(plain_path: str) -> Iterator[ivshmem.Device]:
    """The first ivshmem-plain device, open."""
    with ivshmem.Device.open(plain_path) as dev:
        yield dev


@pytest.fixture
def bell(bell_path: str) -> Iterator[ivshmem.Device]:
    """The first ivshmem-doorbell device, open, with nothing pending."""
    with ivshmem.Device.open(bell_path) as dev:
        # A new file sees only interrupts after its opening; nothing left.
        assert dev.wait(0) == []
        yield dev
