# SPDX-License-Identifier: GPL-2.0
# Common settings for the build scripts. Sourced, not executed.
#
# Everything the project downloads or builds outside the clone lives under
# $IVSHMEM_CACHE (default ~/.cache/ivshmem). Removing it is always safe: the
# scripts recreate what they need.

set -euo pipefail

IVSHMEM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IVSHMEM_CACHE=${IVSHMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ivshmem}
IVSHMEM_MIRROR=${IVSHMEM_MIRROR:-http://deb.debian.org/debian}

# The Debian build roots, one per suite: a Rust module must be built by
# exactly the rustc (and with the C compiler) that built the kernel, and
# each Debian suite builds its kernels with its own. IVSHMEM_SUITE picks
# the root that in_buildroot and the scripts use: `trixie` (the default:
# trixie-backports' kernels and the project's debug kernel) or `sid`.
# Changing a suite's package list changes its root's cache key, so a new
# root is made rather than the old one changed in place.
# buildroot_select SUITE: the build root that in_buildroot and
# buildroot_dir use from now on (and, exported, the scripts run from here).
buildroot_select() {
	BUILDROOT_SUITE=$1
	export IVSHMEM_SUITE=$1
	case "$1" in
	trixie)
		BUILDROOT_PACKAGES=(
			rustc rust-src rustfmt rust-clippy bindgen clang lld llvm libclang-dev
			build-essential flex bison bc libelf-dev libssl-dev
			cpio kmod python3 xz-utils ca-certificates
			dwarves dkms debhelper dh-dkms fakeroot
			systemd
		)
		;;
	sid)
		# sid's 7.2 kernels are built with gcc-16 and sid's rustc and
		# bindgen; without the openssl command Kconfig's probe of it
		# drifts the config.
		BUILDROOT_PACKAGES=(
			rustc rust-src rustfmt bindgen libclang-dev gcc-16
			build-essential flex bison bc libelf-dev libssl-dev openssl
			cpio kmod python3 xz-utils ca-certificates
			dwarves dkms debhelper dh-dkms fakeroot
		)
		;;
	*)
		printf 'error: IVSHMEM_SUITE=%s: the build roots are trixie and sid\n' "$1" >&2
		exit 1
		;;
	esac
}
buildroot_select "${IVSHMEM_SUITE:-trixie}"

# The Debian stock kernels the project builds for (`KERNEL=` of make demo,
# the arguments of stock-kernel.sh and dkms-install.sh):
#   trixie      trixie-backports' newest 7.3.x   full suite in make check
#   sid         sid's newest 7.2.x               full suite in make check
#   trixie-7.2  trixie-backports' newest 7.2.x   built in make check (its
#               rustc, 1.85.1, is older than sid's: code that needs a newer
#               compiler fails there)
STOCK_KERNELS=(trixie sid trixie-7.2)
# stock_profile NAME: sets STOCK_SERIES and selects the kernel's build root
# (the suite whose toolchain built it).
stock_profile() {
	case "$1" in
	trixie) STOCK_SERIES=7.3 && buildroot_select trixie ;;
	sid) STOCK_SERIES=7.2 && buildroot_select sid ;;
	trixie-7.2) STOCK_SERIES=7.2 && buildroot_select trixie ;;
	*) die "unknown kernel '$1'; the stock kernels are: ${STOCK_KERNELS[*]}" ;;
	esac
	STOCK_NAME=$1
}

# apt_sources ROOT: the apt sources of a new Debian system of the current
# suite: trixie and trixie-backports, or sid (whose Release file on the
# mirror can be past its Valid-Until).
apt_sources() {
	if [ "$BUILDROOT_SUITE" = sid ]; then
		echo "deb $IVSHMEM_MIRROR sid main" >"$1/etc/apt/sources.list"
		echo 'Acquire::Check-Valid-Until "false";' >"$1/etc/apt/apt.conf.d/99ivshmem-sid"
	else
		printf 'deb %s %s main\ndeb %s %s-backports main\n' "$IVSHMEM_MIRROR" "$BUILDROOT_SUITE" \
			"$IVSHMEM_MIRROR" "$BUILDROOT_SUITE" >"$1/etc/apt/sources.list"
	fi
}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

sha() { sha256sum | cut -c1-16; }

buildroot_key() {
	printf '%s\n' "$BUILDROOT_SUITE" "${BUILDROOT_PACKAGES[@]}" | sha
}

buildroot_dir() { echo "$IVSHMEM_CACHE/buildroot/$BUILDROOT_SUITE-$(buildroot_key)"; }

