#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check-nothp.sh: shows that the module builds and links against a kernel
# built without CONFIG_TRANSPARENT_HUGEPAGE (review N5): the huge-entry
# inserts (vmf_insert_pfn_pmd/pud, which exist only with THP) are compiled
# only where the kernel has them. Not part of make check (it builds a
# kernel): the project's release kernel config with THP switched off,
# built once under $IVSHMEM_CACHE/kernel/nothp-<key>, then the module
# against it (modpost fails on any symbol the kernel lacks), then a check
# that the module references neither insert.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
"$IVSHMEM_TOP/scripts/setup-toolchain.sh"
release=$("$IVSHMEM_TOP/scripts/build-kernel.sh" release --config-only)
src=$(kernel_src_dir)
key=$( { cat "$release/.config" "$(buildroot_dir)/.ivshmem-toolchain"; echo nothp; } | sha)
out="$IVSHMEM_CACHE/kernel/nothp-$key"
kmake() { (cd "$src" && in_buildroot make -C "$src" O="$out" ARCH=x86_64 LLVM=1 "$@"); }
if [ ! -f "$out/.ivshmem-complete" ]; then
	rm -rf "$out"
	mkdir -p "$out"
	cp "$release/.config" "$out/.config"
	in_buildroot "$src/scripts/config" --file "$out/.config" -d TRANSPARENT_HUGEPAGE
	kmake olddefconfig >"$out/config.log" 2>&1 || die "olddefconfig failed; log: $out/config.log"
	! grep -q '^CONFIG_TRANSPARENT_HUGEPAGE=y' "$out/.config" || die "THP is still on in $out/.config"
	log "kernel without THP: building in $out (log: $out/build.log)"
	kmake -j"${IVSHMEM_JOBS:-$(nproc)}" >"$out/build.log" 2>&1 ||
		{ tail -n 20 "$out/build.log" >&2; die "the kernel build failed; log: $out/build.log"; }
	touch "$out/.ivshmem-complete"
fi
grep -E '^# CONFIG_TRANSPARENT_HUGEPAGE is not set|^CONFIG_RUST=y' "$out/.config"
mod=build/nothp
mkdir -p "$mod"
log "module: building against the kernel without THP"
in_buildroot make -C "$out" M="$IVSHMEM_TOP" MO="$IVSHMEM_TOP/$mod" LLVM=1 modules ||
	die "the module does not build or link against a kernel without THP"
if nm -u "$mod/ivshmem.ko" | grep -E 'vmf_insert_pfn_p[mu]d'; then
	die "the module references a huge-entry insert the kernel lacks"
fi
log "the module builds and links without THP; it references no PMD/PUD insert: $mod/ivshmem.ko"
