#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# build-debian-module.sh [RELEASE] [--out DIR] [--cache DIR]
#
# Builds ivshmem.ko for an installed Debian kernel release (the running one
# by default). Debian's linux-headers package has the kernel's .config and
# Module.symvers but not the Rust metadata a Rust module links against, so
# this prepares it once from the linux-source package of the same version:
#
#   1. checks the release: 7.3.x, CONFIG_RUST=y, the same rustc and C
#      compiler as the kernel was built with, headers and a linux-source
#      package of the headers' exact version;
#   2. extracts that source under the cache and runs olddefconfig with
#      Debian's .config (which must come out unchanged) and modules_prepare
#      with Debian's KERNELRELEASE, then copies Debian's Module.symvers in;
#      the result is cached by release and package version;
#   3. builds the module against it (M=, GCC as the kernel was built).
#
# The DKMS package (ivshmem-dkms) runs this as its MAKE command; `make
# debian` runs it from a clone. It needs what ivshmem-dkms Depends on.
# The module source is the directory above this script.
#
# Options:
#   --out DIR     put objects and ivshmem.ko in DIR (default: the source dir)
#   --cache DIR   where the prepared trees live (default: /var/cache/ivshmem-dkms
#                 for root, ~/.cache/ivshmem/debian-kdir otherwise;
#                 env IVSHMEM_KDIR_CACHE)
#   --prepare-only  stop after preparing the tree
#   --check       stop after the checks of step 1 (the kernel hook and the
#                 postinst use it to say in one line why DKMS skips a kernel)
#   --headers DIR   the release's headers (default: /lib/modules/RELEASE/build)
#   --version V     the headers' package version (default: asked of dpkg)
#
# Exit status: 0 built; 1 a check or step failed (the message names it);
# 77 the release is not one this driver supports (DKMS's "skip").

set -eu

# The kernel series the driver supports, each tested in make check (keep in
# step with BUILD_EXCLUSIVE_KERNEL in debian/ivshmem-dkms.dkms).
SUPPORTED="7.2 7.3"

die() {
	echo "ivshmem: error: $*" >&2
	exit 1
}
unsupported() {
	echo "ivshmem: error: $*" >&2
	exit 77
}
say() { echo "ivshmem: $*" >&2; }

src=$(cd "$(dirname "$0")/.." && pwd)
release= out= prepare_only=0 check_only=0 hdr= version=
if [ "$(id -u)" -eq 0 ]; then
	cache=${IVSHMEM_KDIR_CACHE:-/var/cache/ivshmem-dkms}
else
	cache=${IVSHMEM_KDIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ivshmem/debian-kdir}
fi
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--prepare-only) prepare_only=1; shift ;;
	--check) check_only=1; shift ;;
	--headers) hdr=$2; shift 2 ;;
	--version) version=$2; shift 2 ;;
	-h | --help) sed -n '3,32p' "$0"; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) release=$1; shift ;;
	esac
done
release=${release:-$(uname -r)}
[ -f "$src/Kbuild" ] && [ -d "$src/rust" ] || die "no module source at $src"

# 1. Checks, each naming the missing piece.
kver=${release%%[-+]*}
majmin=$(echo "$kver" | cut -d. -f1,2)
case "$kver" in
[0-9]*.[0-9]*) ;;
*) die "cannot read a kernel version out of release '$release'" ;;
esac
supported=0
for s in $SUPPORTED; do [ "$majmin" = "$s" ] && supported=1; done
if [ $supported = 0 ]; then
	list=$(echo "$SUPPORTED" | sed 's/\([0-9.]*\)/Linux \1.x/g; s/ L/, L/g')
	norust=
	for c in "$hdr/.config" "/lib/modules/$release/build/.config"; do
		if [ -f "$c" ] && ! grep -q '^CONFIG_RUST=y' "$c"; then
			norust=" and has no CONFIG_RUST (on trixie, take the trixie-backports kernel)"
			break
		fi
	done
	if [ "$(printf '%s\n%s\n' "$majmin" "${SUPPORTED%% *}" | sort -V | head -n 1)" = "$majmin" ]; then
		unsupported "kernel $release is older than the driver supports$norust; supported: $list"
	fi
	unsupported "kernel $release is newer than the driver supports yet$norust; supported: $list"
fi

if [ -n "$hdr" ]; then
	[ -f "$hdr/.config" ] || die "no .config in $hdr"
elif [ -e "/lib/modules/$release/build/.config" ]; then
	hdr=$(readlink -f "/lib/modules/$release/build")
elif [ -e "/usr/src/linux-headers-$release/.config" ]; then
	hdr=/usr/src/linux-headers-$release
fi
[ -n "$hdr" ] || die "no headers for $release (no /lib/modules/$release/build/.config): apt install linux-headers-$release"
[ -f "$hdr/Module.symvers" ] || die "$hdr has no Module.symvers"

cfg() { sed -n "s/^$1=//p" "$hdr/.config" | sed 's/^"\(.*\)"$/\1/'; }
[ "$(cfg CONFIG_RUST)" = y ] ||
	die "CONFIG_RUST is off in $release ($hdr/.config): a Rust module cannot be built or loaded there"

