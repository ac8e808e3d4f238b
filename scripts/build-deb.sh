#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-deb.sh: build the ivshmem-dkms Debian package (debian/) with
# dpkg-buildpackage in the build root, from the files git knows (committed
# or not), and print its path: build/deb/ivshmem-dkms_<version>_amd64.deb.
#
# The build root has no network for cargo, so the static `ivshmem` command
# and the man pages and completions generated from the CLI definitions
# (ivshmem-docgen) are built here first and staged in the source as
# prebuilt/, which debian/rules installs.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
"$IVSHMEM_TOP/scripts/setup-toolchain.sh" --no-kernel-source
log "ivshmem-dkms: building the Debian package"
rm -rf build/deb
mkdir -p build/deb/src
git ls-files -z --cached --others --exclude-standard | cpio --null --quiet -pdm build/deb/src ||
	die "step 'package': staging the source failed"
log "ivshmem-dkms: building the static ivshmem command, its man pages and completions"
RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release --locked --target x86_64-unknown-linux-gnu -p ivshmem-cli ||
	die "step 'package': cargo build of the ivshmem command failed"
cargo build --release --locked -p ivshmem-docgen ||
	die "step 'package': cargo build of ivshmem-docgen failed"
pre=build/deb/src/prebuilt
mkdir -p "$pre"
install -m 0755 target/x86_64-unknown-linux-gnu/release/ivshmem "$pre/ivshmem"
target/release/ivshmem-docgen "$pre" >/dev/null ||
	die "step 'package': generating the man pages and completions failed"
in_buildroot sh -c 'cd build/deb/src && dpkg-buildpackage -us -uc -b' >build/deb/build.log 2>&1 ||
	{ tail -n 30 build/deb/build.log >&2; die "step 'package': dpkg-buildpackage failed; log: build/deb/build.log"; }
deb=$(ls build/deb/ivshmem-dkms_*_amd64.deb)
[ -f "$deb" ] || die "step 'package': dpkg-buildpackage made no ivshmem-dkms .deb"
log "ivshmem-dkms: $deb ($(du -h "$deb" | cut -f1)); contents:"
dpkg-deb -c "$deb" | awk '{print "    " $6}' | grep -v '/$' >&2
echo "$deb"
