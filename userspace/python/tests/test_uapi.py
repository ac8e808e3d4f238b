# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""The Python mirror of uapi/linux/ivshmem.h (no device needed)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from ivshmem import uapi

UAPI = Path(__file__).resolve().parents[3] / "uapi"


def test_packed_formats_match_ctypes() -> None:
    assert uapi.EVENT.size == ctypes.sizeof(uapi.ivshmem_event) == 16
    assert uapi.RING.size == ctypes.sizeof(uapi.ivshmem_ring) == 16
    raw = uapi.ivshmem_event(vector=3, flags=0, count=7, timestamp_ns=123456789)
    assert uapi.EVENT.unpack(bytes(raw)) == (3, 0, 7, 123456789)


def test_ioctl_numbers_decode() -> None:
    # dir:2 | size:14 | type:8 | nr:8
    info = uapi.IVSHMEM_IOCTL_INFO
    assert info >> 30 == 2  # _IOC_READ
    assert (info >> 16) & 0x3FFF == ctypes.sizeof(uapi.ivshmem_info)
    assert (info >> 8) & 0xFF == 0xB9
    assert uapi.IVSHMEM_IOCTL_RING >> 30 == 1  # _IOC_WRITE
    assert uapi.IVSHMEM_IOCTL_BIND_EVENTFD & 0xFF == 4


def test_matches_the_c_header(tmp_path: Path) -> None:
    """A C program generated from :func:`uapi.facts` and built against the
    header prints each size, offset and constant; all must agree."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler here (the project's host test checks this too)")
    if not (UAPI / "linux" / "ivshmem.h").is_file():
        pytest.skip(f"no {UAPI}/linux/ivshmem.h next to this source tree")
    lines = []
    for kind, name, _ in uapi.facts():
        if kind == "sizeof":
            expr = f"sizeof(struct {name})"
        elif kind == "offsetof":
            t, f = name.split(".")
            expr = f"offsetof(struct {t}, {f})"
        else:
            expr = f"(unsigned long long)({name})"
        lines.append(f'\tprintf("{kind} {name} %llu\\n", (unsigned long long){expr});')
    src = tmp_path / "abi.c"
    src.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/ivshmem.h>\n"
        "int main(void)\n{\n" + "\n".join(lines) + "\n\treturn 0;\n}\n"
    )
    exe = tmp_path / "abi"
    subprocess.run([cc, "-Wall", "-Werror", "-I", str(UAPI), str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    c = [(k, n, int(v)) for k, n, v in (line.split() for line in out.splitlines())]
    assert c == uapi.facts()