want_rustc=$(cfg CONFIG_RUSTC_VERSION_TEXT)
have_rustc=$(rustc --version 2>/dev/null || echo "no rustc in PATH")
[ "$want_rustc" = "$have_rustc" ] ||
	die "rustc differs from the one $release was built with: CONFIG_RUSTC_VERSION_TEXT is '$want_rustc', rustc --version says '$have_rustc'"
command -v bindgen >/dev/null || die "no bindgen in PATH (apt install bindgen)"

cc_text=$(cfg CONFIG_CC_VERSION_TEXT)
cc=${cc_text%% *}
case "$cc_text" in
*clang*) die "$release was built with clang ('$cc_text'); this script knows GCC-built Debian kernels only" ;;
esac
command -v "$cc" >/dev/null || die "no $cc, the compiler $release was built with ('$cc_text')"
[ "$("$cc" --version | head -n 1)" = "$cc_text" ] ||
	die "$cc is '$("$cc" --version | head -n 1)', but $release was built with '$cc_text'"

if [ "$check_only" = 1 ]; then
	say "$release: supported, and this system has its toolchain ($have_rustc, $cc_text)"
	exit 0
fi

if [ -z "$version" ]; then
	hdr_pkg=$(dpkg-query -S "$hdr/.config" 2>/dev/null | cut -d: -f1 | head -n 1)
	[ -n "$hdr_pkg" ] || die "$hdr/.config belongs to no Debian package (pass --version)"
	version=$(dpkg-query -W -f='${Version}' "$hdr_pkg")
else
	hdr_pkg="the headers in $hdr"
fi
src_pkg=linux-source-$majmin
tarball=/usr/src/linux-source-$majmin.tar.xz
tree=$cache/$release/$version

# 2. The prepared tree, cached by release and package version; the
# extracted source (never written to: builds go to O=) by its version.
# The source package is needed only to prepare a tree: once prepared, a
# release still builds after an upgrade replaced linux-source-X.Y with
# another version (only one can be installed).
mkdir -p "$cache/$release"
exec 9>"$cache/.lock"
flock 9
if [ ! -f "$tree/.ivshmem-prepared" ]; then
	src_version=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$src_pkg" 2>/dev/null | sed -n 's/^ii  *//p')
	[ -n "$src_version" ] && [ -f "$tarball" ] ||
		die "no source package for $release: $src_pkg is not installed (apt install $src_pkg=$version)"
	[ "$src_version" = "$version" ] ||
		die "no source package of version $version (that of $hdr_pkg): $src_pkg is $src_version (apt install $src_pkg=$version)"
	srctree=$cache/source-$src_version
fi
if [ ! -f "$tree/.ivshmem-prepared" ] && [ ! -f "$srctree/.ivshmem-complete" ]; then
	say "extracting $tarball into $srctree (once per source version)"
	rm -rf "$srctree"
	mkdir -p "$srctree"
	tar -xJf "$tarball" -C "$srctree" --strip-components=1 || die "extracting $tarball failed"
	touch "$srctree/.ivshmem-complete"
fi
if [ ! -f "$tree/.ivshmem-prepared" ]; then
	say "preparing the Rust metadata of $release ($hdr_pkg $version) in $tree; this takes a few minutes, once"
	rm -rf "$tree"
	mkdir -p "$tree/obj"
	ln -s "$srctree" "$tree/src"
	cp "$hdr/.config" "$tree/obj/.config"
	say "  olddefconfig with $cc"
	make -s -C "$tree/src" O="$tree/obj" CC="$cc" olddefconfig >"$tree/prepare.log" 2>&1 ||
		die "olddefconfig failed; log: $tree/prepare.log"
	if ! cmp -s "$hdr/.config" "$tree/obj/.config"; then
		diff -u "$hdr/.config" "$tree/obj/.config" | grep '^[-+]CONFIG\|^[-+]# CONFIG' | head -n 20 >&2 || true
		die "olddefconfig changed the config of $release (lines above; a missing tool, such as pahole from dwarves, drops options): the module would not match the kernel"
	fi
	say "  modules_prepare (KERNELRELEASE=$release)"
	make -C "$tree/src" O="$tree/obj" CC="$cc" KERNELRELEASE="$release" \
		-j"$(nproc)" modules_prepare >>"$tree/prepare.log" 2>&1 ||
		{ tail -n 20 "$tree/prepare.log" >&2; die "modules_prepare failed; log: $tree/prepare.log"; }
	[ -f "$tree/obj/rust/libkernel.rmeta" ] ||
		die "modules_prepare made no rust/libkernel.rmeta; log: $tree/prepare.log"
	cp "$hdr/Module.symvers" "$tree/obj/Module.symvers"
	touch "$tree/.ivshmem-prepared"
	say "  prepared"
fi
[ "$prepare_only" = 1 ] && { echo "$tree/obj"; exit 0; }

# 3. The module.
set -- -C "$tree/obj" M="$src" CC="$cc" KERNELRELEASE="$release"
if [ -n "$out" ]; then
	mkdir -p "$out"
	out=$(cd "$out" && pwd)
	set -- "$@" MO="$out"
else
	out=$src
fi
say "building ivshmem.ko for $release"
make "$@" modules >&2 || die "the module build failed (make $*)"
vermagic=$(modinfo -F vermagic "$out/ivshmem.ko")
case "$vermagic" in
"$release "*) ;;
*) die "$out/ivshmem.ko has vermagic '$vermagic', not $release" ;;
esac
say "built $out/ivshmem.ko for $release"