# in_buildroot CMD...: run CMD inside the build root, in a private mount
# namespace (so no mount outlives the command), with the clone and the cache
# visible at the same paths as outside, and the same working directory.
# With BUILDROOT_LAYER set to a kernel layer (klayer_dir: a stock kernel's
# headers, modules and source installed over the build root), the root is
# the build root with that layer over it; the build root itself is never
# written to after it was made. BUILDROOT_BINDS: more directories (absolute
# paths without spaces) to show at the same paths.
in_buildroot() {
	local root
	root=$(buildroot_dir)
	[ -f "$root/.ivshmem-complete" ] || die "no build root at $root; run scripts/setup-toolchain.sh"
	unshare --mount --propagation private -- /bin/sh -ec '
		root=$1 top=$2 cache=$3 cwd=$4 layer=$5 binds=$6; shift 6
		if [ -n "$layer" ]; then
			mount -t overlay overlay -o "lowerdir=$root,upperdir=$layer/upper,workdir=$layer/work" "$layer/merged"
			root=$layer/merged
		fi
		mkdir -p "$root$top" "$root$cache"
		mount --rbind /dev "$root/dev"
		mount -t proc proc "$root/proc"
		mount -t sysfs sysfs "$root/sys"
		mount --bind "$top" "$root$top"
		mount --bind "$cache" "$root$cache"
		for b in $binds; do
			mkdir -p "$root$b"
			mount --bind "$b" "$root$b"
		done
		exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			/bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
	' sh "$root" "$IVSHMEM_TOP" "$IVSHMEM_CACHE" "$PWD" "${BUILDROOT_LAYER:-}" "${BUILDROOT_BINDS:-}" "$@"
}

# The directory of the kernel layer of RELEASE VERSION over the current
# build root: keyed by the build root's key, the release and the package
# version, so a layer is never reused over another root.
klayer_dir() { echo "$IVSHMEM_CACHE/klayer/$BUILDROOT_SUITE-$(buildroot_key)/$1-$2"; }

# layer_make LAYER LOG WHAT CMD...: unless LAYER is complete, makes it: a
# layer over the current build root in which CMD (run in the root, with
# its output in LOG) installs what the layer is for. A failure dies with
# LOG's tail, naming WHAT.
layer_make() {
	local layer=$1 logf=$2 what=$3 tmp
	shift 3
	[ -f "$layer/.ivshmem-complete" ] && return 0
	tmp=$layer.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp/upper" "$tmp/work" "$tmp/merged"
	BUILDROOT_LAYER=$tmp in_buildroot "$@" >"$logf" 2>&1 ||
		{ tail -n 20 "$logf" >&2; die "$what failed; log: $logf"; }
	touch "$tmp/.ivshmem-complete"
	rm -rf "$layer"
	mv "$tmp" "$layer"
}

# Removes the throw-away overlays (overlay_new) of runs that were killed:
# those whose owner process is gone.
overlay_reap() {
	local d pid
	for d in "$IVSHMEM_CACHE"/*-overlay.*; do
		[ -d "$d" ] || continue
		pid=$(cat "$d/pid" 2>/dev/null || echo)
		if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
			rm -rf "$d"
		fi
	done
}

# The linux source tree chosen by setup-toolchain.sh.
# A new directory for a throw-away overlay of the build root, under the
# cache: upper and work directories and the mount point (see
# scripts/mount-overlay.sh). The caller removes it.
overlay_new() {
	local d
	mkdir -p "$IVSHMEM_CACHE"
	overlay_reap
	d=$(mktemp -d "$IVSHMEM_CACHE/$1-overlay.XXXXXX")
	mkdir -p "$d/upper" "$d/work" "$d/merged"
	# The run that owns it: a later run removes it if this one was killed.
	echo "$$" >"$d/pid"
	echo "$d"
}

# in_apt_overlay CMD...: CMD (apt-cache ..., apt-get download ...) in a
# throw-away overlay of the build root whose package lists were just
# updated, with the cache visible at its path; the root is not changed.
in_apt_overlay() {
	local ovl status=0
	ovl=$(overlay_new apt)
	unshare --mount --propagation private -- /bin/sh -ec '
		root=$1 ovl=$2 top=$3 cache=$4 cwd=$5; shift 5
		"$top/scripts/mount-overlay.sh" "$root" "$ovl"
		mkdir -p "$ovl/merged$cache"
		mount --bind "$cache" "$ovl/merged$cache"
		chroot "$ovl/merged" apt-get update -q >/dev/null
		exec chroot "$ovl/merged" /bin/sh -c "cd \"\$0\" 2>/dev/null || cd /; exec \"\$@\"" "$cwd" "$@"
	' sh "$(buildroot_dir)" "$ovl" "$IVSHMEM_TOP" "$IVSHMEM_CACHE" "$PWD" "$@" || status=$?
	rm -rf "$ovl"
	return $status
}

kernel_src_dir() {
	local f="$IVSHMEM_CACHE/src/current"
	[ -f "$f" ] || die "no kernel source chosen yet; run scripts/setup-toolchain.sh"
	cat "$f"
}

# build_test_modules OUT KDIR [MAKE ARGS...]: the suite's own test modules
# (userspace-test/kmod: the dma-buf importer, never shipped), built in the
# build root (over BUILDROOT_LAYER, if set) against the kernel tree KDIR
# (the project's kernel, or a stock kernel's /usr/src/linux-headers-*),
# objects and .ko files in OUT. The runner puts them in the guest
# (IVSHMEM_TEST_MODULES).
build_test_modules() {
	local out=$1 kdir=$2
	shift 2
	mkdir -p "$out"
	log "test modules: userspace-test/kmod against $kdir"
	in_buildroot make -C "$kdir" M="$IVSHMEM_TOP/userspace-test/kmod" MO="$out" "$@" modules >&2 ||
		die "the test modules did not build against $kdir (make -C $kdir M=$IVSHMEM_TOP/userspace-test/kmod MO=$out $* modules, in the build root)"
	[ -f "$out/ivshmem_test_importer.ko" ] || die "no $out/ivshmem_test_importer.ko after the build"
}
