#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# lintian.sh: Debian's lintian, of trixie, on the packages build-deb.sh
# made (build/deb/*.changes: both .debs and the build information). Exits
# non-zero on any error-level tag; warnings and infos are printed. lintian
# runs in a layer over the trixie build root with lintian installed, made
# once and cached next to the kernel layers (keyed by the build root).

. "$(dirname "$0")/lib.sh"
buildroot_select trixie
cd "$IVSHMEM_TOP"

changes=$(ls build/deb/*.changes 2>/dev/null | head -n 1)
[ -n "$changes" ] || die "no build/deb/*.changes: run scripts/build-deb.sh first"
layer="$IVSHMEM_CACHE/klayer/$BUILDROOT_SUITE-$(buildroot_key)/lintian"
if [ ! -f "$layer/.ivshmem-complete" ]; then
	log "lintian: a layer over the $BUILDROOT_SUITE build root with lintian"
	layer_make "$layer" "$IVSHMEM_CACHE/lintian-apt.log" "step 'lintian': apt-get install lintian" sh -ec '
		apt-get update -q
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends lintian
		apt-get clean'
fi
# --allow-root: the build root runs everything as root.
BUILDROOT_LAYER=$layer in_buildroot lintian --allow-root --fail-on error --display-info "$changes"
