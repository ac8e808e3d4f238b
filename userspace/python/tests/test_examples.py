# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""The examples run and say what they should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import ivshmem

TOP = Path(__file__).resolve().parent.parent


def run(args: List[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    p = subprocess.run(
        [sys.executable, *args], cwd=TOP, env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_info_lists_every_device(plain_path: str, bell_path: str) -> None:
    out = run(["examples/info.py"])
    for path in ivshmem.devices():
        with ivshmem.Device.open(path) as dev:
            info = dev.info
        line = next((ln for ln in out.splitlines() if ln.startswith(f"{path}:")), None)
        assert line is not None, f"{path} not listed:\n{out}"
        assert info.pci_address in line and f"{info.size} bytes" in line
        assert ("doorbell" in line) == info.doorbell


def test_doorbell_async_hears_itself(bell: ivshmem.Device) -> None:
    me = bell.info.ivposition
    out = run(["examples/doorbell_async.py", bell.path, str(me)])
    heard = [ln for ln in out.splitlines() if ln.startswith("vector 0 rang")]
    # Five rings (QEMU may merge some); the listener stops at the last.
    assert heard and heard[-1].endswith("counter 5"), f"the last ring was not heard:\n{out}"
