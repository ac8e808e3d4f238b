#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# demo.sh [KERNEL]: build what the demo needs and run it in QEMU, on one of
# Debian's stock kernels with ivshmem.ko built for it (no kernel build):
# two guests on our ivshmem-server pass a message and its answer by
# doorbell. KERNEL (make demo KERNEL=...) is one of lib.sh's STOCK_KERNELS:
# trixie (default: trixie-backports' 7.3.x) or sid (7.2.x).

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
stock_profile "${1:-trixie}"
start=$SECONDS
scripts/build-stock.sh "$STOCK_NAME"
set -a
. "build/stock/$STOCK_NAME/env"
set +a
log "demo: built in $((SECONDS - start)) s; booting the guests on $IVSHMEM_KERNEL_LABEL"
status=0
"$IVSHMEM_VMRUN" demo || status=$?
log "demo: $((SECONDS - start)) s from start to end"
exit $status
