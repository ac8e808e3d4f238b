#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# dkms-install.sh [--minimal] [KERNEL]: build the ivshmem-dkms package and install it,
# with apt, into a Debian system that has one of Debian's stock kernels'
# headers (KERNEL: one of lib.sh's STOCK_KERNELS, default trixie), the way
# a user installs it; DKMS builds the module there. Then collect what the
# guest runs need and write build/dkms/KERNEL/env (OUT below):
#
#   build/deb/ivshmem-dkms_<version>_amd64.deb the package (IVSHMEM_DEB: one
#                                               built already)
#   OUT/install.log                             apt's and DKMS's output
#   OUT/ivshmem.ko                              the module DKMS installed
#   OUT/debian-root.cpio                        the `debian` guest root with
#                                               the package's files (udev
#                                               rule, ivshmem command) and
#                                               the module in place (depmod's
#                                               modules.alias included)
#   build/dkms/debian-py-root.cpio              the same over the root with
#                                               CPython and pytest (the
#                                               `debian-python` flavour)
#   build/dkms/guest-modules/                   vfio-pci, vfio_iommu_type1
#                                               and what they depend on,
#                                               from the stock kernel's own
#                                               modules (linux-modules in
#                                               the build root), uncompressed,
#                                               and `order`, their load order:
#                                               the bench guests' vfio-pci
#                                               contenders load them
#
# The Debian system is a throw-away overlay over the kernel's build root
# (its suite's: the package's dependencies) and the kernel's layer
# (stock-kernel.sh: its linux-headers, linux-modules and linux-source).
# If the layer has no prepared Rust metadata of the kernel in
# /var/cache/ivshmem-dkms yet, DKMS prepares it (a few minutes), and it is
# kept in the layer for later runs (build-stock.sh prepares the same tree).
#
# With --minimal, the Debian system is instead a minimal one of the
# kernel's suite (minimal-root.sh: debootstrap minbase with only the
# kernel's headers and modules, and an empty prepared-tree cache), so
# that apt must pull everything the package's Depends name and DKMS
# prepares the kernel's Rust metadata itself (review D2).
#
# After the install, in the same system: a kernel upgrade's hook rebuilds
# the module; and with the kernel's linux-source package gone (an upgrade
# brought another version: only one can be installed), DKMS still
# rebuilds it from the prepared tree.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"

minimal=0
if [ "${1:-}" = --minimal ]; then
	minimal=1
	shift
fi
stock_profile "${1:-trixie}"
stock=$("$IVSHMEM_TOP/scripts/stock-kernel.sh" "$STOCK_NAME")
release=$(cat "$stock/release")
layer=$(cat "$stock/layer")
# The guest systems are trixie's, whatever the kernel.
guestroot_cpio=$(IVSHMEM_SUITE=trixie "$IVSHMEM_TOP/scripts/debian-guest.sh")
pyroot_cpio=$(IVSHMEM_SUITE=trixie "$IVSHMEM_TOP/scripts/debian-guest.sh" python)

# 1. The package.
deb=${IVSHMEM_DEB:-$(IVSHMEM_SUITE=trixie "$IVSHMEM_TOP/scripts/build-deb.sh")}
stock_profile "$STOCK_NAME"
if [ $minimal = 1 ]; then
	read -r minlayer minroot < <("$IVSHMEM_TOP/scripts/minimal-root.sh" "$STOCK_NAME" "$deb")
	[ -n "$minroot" ] || die "step 'dkms install': no minimal root"
	sysroot="$minlayer/upper:$minroot"
	what="a minimal Debian $BUILDROOT_SUITE system (minbase, the kernel's headers and modules, nothing prepared)"
else
	sysroot="$layer/upper:$(buildroot_dir)"
	what="a Debian $BUILDROOT_SUITE system"
fi

