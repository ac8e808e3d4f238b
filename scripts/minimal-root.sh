#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# minimal-root.sh KERNEL DEB: a minimal Debian system of the kernel's suite
# (debootstrap minbase and nothing else: no compiler, no rustc, no DKMS)
# with only the kernel's linux-headers and linux-modules installed, in
# which dkms-install.sh --minimal installs the package DEB with apt, so
# that apt must pull every dependency the package declares (review D2).
# Prints "LAYER ROOT": the root ($IVSHMEM_CACHE/minroot/<suite>-<key>) and
# the kernel's layer over it, which also holds DEB's dependencies,
# downloaded but not installed (apt installs them from there, so a run
# needs no network and sees the same package versions); the layer is keyed
# by the root, the release, its version and DEB's Depends. Neither is
# changed after it is made.

. "$(dirname "$0")/lib.sh"

stock_profile "${1:?usage: minimal-root.sh KERNEL DEB}"
deb=$(cd "$(dirname "${2:?usage: minimal-root.sh KERNEL DEB}")" && pwd)/$(basename "$2")
stock=$("$IVSHMEM_TOP/scripts/stock-kernel.sh" "$STOCK_NAME")
release=$(cat "$stock/release") version=$(cat "$stock/version")
mkdir -p "$IVSHMEM_CACHE/minroot"
exec 7>"$IVSHMEM_CACHE/minroot/.lock"
flock 7

root=$IVSHMEM_CACHE/minroot/$BUILDROOT_SUITE-$(printf '%s\n' "$BUILDROOT_SUITE" minbase | sha)
if [ ! -f "$root/.ivshmem-complete" ]; then
	log "minimal root: debootstrap --variant=minbase $BUILDROOT_SUITE into $root"
	tmp=$root.tmp
	rm -rf "$tmp"
	debootstrap --variant=minbase "$BUILDROOT_SUITE" "$tmp" "$IVSHMEM_MIRROR" >"$tmp.log" 2>&1 ||
		{ tail -n 20 "$tmp.log" >&2; die "step 'minimal root': debootstrap $BUILDROOT_SUITE failed; log: $tmp.log"; }
	apt_sources "$tmp"
	chroot "$tmp" apt-get update -q >"$tmp.log" 2>&1 ||
		die "step 'minimal root': apt-get update failed; log: $tmp.log"
	touch "$tmp/.ivshmem-complete"
	rm -f "$tmp.log"
	mv "$tmp" "$root"
fi

depends=$(dpkg-deb -f "$deb" Depends | sha)
layer=$IVSHMEM_CACHE/minroot/layer/$(basename "$root")/$release-$version-$depends
if [ ! -f "$layer/.ivshmem-complete" ]; then
	log "minimal root: linux-headers-$release and linux-modules-$release installed, $(basename "$deb")'s dependencies downloaded, in $layer"
	tmp=$layer.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp/upper" "$tmp/work" "$tmp/merged"
	unshare --mount --propagation private -- /bin/sh -ec '
		root=$1 ovl=$2 top=$3 deb=$4 release=$5 version=$6
		"$top/scripts/mount-overlay.sh" "$root" "$ovl"
		mkdir -p "$ovl/merged/mnt/deb"
		mount --bind "$(dirname "$deb")" "$ovl/merged/mnt/deb"
		chroot "$ovl/merged" /usr/bin/env DEBIAN_FRONTEND=noninteractive /bin/sh -ec "
			apt-get install -y -q --no-install-recommends linux-headers-$release=$version linux-modules-$release=$version
			apt-get install -y -q --no-install-recommends --download-only /mnt/deb/$(basename "$deb")"
		umount -l "$ovl/merged/mnt/deb"
		rmdir "$ovl/merged/mnt/deb"
	' sh "$root" "$tmp" "$IVSHMEM_TOP" "$deb" "$release" "$version" >"$tmp.log" 2>&1 ||
		{ tail -n 20 "$tmp.log" >&2; die "step 'minimal root': installing the headers or downloading the dependencies failed; log: $tmp.log"; }
	rm -rf "$tmp/merged" "$tmp/work"
	mkdir -p "$tmp/merged" "$tmp/work"
	touch "$tmp/.ivshmem-complete"
	rm -f "$tmp.log"
	mv "$tmp" "$layer"
fi
echo "$layer $root"
