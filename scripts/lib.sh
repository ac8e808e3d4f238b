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

# Packages of the Debian trixie build root. Changing this list changes the
# build root's cache key, so a new root is made.
BUILDROOT_SUITE=trixie
BUILDROOT_PACKAGES=(
	rustc rust-src rustfmt rust-clippy bindgen clang lld llvm libclang-dev
	build-essential flex bison bc libelf-dev libssl-dev
	cpio kmod python3 xz-utils ca-certificates
	dwarves dkms debhelper dh-dkms fakeroot
)

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
in_buildroot() {
	local root
	root=$(buildroot_dir)
	[ -f "$root/.ivshmem-complete" ] || die "no build root at $root; run scripts/setup-toolchain.sh"
	mkdir -p "$root$IVSHMEM_TOP" "$root$IVSHMEM_CACHE"
	unshare --mount --propagation private -- /bin/sh -ec '
		root=$1 top=$2 cache=$3 cwd=$4; shift 4
		mount --rbind /dev "$root/dev"
		mount -t proc proc "$root/proc"
		mount -t sysfs sysfs "$root/sys"
		mount --bind "$top" "$root$top"
		mount --bind "$cache" "$root$cache"
		exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			/bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
	' sh "$root" "$IVSHMEM_TOP" "$IVSHMEM_CACHE" "$PWD" "$@"
}

# The linux source tree chosen by setup-toolchain.sh.
# A new directory for a throw-away overlay of the build root, under the
# cache: upper and work directories and the mount point (see
# scripts/mount-overlay.sh). The caller removes it.
overlay_new() {
	local d
	d=$(mktemp -d "$IVSHMEM_CACHE/$1-overlay.XXXXXX")
	mkdir -p "$d/upper" "$d/work" "$d/merged"
	echo "$d"
}

kernel_src_dir() {
	local f="$IVSHMEM_CACHE/src/current"
	[ -f "$f" ] || die "no kernel source chosen yet; run scripts/setup-toolchain.sh"
	cat "$f"
}
