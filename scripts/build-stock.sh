#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-stock.sh [KERNEL]: everything a guest run on one of Debian's stock
# kernels needs, without building a kernel (KERNEL: one of lib.sh's
# STOCK_KERNELS, default trixie): the kernel's build root and layer
# (stock-kernel.sh), ivshmem.ko built for it by build-debian-module.sh in
# that root (a Debian system of the kernel's suite with its headers and
# source installed), and the userspace. Paths go to build/stock/KERNEL/env.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"

stock_profile "${1:-trixie}"
stock=$("$IVSHMEM_TOP/scripts/stock-kernel.sh" "$STOCK_NAME")
release=$(cat "$stock/release")
out=build/stock/$STOCK_NAME
mkdir -p "$out"
log "module: building ivshmem.ko for $release (scripts/build-debian-module.sh in the $BUILDROOT_SUITE build root)"
# The prepared tree stays in the kernel's layer, in /var/cache/ivshmem-dkms,
# where the DKMS install (scripts/dkms-install.sh) finds it too.
BUILDROOT_LAYER=$(cat "$stock/layer") in_buildroot sh scripts/build-debian-module.sh "$release" --out "$out" ||
	die "building the module for $release failed"
IVSHMEM_SUITE=trixie "$IVSHMEM_TOP/scripts/build-userspace.sh"
echo "$release" >"$out/release"
cat >"$out/env" <<ENV
IVSHMEM_KERNEL=$stock/vmlinuz
IVSHMEM_MODULE=$IVSHMEM_TOP/$out/ivshmem.ko
IVSHMEM_KERNEL_LABEL="Debian $release (stock, $STOCK_NAME)"
$(cat build/userspace/env)
ENV
log "built; paths in $out/env"
