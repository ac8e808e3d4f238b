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

log "userspace: building the static in-guest harness and the host tools"
RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release --locked --target x86_64-unknown-linux-gnu -p ivshmem-selftest
cargo build --release --locked --bins

log "userspace: building the static C examples against uapi/"
mkdir -p build/userspace
for prog in ivshmem-info ivshmem-ring; do
	gcc -static -O2 -Wall -Wextra -Werror -I uapi -o "build/userspace/$prog" "userspace/c/$prog.c"
done

cat >"build/$flavour/env" <<ENV
IVSHMEM_KERNEL=$kdir/arch/x86/boot/bzImage
IVSHMEM_KDIR=$kdir
IVSHMEM_MODULE=$IVSHMEM_TOP/build/$flavour/ivshmem.ko
IVSHMEM_SELFTEST=$IVSHMEM_TOP/target/x86_64-unknown-linux-gnu/release/ivshmem-selftest
IVSHMEM_VMRUN=$IVSHMEM_TOP/target/release/ivshmem-vmrun
IVSHMEM_C_EXAMPLE=$IVSHMEM_TOP/build/userspace/ivshmem-info
ENV
log "built; paths in build/$flavour/env"
