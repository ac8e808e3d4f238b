#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Set up everything the build needs, idempotently:
#   1. host packages (QEMU, busybox, cpio, debootstrap, and what the host
#      tests need: a C compiler, python3, groff, hexdump; systemd-nspawn,
#      which boots the server package's Debian system) through apt;
#   2. a Debian build root of IVSHMEM_SUITE (trixie by default; sid for
#      sid's kernels) with its rustc, rust-src, bindgen, C compiler, ...,
#      made with debootstrap and cached under $IVSHMEM_CACHE/buildroot,
#      keyed by its suite and package list, never changed in place;
#   3. the newest linux-source-7.x that trixie-backports offers (falling back
#      to an older 7.x, then to sid), extracted under $IVSHMEM_CACHE/src.
#
# The kernel version is chosen once and remembered; set IVSHMEM_REFRESH=1
# to look at the package index again. --no-kernel-source stops after step 2
# (work on Debian's stock kernel needs no kernel source of ours).
#
# Not needed when you build against your own kernel tree: see README.md.

. "$(dirname "$0")/lib.sh"

# gcc, libc6-dev, python3, groff-base and bsdextrautils (hexdump) are for
# the host tests (the ABI checks against the C header, the man pages, the
# hex dump): without them those tests are skipped, not run.
HOST_PACKAGES=(qemu-system-x86 busybox-static cpio debootstrap gcc libc6-dev
	python3 groff-base bsdextrautils
	libvirt-clients libxml2-utils make xz-utils procps
	systemd-container)

step_host_packages() {
	local missing=() p
	for p in "${HOST_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing host packages: ${missing[*]}"
	[ "$(id -u)" -eq 0 ] || die "step 'host packages': need root to install ${missing[*]}"
	mkdir -p "$IVSHMEM_CACHE"
	DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null ||
		die "step 'host packages': apt-get update failed (is the Debian mirror reachable?)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$IVSHMEM_CACHE/apt-install.log" 2>&1 ||
		die "step 'host packages': apt-get install ${missing[*]} failed; log: $IVSHMEM_CACHE/apt-install.log"
}

step_buildroot() {
	local root tmp
	root=$(buildroot_dir)
	if [ -f "$root/.ivshmem-complete" ]; then
		log "build root: $root (cached)"
		return 0
	fi
	[ "$(id -u)" -eq 0 ] || die "step 'build root': debootstrap needs root"
	log "build root: creating $root with debootstrap (takes a few minutes)"
	mkdir -p "$IVSHMEM_CACHE/buildroot"
	tmp="$root.tmp"
	rm -rf "$tmp"
	local include
	include=$(IFS=,; echo "${BUILDROOT_PACKAGES[*]}")
	if ! debootstrap --variant=minbase --include="$include" \
		"$BUILDROOT_SUITE" "$tmp" "$IVSHMEM_MIRROR" >"$tmp.log" 2>&1; then
		tail -n 30 "$tmp.log" >&2
		die "step 'build root': debootstrap $BUILDROOT_SUITE from $IVSHMEM_MIRROR failed (log: $tmp.log)"
	fi
	apt_sources "$tmp"
	# In trixie's root, sid is only consulted for linux-source, through
	# its own list.
	[ "$BUILDROOT_SUITE" = sid ] || echo "deb $IVSHMEM_MIRROR sid main" >"$tmp/etc/apt/sid.list"
	chroot "$tmp" apt-get update -q >"$tmp.log" 2>&1 ||
		die "step 'build root': apt-get update in the new $BUILDROOT_SUITE root failed (log: $tmp.log)"
	chroot "$tmp" dpkg-query -W rustc rust-src bindgen 'clang*' lld llvm 'gcc-1*' 2>/dev/null |
		awk 'NF == 2' >"$tmp/.ivshmem-toolchain" || true
	touch "$tmp/.ivshmem-complete"
	rm -f "$tmp.log"
	mv "$tmp" "$root"
	log "build root ready:"
	sed 's/^/    /' "$root/.ivshmem-toolchain" >&2
}

# newest_linux_source APT_ARGS...: print "package version" of the newest
# linux-source-7.N available with the given apt options, or nothing.
newest_linux_source() {
	in_buildroot sh -c '
		apt-cache "$@" search --names-only "^linux-source-7\.[0-9]+$" |
			cut -d" " -f1 | sort -t. -k2,2n | tail -n 1 |
			while read -r p; do
				v=$(apt-cache "$@" policy "$p" | sed -n "s/^  Candidate: //p")
				[ -n "$v" ] && [ "$v" != "(none)" ] && echo "$p $v"
			done' sh "$@"
}

step_kernel_source() {
	local current="$IVSHMEM_CACHE/src/current"
	if [ -f "$current" ] && [ -f "$(cat "$current")/Makefile" ] && [ "${IVSHMEM_REFRESH:-0}" != 1 ]; then
		log "kernel source: $(cat "$current") (cached; IVSHMEM_REFRESH=1 looks again)"
		return 0
	fi
	mkdir -p "$IVSHMEM_CACHE/src"
	log "kernel source: looking for the newest linux-source-7.x in $BUILDROOT_SUITE-backports"
	in_buildroot apt-get update -q >/dev/null ||
		die "step 'kernel source': apt-get update in the build root failed"
	local found origin=trixie-backports sidopts=(
		-o Dir::Etc::sourcelist=/etc/apt/sid.list -o Dir::Etc::sourceparts=-
		-o Dir::State::Lists=/var/lib/apt/lists-sid)
	found=$(newest_linux_source)
	if [ -z "$found" ]; then
		log "kernel source: none in trixie/trixie-backports, trying sid"
		in_buildroot mkdir -p /var/lib/apt/lists-sid/partial
		in_buildroot apt-get "${sidopts[@]}" update -q >/dev/null ||
			die "step 'kernel source': apt-get update of sid failed"
		found=$(newest_linux_source "${sidopts[@]}")
		origin=sid
	fi
	[ -n "$found" ] || die "step 'kernel source': no linux-source-7.x package in trixie-backports or sid"
	local pkg=${found% *} ver=${found#* }
	local dest="$IVSHMEM_CACHE/src/$pkg-$ver"
	log "kernel source: using $pkg $ver (from $origin)"
	if [ ! -f "$dest/.ivshmem-complete" ]; then
		local dl="$IVSHMEM_CACHE/src/dl"
		rm -rf "$dl" "$dest"
		mkdir -p "$dl" "$dest"
		local opts=()
		[ "$origin" = sid ] && opts=("${sidopts[@]}")
		(cd "$dl" && in_buildroot apt-get -o APT::Sandbox::User=root "${opts[@]}" download "$pkg=$ver") ||
			die "step 'kernel source': apt-get download $pkg=$ver failed"
		log "kernel source: extracting"
		(cd "$dl" && dpkg-deb --fsys-tarfile ./*.deb | tar -x --wildcards './usr/src/*.tar.xz') ||
			die "step 'kernel source': unpacking the $pkg package in $dl failed"
		tar -xJf "$dl"/usr/src/*.tar.xz -C "$dest" --strip-components=1 ||
			die "step 'kernel source': extracting the tarball failed"
		rm -rf "$dl"
		touch "$dest/.ivshmem-complete"
	fi
	echo "$dest" >"$current"
	log "kernel source ready: $dest ($(make -s -C "$dest" kernelversion))"
}

step_host_packages
step_buildroot
[ "${1:-}" = --no-kernel-source ] || step_kernel_source
