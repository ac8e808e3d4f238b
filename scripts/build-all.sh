#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-all.sh [FLAVOUR]: build everything a guest run needs -- toolchain,
# guest kernel, module, the static in-guest harness and the host tools --
# and write their paths to build/FLAVOUR/env (sourced by check.sh and
# demo.sh, and usable by hand before running target/release/ivshmem-vmrun).

. "$(dirname "$0")/lib.sh"

flavour=${1:-test}
cd "$IVSHMEM_TOP"
"$IVSHMEM_TOP/scripts/setup-toolchain.sh"
kdir=$("$IVSHMEM_TOP/scripts/build-kernel.sh" "$flavour")

log "module: building against $kdir"
"$IVSHMEM_TOP/scripts/kmake.sh" "$flavour" CLIPPY="${CLIPPY:-1}" modules
build_test_modules "$IVSHMEM_TOP/build/$flavour/kmod" "$kdir" LLVM=1

"$IVSHMEM_TOP/scripts/build-userspace.sh"

cat >"build/$flavour/env" <<ENV
IVSHMEM_KERNEL=$kdir/arch/x86/boot/bzImage
IVSHMEM_KDIR=$kdir
IVSHMEM_MODULE=$IVSHMEM_TOP/build/$flavour/ivshmem.ko
IVSHMEM_TEST_MODULES=$IVSHMEM_TOP/build/$flavour/kmod
IVSHMEM_KERNEL_LABEL="project $flavour kernel $(make -s -C "$(kernel_src_dir)" kernelversion)"
$(cat build/userspace/env)
ENV
log "built; paths in build/$flavour/env"
