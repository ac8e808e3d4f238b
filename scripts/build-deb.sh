#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-deb.sh: build the Debian packages (debian/) with dpkg-buildpackage
# in the build root, from the files git knows (committed or not), into
# build/deb/: ivshmem-dkms (the module for DKMS, the udev rule) and
# ivshmem-server (the host server and client, systemd units). Prints the
# path of the ivshmem-dkms package.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
"$IVSHMEM_TOP/scripts/setup-toolchain.sh" --no-kernel-source
log "ivshmem-dkms: building the Debian package"
rm -rf build/deb
mkdir -p build/deb/src
git ls-files -z --cached --others --exclude-standard | cpio --null --quiet -pdm build/deb/src ||
	die "step 'package': staging the source failed"
log "ivshmem-server: building the host tools (release)"
cargo build --release --locked -p ivshmem-server -p ivshmem-client >&2 ||
	die "step 'package': cargo build of the host tools failed"
mkdir -p build/deb/src/dist/bin
cp target/release/ivshmem-server target/release/ivshmem-client build/deb/src/dist/bin/
in_buildroot sh -c 'cd build/deb/src && dpkg-buildpackage -us -uc -b' >build/deb/build.log 2>&1 ||
	{ tail -n 30 build/deb/build.log >&2; die "step 'package': dpkg-buildpackage failed; log: build/deb/build.log"; }
deb=$(ls build/deb/ivshmem-dkms_*.deb)
[ -f "$deb" ] || die "step 'package': dpkg-buildpackage made no ivshmem-dkms .deb"
for p in build/deb/*.deb; do
	log "package: $p ($(du -h "$p" | cut -f1)); contents:"
	dpkg-deb -c "$p" | awk '{print "    " $6}' | grep -v '/$' >&2
done
echo "$deb"
