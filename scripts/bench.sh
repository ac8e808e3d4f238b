#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# bench.sh [--quick] [--reps N] [--out DIR]: `make bench`. Builds what the
# benchmarks need -- Debian's stock kernel with the module DKMS built
# (scripts/dkms-install.sh, cached), the static in-guest benchmarks and the
# host tools (scripts/build-userspace.sh) -- then runs
# `ivshmem-vmrun bench`, which boots the bench scenarios, runs the host
# benchmarks, prints the table and writes the results directory
# (build/bench/<UTC time> unless --out is given). --quick: tiny sizes and
# few repetitions, only so that it cannot rot (the figures mean nothing).
# Heavy: on a shared machine, run it under the shared lock.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"

scripts/dkms-install.sh
scripts/build-userspace.sh
set -a
. build/userspace/env
. build/dkms/trixie/env
set +a
out=(--out "build/bench/$(date -u +%Y%m%dT%H%M%SZ)")
for a in "$@"; do
	case $a in --out | --out=*) out=() ;; esac
done
exec "$IVSHMEM_VMRUN" bench "${out[@]}" "$@"
