#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# demo.sh: build what the demo needs and run it in QEMU, on Debian's stock
# kernel with ivshmem.ko built for it (no kernel build): two guests on our
# ivshmem-server pass a message and its answer by doorbell.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
start=$SECONDS
scripts/build-stock.sh
set -a
. build/stock/env
set +a
log "demo: built in $((SECONDS - start)) s; booting the guests"
status=0
"$IVSHMEM_VMRUN" demo || status=$?
log "demo: $((SECONDS - start)) s from start to end"
exit $status