# 2. Install it with apt into a Debian system that has the stock headers.
out="$IVSHMEM_TOP/build/dkms/$STOCK_NAME"
rm -rf "$out"
mkdir -p "$out/root"
ovl=$(overlay_new dkms)
trap 'rm -rf "$ovl"' EXIT
log "ivshmem-dkms ($STOCK_NAME): apt-get install $deb in $what with linux-headers-$release (DKMS builds the module)"
start=$SECONDS
set +e
unshare --mount --propagation private -- /bin/sh -ec '
	root=$1 ovl=$2 out=$3 deb=$4 release=$5 version=$6 top=$7 series=$8
	m=$ovl/merged
	"$top/scripts/mount-overlay.sh" "$root" "$ovl"
	mkdir -p "$m/mnt/out" "$m/mnt/deb"
	mount --bind "$out" "$m/mnt/out"
	mount --bind "$(dirname "$deb")" "$m/mnt/deb"
	exec chroot "$m" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -ec "
		apt-get install -y --no-install-recommends /mnt/deb/$(basename "$deb") || {
			echo \"== DKMS make.log\"
			cat /var/lib/dkms/ivshmem/*/build/make.log
			exit 1
		}
		echo \"== dkms status\"
		dkms status
		# A kernel (headers) upgrade runs the kernel hooks, which rebuild
		# the module: shown here for the same release, after unbuilding it.
		echo \"== kernel upgrade: dkms unbuild, then /etc/kernel/header_postinst.d/dkms $release\"
		dkms unbuild ivshmem/$version -k $release
		test ! -e /lib/modules/$release/updates/dkms/ivshmem.ko.xz
		/etc/kernel/header_postinst.d/dkms $release
		echo \"== dkms status after the hook\"
		dkms status
		# An upgrade replaced linux-source-$series by another version (only
		# one can be installed): the release still rebuilds from the
		# prepared tree.
		echo \"== linux-source-$series removed: dkms unbuild, then dkms install for $release\"
		dpkg --purge --force-depends linux-source-$series >/dev/null
		test ! -e /usr/src/linux-source-$series.tar.xz
		dkms unbuild ivshmem/$version -k $release
		dkms install ivshmem/$version -k $release || {
			cat /var/lib/dkms/ivshmem/*/build/make.log
			exit 1
		}
		echo \"== dkms status without the source package\"
		dkms status
		# Kernels the module does not support: a future series, and one
		# without Rust (as trixie 6.12). Their headers are installed
		# (made from those of this kernel, edited); DKMS skips them; the
		# kernel hook of the package says why, in one line each.
		for fake in 7.4.1+deb13-amd64 6.12.99+deb13-amd64; do
			h=/usr/src/linux-headers-\$fake
			mkdir -p /lib/modules/\$fake
			cp -a \$(readlink -f /lib/modules/$release/build) \$h
			case \$fake in
			6.*) sed -i /^CONFIG_RUST/d \$h/.config ;;
			esac
			ln -sfn \$h /lib/modules/\$fake/build
			echo \"== headers of \$fake installed: run-parts /etc/kernel/header_postinst.d\"
			run-parts --arg=\$fake /etc/kernel/header_postinst.d 2>&1 || true
			echo \"== dkms status for \$fake\"
			dkms status -k \$fake
			rm -rf \$h /lib/modules/\$fake
		done
		echo \"== end of the unsupported kernels\"
		cd /mnt/out
		mkdir -p root/lib/modules root/usr/lib/udev/rules.d root/etc
		# What the package and DKMS put in place, for the guest root:
		# the module and depmod indexes (the stock modules themselves
		# stay out; udev finds no module for the other devices).
		mkdir -p root/lib/modules/$release
		cp -a /lib/modules/$release/updates /lib/modules/$release/modules.* root/lib/modules/$release/
		for f in \$(dpkg -L ivshmem-dkms | grep ^/usr/lib/udev/rules.d/); do cp -a \$f root\$f; done
		# The ivshmem command, as the package installed it.
		mkdir -p root/usr/bin
		for f in \$(dpkg -L ivshmem-dkms | grep ^/usr/bin/); do cp -a \$f root\$f; done
		getent group ivshmem >group.line
	"
' sh "$sysroot" "$ovl" "$out" "$IVSHMEM_TOP/${deb#"$IVSHMEM_TOP"/}" "$release" "$(dpkg-deb -f "$deb" Version)" "$IVSHMEM_TOP" "$STOCK_SERIES" \
	>"$out/install.log" 2>&1
status=$?
set -e
if [ $status -ne 0 ]; then
	tail -n 40 "$out/install.log" >&2
	die "step 'dkms install': apt-get install of the package failed; log: $out/install.log"
