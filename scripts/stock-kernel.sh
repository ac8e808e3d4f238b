#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# stock-kernel.sh: make Debian's stock kernel available to the project and
# print its directory under $IVSHMEM_CACHE/stock. That directory holds
# `vmlinuz` (from the linux-binary package), `release` and `version`.
#
# The release is the newest linux-headers-7.3.N+debNN-amd64 that the build
# root's apt sees in trixie-backports (the driver supports 7.3.x); it is
# chosen once and remembered, IVSHMEM_REFRESH=1 looks again. The build
# root, a Debian trixie system, gets that release's headers, its modules
# (linux-modules: with them installed, DKMS runs depmod, as on a system
# that runs this kernel) and the linux-source-7.3 of the same version
# installed with apt, so that scripts/build-debian-module.sh and DKMS find
# them as on a user's system.

. "$(dirname "$0")/lib.sh"

"$IVSHMEM_TOP/scripts/setup-toolchain.sh" --no-kernel-source
stock="$IVSHMEM_CACHE/stock"
mkdir -p "$stock"

release=
if [ -f "$stock/current" ] && [ "${IVSHMEM_REFRESH:-0}" != 1 ]; then
	release=$(cat "$stock/current")
else
	log "stock kernel: looking for the newest linux-headers-7.3.x-amd64 in trixie-backports"
	in_buildroot apt-get update -q >/dev/null || die "step 'stock kernel': apt-get update in the build root failed"
	release=$(in_buildroot apt-cache pkgnames linux-headers-7.3. |
		sed -n 's/^linux-headers-\(7\.3\.[0-9]*+deb[0-9]*-amd64\)$/\1/p' | sort -V | tail -n 1)
	[ -n "$release" ] || die "step 'stock kernel': no linux-headers-7.3.x-amd64 in trixie-backports"
	echo "$release" >"$stock/current"
fi

version=$(in_buildroot apt-cache policy "linux-headers-$release" | sed -n 's/^  Candidate: //p')
[ -n "$version" ] && [ "$version" != "(none)" ] ||
	die "step 'stock kernel': apt has no linux-headers-$release (IVSHMEM_REFRESH=1 looks for a newer release)"
dir="$stock/$release-$version"

installed() { in_buildroot dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null | grep -q "^ii  *$2\$"; }
if ! installed "linux-headers-$release" "$version" || ! installed "linux-modules-$release" "$version" ||
	! installed linux-source-7.3 "$version"; then
	log "stock kernel: installing linux-headers-$release, linux-modules-$release and linux-source-7.3 $version in the build root"
	in_buildroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"linux-headers-$release=$version" "linux-modules-$release=$version" \
		"linux-source-7.3=$version" >"$stock/apt.log" 2>&1 ||
		{ tail -n 20 "$stock/apt.log" >&2; die "step 'stock kernel': apt-get install of the headers and source failed"; }
fi

if [ ! -f "$dir/vmlinuz" ]; then
	log "stock kernel: fetching vmlinuz-$release from linux-binary-$release $version"
	dl="$stock/dl"
	rm -rf "$dl"
	mkdir -p "$dl" "$dir"
	(cd "$dl" && in_buildroot apt-get -q -o APT::Sandbox::User=root download "linux-binary-$release=$version") \
		>/dev/null || die "step 'stock kernel': apt-get download linux-binary-$release=$version failed"
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
log "stock kernel: $release ($version) in $dir"
echo "$dir"
