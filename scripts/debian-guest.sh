#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# debian-guest.sh [python]: the `debian` guest flavour's root, a small
# Debian trixie system (debootstrap minbase with udev and kmod), packed as an
# uncompressed cpio that a guest boots as its initramfs (the root stays in
# RAM). Prints the cpio's path.
#
# `python` makes the variant root of the `debian-python` flavour: the same
# system with Debian's CPython and pytest (python3, python3-pytest), for the
# Python package's tests. The default root is unchanged by it.
#
# Each root is cached under $IVSHMEM_CACHE/guestroot, keyed by its package
# list; documentation, locales and apt's lists are left out to keep it
# small. The VM runner appends to it what a scenario needs (its /init, the
# selftest harness, the files an installed package put in place).

. "$(dirname "$0")/lib.sh"

GUEST_SUITE=trixie
GUEST_PACKAGES=(udev kmod)
name=$GUEST_SUITE
case "${1:-}" in
"") ;;
python)
	GUEST_PACKAGES+=(python3 python3-pytest)
	name=$GUEST_SUITE-python
	;;
*) die "usage: debian-guest.sh [python]" ;;
esac

key=$(printf '%s\n' "$GUEST_SUITE" "${GUEST_PACKAGES[@]}" v1 | sha)
root="$IVSHMEM_CACHE/guestroot/$name-$key"
cpio="$root.cpio"
if [ -f "$cpio" ]; then
	log "debian guest root: $cpio (cached)"
	echo "$cpio"
	exit 0
fi
[ "$(id -u)" -eq 0 ] || die "step 'debian guest root': debootstrap needs root"
log "debian guest root: creating $root with debootstrap"
mkdir -p "$IVSHMEM_CACHE/guestroot"
rm -rf "$root" "$root.log"
include=$(IFS=,; echo "${GUEST_PACKAGES[*]}")
if ! debootstrap --variant=minbase --include="$include" "$GUEST_SUITE" "$root" "$IVSHMEM_MIRROR" >"$root.log" 2>&1; then
	tail -n 30 "$root.log" >&2
	die "step 'debian guest root': debootstrap $GUEST_SUITE failed (log: $root.log)"
fi
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian} "$root"/var/cache/apt/*.bin \
	"$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old
[ -x "$root/usr/lib/systemd/systemd-udevd" ] || die "step 'debian guest root': no systemd-udevd in $root"
if [ "${1:-}" = python ]; then
	chroot "$root" python3 -c 'import pytest, sys; print(sys.version.split()[0], pytest.__version__)' >"$root.versions" ||
		die "step 'debian guest root': python3 -m pytest does not import in $root"
	log "debian guest root: CPython and pytest $(cat "$root.versions")"
fi
log "debian guest root: packing $(du -sh "$root" | cut -f1) into $cpio"
(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null --quiet -o -H newc --owner=0:0) >"$cpio.tmp" ||
	die "step 'debian guest root': packing the cpio failed"
mv "$cpio.tmp" "$cpio"
log "debian guest root: $cpio ($(du -h "$cpio" | cut -f1))"
echo "$cpio"
