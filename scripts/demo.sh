#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# demo.sh: build everything (first run: toolchain and kernel too) and run
# the demo in QEMU.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
scripts/build-all.sh test
set -a
. build/test/env
set +a
exec "$IVSHMEM_VMRUN" demo
