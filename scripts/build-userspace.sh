#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-userspace.sh: build what runs in the guests and on the host -- the
# static in-guest harness, benchmarks and `ivshmem` command, the static C examples, the
# VM runner, server and client -- and write their paths to
# build/userspace/env.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"

log "userspace: building the static in-guest harness, the benchmarks, the ivshmem command and the host tools"
RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release --locked --target x86_64-unknown-linux-gnu -p ivshmem-selftest -p ivshmem-bench -p ivshmem-cli
cargo build --release --locked --bins

log "userspace: building the static C examples against uapi/"
mkdir -p build/userspace
for prog in ivshmem-info ivshmem-ring; do
	gcc -static -O2 -Wall -Wextra -Werror -I uapi -o "build/userspace/$prog" "userspace/c/$prog.c"
done
# Cargo's target directory: CARGO_TARGET_DIR where set (e.g. one per
# worktree), target/ otherwise.
target=${CARGO_TARGET_DIR:-$IVSHMEM_TOP/target}
cat >build/userspace/env <<ENV
IVSHMEM_SELFTEST=$target/x86_64-unknown-linux-gnu/release/ivshmem-selftest
IVSHMEM_BENCH=$target/x86_64-unknown-linux-gnu/release/ivshmem-bench
IVSHMEM_VMRUN=$target/release/ivshmem-vmrun
IVSHMEM_C_EXAMPLE=$IVSHMEM_TOP/build/userspace/ivshmem-info
IVSHMEM_CLI=$target/x86_64-unknown-linux-gnu/release/ivshmem
ENV
