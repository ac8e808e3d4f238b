#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-deb.sh: build the ivshmem-dkms Debian package (debian/) with
# dpkg-buildpackage in the build root, from the files git knows (committed
# or not), and print its path: build/deb/ivshmem-dkms_<version>_all.deb.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
"$IVSHMEM_TOP/scripts/setup-toolchain.sh" --no-kernel-source
log "ivshmem-dkms: building the Debian package"
rm -rf build/deb
mkdir -p build/deb/src
git ls-files -z --cached --others --exclude-standard | cpio --null --quiet -pdm build/deb/src ||
	die "step 'package': staging the source failed"
in_buildroot sh -c 'cd build/deb/src && dpkg-buildpackage -us -uc -b' >build/deb/build.log 2>&1 ||
	{ tail -n 30 build/deb/build.log >&2; die "step 'package': dpkg-buildpackage failed; log: build/deb/build.log"; }
deb=$(ls build/deb/ivshmem-dkms_*_all.deb)
[ -f "$deb" ] || die "step 'package': dpkg-buildpackage made no ivshmem-dkms .deb"
log "ivshmem-dkms: $deb ($(du -h "$deb" | cut -f1)); contents:"
dpkg-deb -c "$deb" | awk '{print "    " $6}' | grep -v '/$' >&2
echo "$deb"