fi
grep -E '^ivshmem/.*: installed' "$out/install.log" | grep -q "$release" ||
	{ tail -n 40 "$out/install.log" >&2; die "step 'dkms install': dkms status does not show ivshmem installed for $release; log: $out/install.log"; }
sed -n '/^== dkms status after the hook/,/^== linux-source/p' "$out/install.log" | grep -E '^ivshmem/.*: installed' | grep -q "$release" ||
	{ tail -n 40 "$out/install.log" >&2; die "step 'dkms install': the kernel hook did not rebuild ivshmem for $release; log: $out/install.log"; }
sed -n '/^== dkms status without the source package/,$p' "$out/install.log" | grep -E '^ivshmem/.*: installed' | grep -q "$release" ||
	{ tail -n 40 "$out/install.log" >&2; die "step 'dkms install': without linux-source-$STOCK_SERIES, DKMS did not rebuild ivshmem for $release from the prepared tree; log: $out/install.log"; }
# say_why RELEASE TEXT: the package's hook said TEXT about RELEASE, and
# DKMS built nothing for it.
say_why() {
	local section
	section=$(sed -n "/^== headers of $1 installed/,/^== \(headers of\|end of\)/p" "$out/install.log" | sed '1d')
	printf '%s\n' "$section" | grep -qF "ivshmem-dkms: not built for $1: $2" ||
		{ printf '%s\n' "$section" >&2; die "step 'dkms install': the kernel hook did not say, for $1, '$2'; log: $out/install.log"; }
	! printf '%s\n' "$section" | grep '^ivshmem/' | grep -F ", $1," | grep -q ': installed' ||
		die "step 'dkms install': DKMS built ivshmem for the unsupported $1; log: $out/install.log"
}
say_why 7.4.1+deb13-amd64 "kernel 7.4.1+deb13-amd64 is newer than the driver supports yet; supported: Linux 7.2.x, Linux 7.3.x"
say_why 6.12.99+deb13-amd64 "kernel 6.12.99+deb13-amd64 is older than the driver supports and has no CONFIG_RUST (on trixie, take the trixie-backports kernel); supported: Linux 7.2.x, Linux 7.3.x"
installed=$(find "$out/root/lib/modules/$release/updates/dkms" -name 'ivshmem.ko*' | head -n 1)
[ -n "$installed" ] || die "step 'dkms install': no ivshmem.ko under /lib/modules/$release/updates/dkms"
case "$installed" in
*.ko.xz) xz -dc "$installed" >"$out/ivshmem.ko" ;;
*.ko.zst) zstd -qdc "$installed" >"$out/ivshmem.ko" ;;
*.ko) cp "$installed" "$out/ivshmem.ko" ;;
*) die "step 'dkms install': unknown module file $installed" ;;
esac
grep -q "ivshmem" "$out/root/lib/modules/$release/modules.alias" ||
	die "step 'dkms install': depmod's modules.alias has no ivshmem alias"
