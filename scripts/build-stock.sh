#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-stock.sh: everything a guest run on Debian's stock kernel needs,
# without building a kernel: the build root, the stock kernel
# (stock-kernel.sh), ivshmem.ko built for it by build-debian-module.sh in
# the build root (a Debian trixie system with that kernel's headers and
# source installed), and the userspace. Paths go to build/stock/env.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"

stock=$("$IVSHMEM_TOP/scripts/stock-kernel.sh")
release=$(cat "$stock/release")
mkdir -p build/stock
log "module: building ivshmem.ko for $release (scripts/build-debian-module.sh in the build root)"
# The prepared tree stays in the build root's /var/cache/ivshmem-dkms,
# where the DKMS install (scripts/dkms-install.sh) finds it too.
in_buildroot sh scripts/build-debian-module.sh "$release" --out build/stock ||
	die "building the module for $release failed"
"$IVSHMEM_TOP/scripts/build-userspace.sh"
cat >build/stock/env <<ENV
IVSHMEM_KERNEL=$stock/vmlinuz
IVSHMEM_MODULE=$IVSHMEM_TOP/build/stock/ivshmem.ko
IVSHMEM_KERNEL_LABEL="Debian $release (stock)"
$(cat build/userspace/env)
ENV
log "built; paths in build/stock/env"
