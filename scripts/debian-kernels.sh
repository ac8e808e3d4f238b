#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# debian-kernels.sh: a maintainer's tool (not run by make check). Lists the
# amd64 kernels the Debian mirror offers in trixie, trixie-backports and
# sid, and says for each whether the module builds for it, by the checks
# build-debian-module.sh makes before it compiles anything: CONFIG_RUST,
# a supported series, and the kernel's rustc (CONFIG_RUSTC_VERSION_TEXT)
# against the rustc of that suite's build root (lib.sh). Each kernel's
# .config is read out of its linux-headers package (downloaded, not
# installed). A "yes" for the newest kernel of each supported series is
# proven by make check, which builds (and, but for trixie-7.2, tests) it.
#
#   scripts/debian-kernels.sh            all suites
#   scripts/debian-kernels.sh sid        one suite's build root (trixie: trixie
#                                        and trixie-backports)

. "$(dirname "$0")/lib.sh"

supported=$(sed -n 's/^SUPPORTED="\(.*\)"$/\1/p' "$IVSHMEM_TOP/scripts/build-debian-module.sh")
work=$(mktemp -d "$IVSHMEM_CACHE/debian-kernels.XXXXXX")
trap 'rm -rf "$work"' EXIT
printf '%-8s %-26s %-22s %-6s %-8s %s\n' suite release version rust rustc "module builds"
for suite in ${1:-trixie sid}; do
	buildroot_select "$suite"
	"$IVSHMEM_TOP/scripts/setup-toolchain.sh" --no-kernel-source >/dev/null 2>&1 ||
		die "no $suite build root (scripts/setup-toolchain.sh with IVSHMEM_SUITE=$suite)"
	have=$(in_buildroot rustc --version | cut -d' ' -f2)
	mkdir -p "$work/$suite"
	# Every linux-headers-X.Y.Z+debNN-amd64 with each version apt offers,
	# and its .config.
	(cd "$work/$suite" && in_apt_overlay sh -ec '
		apt-cache pkgnames linux-headers- | grep -E "^linux-headers-[0-9.]+\+deb[0-9]+-amd64$" | sort -V |
			while read -r p; do
				apt-cache madison "$p" | while IFS="|" read -r _ v _; do
					v=$(echo $v)
					apt-get -q -o APT::Sandbox::User=root download "$p=$v" >/dev/null 2>&1 &&
						echo "$p $v"
				done
			done' >list) || die "listing the $suite kernels failed"
	while read -r pkg version; do
		release=${pkg#linux-headers-}
		deb=$(ls "$work/$suite/${pkg}_"*.deb 2>/dev/null | head -n 1)
		cfg=$work/$suite/$release.config
		dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards "*/linux-headers-$release/.config" >"$cfg" 2>/dev/null || :
		rust=$(grep -q '^CONFIG_RUST=y' "$cfg" && echo yes || echo no)
		want=$(sed -n 's/^CONFIG_RUSTC_VERSION_TEXT="rustc \([^ ]*\).*/\1/p' "$cfg")
		series=$(echo "$release" | cut -d. -f1,2)
		if [ "$rust" = no ]; then
			verdict="no: no CONFIG_RUST (on trixie, take the trixie-backports kernel)"
		elif ! echo " $supported " | grep -q " $series "; then
			verdict="no: Linux $series is not supported (supported: $supported)"
		elif [ "$want" != "$have" ]; then
			verdict="no: built with rustc $want, the $suite build root has $have"
		else
			verdict="yes ($suite build root)"
		fi
		printf '%-8s %-26s %-22s %-6s %-8s %s\n' "$suite" "$release" "$version" "$rust" "${want:--}" "$verdict"
	done <"$work/$suite/list"
done
