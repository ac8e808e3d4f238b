#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-kernel.sh [test|release] [--config-only]: build the guest kernel of
# that flavour and print its build directory (the KDIR for the module
# build) on stdout. --config-only stops after making and checking the
# config.
#
# The config is tinyconfig + guest/kconfig/base.config + <flavour>.config.
# Builds are cached under $IVSHMEM_CACHE/kernel, keyed by kernel version,
# config fragments and toolchain versions; a cached build is reused as is.
# The full `make` runs (not just bzImage) so that Module.symvers exists for
# modpost.

. "$(dirname "$0")/lib.sh"

flavour=${1:-test}
config_only=0
[ "${2:-}" = --config-only ] && config_only=1
frags=("$IVSHMEM_TOP/guest/kconfig/base.config" "$IVSHMEM_TOP/guest/kconfig/$flavour.config")
[ -f "${frags[1]}" ] || die "unknown kernel flavour '$flavour' (test or release)"

src=$(kernel_src_dir)
root=$(buildroot_dir)
kver=$(make -s -C "$src" kernelversion)
key=$( { echo "$src"; cat "${frags[@]}" "$root/.ivshmem-toolchain"; } | sha)
out="$IVSHMEM_CACHE/kernel/$flavour-$kver-$key"

if [ -f "$out/.ivshmem-complete" ]; then
	log "guest kernel ($flavour): $out (cached)"
	echo "$out"
	exit 0
fi

kmake() { (cd "$src" && in_buildroot make -C "$src" O="$out" ARCH=x86_64 LLVM=1 "$@"); }

log "guest kernel ($flavour): configuring $kver in $out"
rm -rf "$out"
mkdir -p "$out"
kmake tinyconfig >"$out/config.log" 2>&1 || { tail -n 20 "$out/config.log" >&2; die "tinyconfig failed"; }
(cd "$src" && in_buildroot scripts/kconfig/merge_config.sh -m -O "$out" "$out/.config" "${frags[@]}") \
	>>"$out/config.log" 2>&1 || { tail -n 20 "$out/config.log" >&2; die "merge_config failed"; }
kmake olddefconfig >>"$out/config.log" 2>&1 || { tail -n 20 "$out/config.log" >&2; die "olddefconfig failed"; }

# Every option the fragments ask for must be in the final config.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qxF "$line" "$out/.config" || { echo "  wanted $line, got: $(grep -E "^(# )?${line%%=*}[= ]" "$out/.config" || echo unset)" >&2; bad=1; } ;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }; sym=${sym%% *}
		! grep -q "^$sym=" "$out/.config" || { echo "  wanted $sym unset, got: $(grep "^$sym=" "$out/.config")" >&2; bad=1; } ;;
	esac
done < <(cat "${frags[@]}")
[ $bad -eq 0 ] || die "the kernel config lost options asked for by guest/kconfig (unmet dependencies?); see $out/config.log"
if [ $config_only = 1 ]; then
	log "guest kernel ($flavour): config $out/.config has every option guest/kconfig asks for"
	echo "$out"
	exit 0
fi

jobs=${IVSHMEM_JOBS:-$(nproc)}
log "guest kernel ($flavour): building with $jobs jobs, log in $out/build.log (a debug build takes 15-30 min on 2 cores)"
start=$SECONDS
kmake -j"$jobs" >"$out/build.log" 2>&1 &
pid=$!
# Progress: objects built so far, every 30 seconds.
while kill -0 $pid 2>/dev/null; do
	sleep 30 & wait $! || true
	kill -0 $pid 2>/dev/null || break
	n=$(grep -cE '^  (CC|RUSTC|AS|LD)' "$out/build.log" || true)
	printf '    [%3dm%02ds] %s objects built, last: %s\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) \
		"$n" "$(tail -n 1 "$out/build.log" | cut -c1-70)" >&2
done
if ! wait $pid; then
	grep -E 'error|Error' "$out/build.log" | head -n 20 >&2
	tail -n 20 "$out/build.log" >&2
	die "kernel build failed; log: $out/build.log; reproduce: scripts/build-kernel.sh $flavour"
fi
[ -f "$out/Module.symvers" ] && [ -f "$out/arch/x86/boot/bzImage" ] ||
	die "kernel build finished without bzImage or Module.symvers"
touch "$out/.ivshmem-complete"
log "guest kernel ($flavour): built in $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"
echo "$out"
