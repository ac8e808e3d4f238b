#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# stock-kernel.sh [KERNEL]: make one of Debian's stock kernels available to
# the project and print its directory under $IVSHMEM_CACHE/stock/KERNEL.
# KERNEL is one of lib.sh's STOCK_KERNELS (default trixie: trixie-backports'
# newest 7.3.x; sid: sid's newest 7.2.x; trixie-7.2). The directory holds
# `vmlinuz` (from the linux-binary package), `release`, `version` and
# `layer`.
#
# The release is the newest linux-headers-SERIES.N+debNN-amd64 that the
# kernel's suite offers; it is chosen once and remembered, IVSHMEM_REFRESH=1
# looks again. The kernel gets a layer of its own over its suite's build
# root (lib.sh klayer_dir), keyed by the root, the release and the version:
# that release's headers, its modules (with them installed, DKMS runs
# depmod, as on a system that runs this kernel) and the linux-source-SERIES
# of the same version, installed with apt, so that build-debian-module.sh
# and DKMS find them as on a user's system. The build root itself is not
# changed.

. "$(dirname "$0")/lib.sh"

stock_profile "${1:-trixie}"
"$IVSHMEM_TOP/scripts/setup-toolchain.sh" --no-kernel-source
stock="$IVSHMEM_CACHE/stock/$STOCK_NAME"
mkdir -p "$stock"
exec 8>"$stock/.lock"
flock 8

series_re=${STOCK_SERIES//./\\.}
release= version=
if [ -f "$stock/current" ] && [ "${IVSHMEM_REFRESH:-0}" != 1 ]; then
	read -r release version <"$stock/current"
fi
if [ -z "$version" ]; then
	log "stock kernel ($STOCK_NAME): looking for the newest linux-headers-$STOCK_SERIES.x-amd64 in $BUILDROOT_SUITE"
	found=$(in_apt_overlay sh -c '
		apt-cache pkgnames "linux-headers-$1." |
			sed -n "s/^linux-headers-\($2\.[0-9]*+deb[0-9]*-amd64\)\$/\1/p" | sort -V | tail -n 1 |
			while read -r r; do
				echo "$r $(apt-cache policy "linux-headers-$r" | sed -n "s/^  Candidate: //p")"
			done' sh "$STOCK_SERIES" "$series_re") ||
		die "step 'stock kernel': apt-get update in an overlay of the $BUILDROOT_SUITE build root failed"
	read -r release version <<<"$found"
	[ -n "$release" ] && [ -n "$version" ] && [ "$version" != "(none)" ] ||
		die "step 'stock kernel': no linux-headers-$STOCK_SERIES.x-amd64 in $BUILDROOT_SUITE"
	echo "$release $version" >"$stock/current"
fi
dir="$stock/$release-$version"
layer=$(klayer_dir "$release" "$version")

if [ ! -f "$layer/.ivshmem-complete" ]; then
	log "stock kernel ($STOCK_NAME): a layer over the $BUILDROOT_SUITE build root with linux-headers-$release, linux-modules-$release and linux-source-$STOCK_SERIES $version"
	layer_make "$layer" "$stock/apt.log" "step 'stock kernel': apt-get install of the headers, modules and source" \
		sh -ec '
		apt-get update -q
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			"linux-headers-$1=$3" "linux-modules-$1=$3" "linux-source-$2=$3"
		apt-get clean' sh "$release" "$STOCK_SERIES" "$version"
fi

if [ ! -f "$dir/vmlinuz" ]; then
	log "stock kernel ($STOCK_NAME): fetching vmlinuz-$release from linux-binary-$release $version"
	dl="$stock/dl"
	rm -rf "$dl"
	mkdir -p "$dl" "$dir"
	# The signed image, or (sid) the unsigned one.
	(cd "$dl" && for p in "linux-binary-$release" "linux-binary-unsigned-$release"; do
		BUILDROOT_LAYER=$layer in_buildroot apt-get -q -o APT::Sandbox::User=root download "$p=$version" && break
	done) >"$stock/download.log" 2>&1
	ls "$dl"/linux-binary-*.deb >/dev/null 2>&1 ||
		die "step 'stock kernel': apt-get download linux-binary-$release=$version failed; log: $stock/download.log"
	dpkg-deb -x "$dl"/linux-binary-*.deb "$dl/x"
	# The image is in /usr/lib/modules/RELEASE/vmlinuz (installed to /boot
	# by the kernel's postinst), or /boot in older packaging.
	found=$(find "$dl/x" -path "*/modules/$release/vmlinuz" -o -name "vmlinuz-$release" | head -n 1)
	[ -n "$found" ] || die "step 'stock kernel': linux-binary-$release has no vmlinuz"
	cp "$found" "$dir/vmlinuz.tmp"
	mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
	rm -rf "$dl"
fi
echo "$release" >"$dir/release"
echo "$version" >"$dir/version"
echo "$layer" >"$dir/layer"
echo "$BUILDROOT_SUITE" >"$dir/suite"
log "stock kernel ($STOCK_NAME): $release ($version) in $dir"
echo "$dir"
