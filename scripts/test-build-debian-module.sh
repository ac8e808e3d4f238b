#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# test-build-debian-module.sh: build-debian-module.sh refuses what it cannot
# build for, with a message that names the missing piece. Runs in a Debian
# system that has a stock 7.3 kernel's headers and linux-source-7.3
# installed (the trixie build root with the kernel's layer, from
# stock-kernel.sh), with the prepared-tree
# cache in $IVSHMEM_KDIR_CACHE. Prints TAP; exits 1 if a case failed.

set -u
script=$(cd "$(dirname "$0")" && pwd)/build-debian-module.sh
release=$(ls /usr/src | sed -n 's/^linux-headers-\(7\.3\.[0-9]*+deb[0-9]*-amd64\)$/\1/p' | sort -V | tail -n 1)
if [ -z "$release" ]; then
	echo "1..0 # SKIP no linux-headers-7.3.x-amd64 installed here"
	exit 0
fi
hdr=/usr/src/linux-headers-$release
version=$(dpkg-query -W -f='${Version}' "linux-headers-$release")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0

# fake NAME SED-EXPR: a copy of the headers' .config and Module.symvers,
# edited by SED-EXPR, in $tmp/NAME.
fake() {
	mkdir -p "$tmp/$1"
	sed "$2" "$hdr/.config" >"$tmp/$1/.config"
	cp "$hdr/Module.symvers" "$tmp/$1/"
}

# case NAME WANT-STATUS WANT-MESSAGE ARGS...
case_() {
	name=$1 want=$2 msg=$3
	shift 3
	n=$((n + 1))
	out=$(sh "$script" "$@" --out "$tmp/out" 2>&1)
	got=$?
	if [ "$got" = "$want" ] && printf '%s\n' "$out" | grep -qF -- "$msg"; then
		echo "ok $n $name"
	else
		echo "not ok $n $name # exit $got (want $want), output: $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"
		failed=$((failed + 1))
	fi
	printf '%s\n' "$out" | grep 'error:' | sed 's/^/# /'
}

echo "TAP version 13"
echo "1..8"
fake norust 's/^CONFIG_RUST=y$/# CONFIG_RUST is not set/'
case_ rust_off 1 "CONFIG_RUST is off" "$release" --headers "$tmp/norust" --version "$version"
fake rustc 's/^CONFIG_RUSTC_VERSION_TEXT=.*/CONFIG_RUSTC_VERSION_TEXT="rustc 1.99.0 (0000000 2030-01-01)"/'
case_ rustc_differs 1 "rustc differs from the one $release was built with" "$release" --headers "$tmp/rustc" --version "$version"
fake cc 's/^CONFIG_CC_VERSION_TEXT=.*/CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 (Debian 14.0.0-1) 14.0.0"/'
case_ compiler_differs 1 "but $release was built with" "$release" --headers "$tmp/cc" --version "$version"
case_ no_source_of_version 1 "no source package of version 7.3.99-1" "$release" --headers "$hdr" --version 7.3.99-1
case_ no_headers 1 "no headers for 7.3.99+deb13-amd64" 7.3.99+deb13-amd64
case_ too_old 77 "older than the driver supports; supported: Linux 7.2.x, Linux 7.3.x" 7.1.5+deb13-amd64
case_ too_new 77 "newer than the driver supports yet; supported: Linux 7.2.x, Linux 7.3.x" 7.4.1+deb13-amd64
# An option olddefconfig does not know is dropped: the config changes. A
# release name of its own keeps the real prepared tree out of it.
fake extra '$a CONFIG_IVSHMEM_NOT_A_KERNEL_OPTION=y'
case_ olddefconfig_changed 1 "olddefconfig changed the config of 7.3.4+deb13-test" \
	7.3.4+deb13-test --headers "$tmp/extra" --version "$version"
rm -rf "${IVSHMEM_KDIR_CACHE:-/var/cache/ivshmem-dkms}/7.3.4+deb13-test"
echo "# build-debian-module refusals: $((n - failed)) passed, $failed failed"
[ $failed -eq 0 ]
