#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-deb.sh: build the Debian packages (debian/) with dpkg-buildpackage
# in the build root, from the files git knows (committed or not), into
# build/deb/: ivshmem-dkms (the module for DKMS, the udev rule, the
# `ivshmem` command, ivshmem(1) and ivshmem(4)) and ivshmem-server (the
# host server and client, systemd units, their man pages). Prints the path
# of the ivshmem-dkms package.
#
# dpkg-buildpackage does not run cargo (the crates come from crates.io), so
# the binaries (`ivshmem` static) are built first, in the same build root,
# and the man pages and completions generated from the CLI definitions
# (ivshmem-docgen) on the host; both are staged in the source as dist/,
# which debian/rules installs.

. "$(dirname "$0")/lib.sh"
# The packages are built once, in the trixie root, for every suite.
buildroot_select trixie
cd "$IVSHMEM_TOP"
"$IVSHMEM_TOP/scripts/setup-toolchain.sh" --no-kernel-source
log "ivshmem-dkms: building the Debian package"
rm -rf build/deb
mkdir -p build/deb/src
git ls-files -z --cached --others --exclude-standard | cpio --null --quiet -pdm build/deb/src ||
	die "step 'package': staging the source failed"
log "packages: building the host tools and the static ivshmem command in the trixie build root"
# The shipped binaries are linked in the build root, against trixie's C
# library, so that ${shlibs:Depends} (and Static-Built-Using) describe what
# they were linked with; the toolchain is the machine's rustup one, shown in
# the build root at its own path, and the crates come from cargo's cache.
cargo fetch --locked >&2 || die "step 'package': cargo fetch failed"
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
in_root_cargo() {
	BUILDROOT_BINDS="$cargo_home $rustup_home" in_buildroot env HOME="$HOME" \
		CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" PATH="$cargo_home/bin:/usr/bin:/bin" \
		CARGO_TARGET_DIR="$IVSHMEM_TOP/build/deb-target" "$@"
}
in_root_cargo cargo build --release --locked --offline -p ivshmem-server -p ivshmem-client >&2 ||
	die "step 'package': cargo build of the host tools (in the build root) failed"
in_root_cargo env RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release --locked --offline --target x86_64-unknown-linux-gnu -p ivshmem-cli >&2 ||
	die "step 'package': cargo build of the ivshmem command (in the build root) failed"
cargo build --release --locked -p ivshmem-docgen >&2 ||
	die "step 'package': cargo build of ivshmem-docgen failed"
mkdir -p build/deb/src/dist/bin
cp build/deb-target/release/ivshmem-server build/deb-target/release/ivshmem-client \
	build/deb-target/x86_64-unknown-linux-gnu/release/ivshmem build/deb/src/dist/bin/
target=${CARGO_TARGET_DIR:-target}
"$target/release/ivshmem-docgen" build/deb/src/dist >/dev/null ||
	die "step 'package': generating the man pages and completions failed"
in_buildroot sh -c 'cd build/deb/src && dpkg-buildpackage -us -uc -b' >build/deb/build.log 2>&1 ||
	{ tail -n 30 build/deb/build.log >&2; die "step 'package': dpkg-buildpackage failed; log: build/deb/build.log"; }
deb=$(ls build/deb/ivshmem-dkms_*_amd64.deb 2>/dev/null || true)
[ -f "$deb" ] || die "step 'package': dpkg-buildpackage made no ivshmem-dkms .deb"
for p in build/deb/*.deb; do
	log "package: $p ($(du -h "$p" | cut -f1)); contents:"
	dpkg-deb -c "$p" | awk '{print "    " $6}' | grep -v '/$' >&2
done
echo "$deb"
