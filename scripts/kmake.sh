#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# kmake.sh FLAVOUR [MAKE ARGS...]: run the kernel's out-of-tree module build
# for this repository against the project's guest kernel of that flavour,
# inside the build root. Objects go to build/FLAVOUR/, so test and release
# builds never mix.

. "$(dirname "$0")/lib.sh"

flavour=${1:?usage: kmake.sh FLAVOUR [make args]}
shift
"$IVSHMEM_TOP/scripts/setup-toolchain.sh"
kdir=$("$IVSHMEM_TOP/scripts/build-kernel.sh" "$flavour")
out="$IVSHMEM_TOP/build/$flavour"
mkdir -p "$out"
cd "$IVSHMEM_TOP"
in_buildroot make -C "$kdir" M="$IVSHMEM_TOP" MO="$out" LLVM=1 "$@"
