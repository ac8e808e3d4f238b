#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# stress.sh [--quick] [--seed N]: `make stress`. Builds what the campaign
# needs -- the project's debug kernel (whose KASAN, lockdep, UBSAN,
# hung-task and soft-lockup reports fail a scenario), the module, the
# static in-guest harness with the fuzzer, the host tools -- then runs
# `ivshmem-vmrun stress`: the seeded fuzzer alone and under unbind/bind
# and QMP hot-unplug cycles, insmod/rmmod cycles, and two guests ringing
# each other at full speed (about 25 minutes under TCG; --quick is the
# 1-minute slice `make check` runs). Every fuzzing test prints its seed;
# --seed repeats a run. Heavy: on a shared machine, run it under the
# shared lock.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"

scripts/build-all.sh test
set -a
. build/test/env
set +a
exec "$IVSHMEM_VMRUN" stress "$@"