log "ivshmem-dkms ($STOCK_NAME): installed, rebuilt by the kernel hook and without the source package in $((SECONDS - start)) s: $(grep -E '^ivshmem/' "$out/install.log" | grep -F "$release" | tail -n 1)"
# Keep what DKMS prepared for this release, if the layer had nothing yet.
kept="$layer/upper/var/cache/ivshmem-dkms"
made="$ovl/upper/var/cache/ivshmem-dkms"
if [ $minimal = 0 ] && [ -f "$made/$release/$(cat "$stock/version")/.ivshmem-prepared" ] && ! ls "$kept/$release"/*/.ivshmem-prepared >/dev/null 2>&1; then
	exec 8>"$layer.lock"
	flock 8
	rm -rf "$kept"
	mkdir -p "$(dirname "$kept")"
	mv "$made" "$kept"
	flock -u 8
	log "ivshmem-dkms ($STOCK_NAME): kept the prepared tree DKMS made, in the kernel's layer"
fi

# 3. The debian guest roots with the package installed: each base root,
# and over it the module tree, the udev rule, and the group the package's
# postinst makes (made the same way, `groupadd --system`, against that
# guest root's own account files, so that its gid is free there).
grep -q '^ivshmem:' "$out/group.line" || die "step 'dkms install': the package's postinst made no group ivshmem"
# guest_root BASE_CPIO DEST_CPIO
guest_root() {
	local base=${1%.cpio} extra=$out/extra
	rm -rf "$extra"
	cp -a "$out/root" "$extra"
	for f in group gshadow passwd shadow login.defs; do
		cp -a "$base/etc/$f" "$extra/etc/$f"
	done
	groupadd --root "$extra" --system ivshmem ||
		die "step 'dkms install': groupadd ivshmem in the guest root $base failed"
	rm -f "$extra/etc/login.defs" "$extra/etc/passwd" "$extra/etc/shadow" "$extra/etc/"*- "$extra/etc/.pwd.lock"
	(cd "$extra" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
		cpio --null --quiet -o -H newc --owner=0:0) >"$out/extra.cpio"
	cat "$1" "$out/extra.cpio" >"$2"
	rm -rf "$out/extra.cpio" "$extra"
}
guest_root "$guestroot_cpio" "$out/debian-root.cpio"
guest_root "$pyroot_cpio" "$out/debian-py-root.cpio"

# 4. The stock kernel's vfio modules for the bench guests (the busybox
# initramfs has no modprobe and no module tree): each module after what
# modules.dep says it needs, decompressed here, since busybox's insmod may
# not read .ko.xz.
if [ $minimal = 1 ]; then
	moddir="$minlayer/upper/usr/lib/modules/$release"
else
	moddir="$layer/upper/usr/lib/modules/$release"
fi
[ -f "$moddir/modules.dep" ] ||
	die "step 'guest modules': no $moddir/modules.dep (scripts/stock-kernel.sh installs linux-modules-$release)"
mods=$out/guest-modules
mkdir -p "$mods"
: >"$mods/order"
# add_module PATH: PATH as modules.dep names it, relative to $moddir.
add_module() {
	local rel=$1 dep name
	name=$(basename "$rel")
	name=${name%%.ko*}.ko
	grep -qxF "$name" "$mods/order" && return 0
	# modules.dep lists every dependency, direct or not; the last ones
	# are loaded first (modprobe's order). Each is added after its own.
	for dep in $(awk -v m="$rel:" '$1 == m { for (i = NF; i > 1; i--) print $i }' "$moddir/modules.dep"); do
		add_module "$dep"
	done
	case "$rel" in
	*.ko.xz) xz -dc "$moddir/$rel" ;;
	*.ko.zst) zstd -qdc "$moddir/$rel" ;;
	*.ko) cat "$moddir/$rel" ;;
	*) die "step 'guest modules': unknown module file $rel" ;;
	esac >"$mods/$name" || die "step 'guest modules': cannot decompress $moddir/$rel"
	echo "$name" >>"$mods/order"
}
for m in vfio_iommu_type1 vfio-pci; do
	rel=$(awk -F: -v m="$m" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); if (n == m) { print $1; exit } }' "$moddir/modules.dep")
	if [ -n "$rel" ]; then
		add_module "$rel"
	elif ! grep -qE "/$m\.ko\$" "$moddir/modules.builtin"; then
		die "step 'guest modules': $m is neither in $moddir/modules.dep nor built in (no CONFIG_VFIO_PCI?)"
	fi
done
log "guest modules: $(tr '\n' ' ' <"$mods/order")from $moddir, in $mods"

# 5. The suite's test modules (the dma-buf importer) for the same kernel,
# built against its headers as any out-of-tree C module is.
BUILDROOT_LAYER=$layer build_test_modules "$out/kmod" "/usr/src/linux-headers-$release"

cat >"$out/env" <<ENV
IVSHMEM_KERNEL=$stock/vmlinuz
IVSHMEM_MODULE=$out/ivshmem.ko
IVSHMEM_TEST_MODULES=$out/kmod
IVSHMEM_DEBIAN_ROOT=$out/debian-root.cpio
IVSHMEM_DEBIAN_PY_ROOT=$out/debian-py-root.cpio
IVSHMEM_GUEST_MODULES=$mods
IVSHMEM_KERNEL_LABEL="Debian $release (stock, $STOCK_NAME), module built by DKMS"
ENV
echo "$release" >"$out/release"
echo "$layer" >"$out/layer"
log "ivshmem-dkms ($STOCK_NAME): guest files and env in $out"
