#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# server-deb-test.sh ENV-FILE...: the ivshmem-server package in a Debian
# system. It installs build/deb/ivshmem-server_*.deb with apt into a
# throw-away overlay of the build root (trixie, with systemd installed but
# not running: systemd cannot be PID 1 here), then:
#
#   1. systemd-analyze verify of the units, for a region named "pkgtest";
#   2. systemd-tmpfiles --create of the package's tmpfiles.d entry, and the
#      socket directory's owner and mode;
#   3. the socket unit and the service, emulated without a running systemd:
#      systemd-socket-activate listens on the socket unit's ListenStream
#      path and, when QEMU connects, starts the service's exact ExecStart
#      line (%i and its Environment=/EnvironmentFile= variables
#      substituted) with the socket passed as systemd passes it;
#   4. a doorbell guest boots against that socket (vmrun scenario
#      doorbell-service, with the paths of ENV-FILE...).
#
# Prints TAP and, last, `server-deb: N passed, N failed, N skipped`.

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
set +e
set -a
for f in "$@"; do . "$f"; done
set +a

pass=0 fail=0 skip=0 n=0
result() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n $2"
		pass=$((pass + 1))
	else
		echo "not ok $n $2"
		fail=$((fail + 1))
	fi
}
finish() {
	echo "server-deb: $pass passed, $fail failed, $skip skipped"
	[ $fail -eq 0 ]
	exit
}

deb=$(ls build/deb/ivshmem-server_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { scripts/build-deb.sh >/dev/null && deb=$(ls build/deb/ivshmem-server_*.deb | head -n 1); }
[ -n "$deb" ] || { result 1 "ivshmem-server package built"; finish; }
# systemd (not as init: systemd-analyze, -tmpfiles, -socket-activate) is
# in the build root's package list (lib.sh).
in_buildroot dpkg-query -W -f='${Status}' systemd 2>/dev/null | grep -q 'install ok installed' ||
	{ result 1 "systemd in the build root (lib.sh's BUILDROOT_PACKAGES)"; finish; }

ovl=$(overlay_new server)
shm_name="ivshmem-pkgtest-$$"
trap 'rm -rf "$ovl"; rm -f "/dev/shm/$shm_name"' EXIT
out=$(mktemp -d)

# Everything below runs in one private mount namespace, so that the
# guest's QEMU reaches the socket through the overlay's own path.
unshare --mount --propagation private -- /bin/bash -c '
	root=$1 ovl=$2 deb=$3 shm_name=$4 out=$5 top=$6
	shift 6
	m=$ovl/merged
	"$top/scripts/mount-overlay.sh" "$root" "$ovl"
	mkdir -p "$m/mnt/deb"
	mount --bind "$(dirname "$deb")" "$m/mnt/deb"
	in_root() {
		chroot "$m" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
	}
	step() { echo "$1 $2" >>"$out/results"; }

	in_root apt-get install -y --no-install-recommends "/mnt/deb/$(basename "$deb")" >"$out/apt.log" 2>&1
	step $? "ivshmem-server installs with apt"

	printf "SIZE=4M\nVECTORS=4\nSHM_NAME=%s\n" "$shm_name" >"$m/etc/ivshmem/pkgtest.conf"
	in_root systemd-analyze verify --man=no ivshmem-server@pkgtest.service ivshmem-server@pkgtest.socket \
		>"$out/verify.log" 2>&1
	status=$?
	# Outside a booted system, verify also reports the missing system
	# manager; only complaints about our units count.
	if [ $status -ne 0 ] && ! grep -q "ivshmem-server@" "$out/verify.log"; then status=0; fi
	step $status "systemd-analyze verify ivshmem-server@pkgtest.service and .socket"

	in_root systemd-tmpfiles --create /usr/lib/tmpfiles.d/ivshmem-server.conf >"$out/tmpfiles.log" 2>&1 &&
		[ "$(in_root stat -c "%a %U:%G" /run/ivshmem)" = "750 root:kvm" ]
	step $? "tmpfiles.d makes /run/ivshmem 0750 root:kvm"

	unit=$m/usr/lib/systemd/system/ivshmem-server@.service
	exec_start=$(sed -n "s/^ExecStart=//p" "$unit" | sed "s/%i/pkgtest/g")
	environment=$(sed -n "s/^Environment=//p" "$unit" | sed "s/%i/pkgtest/g")
	listen=$(sed -n "s/^ListenStream=//p" "$m/usr/lib/systemd/system/ivshmem-server@.socket" | sed "s/%i/pkgtest/g")
	echo "# ExecStart=$exec_start" >>"$out/notes"
	echo "# ListenStream=$listen" >>"$out/notes"
	in_root systemd-socket-activate -l "$listen" /bin/sh -c \
		"set -a; $environment; . /etc/ivshmem/pkgtest.conf; set +a; exec $exec_start" \
		>"$out/server.log" 2>&1 &
	activator=$!
	for _ in $(seq 100); do [ -S "$m$listen" ] && break; sleep 0.1; done
	[ -S "$m$listen" ]
	step $? "the socket unit'"'"'s socket is listening at $listen"

	"$IVSHMEM_VMRUN" --server-socket "$m$listen" --server-shm "/dev/shm/$shm_name" run doorbell-service \
		>"$out/vmrun.log" 2>&1
	kill -TERM $activator 2>/dev/null
	pkill -TERM -f "ivshmem-server -F -S $listen" 2>/dev/null
	wait $activator 2>/dev/null
	true
' sh "$(buildroot_dir)" "$ovl" "$IVSHMEM_TOP/$deb" "$shm_name" "$out" "$IVSHMEM_TOP" "$@"

while read -r status what; do result "$status" "$what"; done <"$out/results"
cat "$out/notes" 2>/dev/null
for log in apt verify tmpfiles server; do
	[ -s "$out/$log.log" ] && { echo "# --- $log.log"; tail -n 8 "$out/$log.log" | sed 's/^/#   /'; }
done
if [ -f "$out/vmrun.log" ]; then
	sed 's/^/    /' "$out/vmrun.log"
	summary=$(grep '^vmrun: ' "$out/vmrun.log" | tail -n 1)
	if [[ $summary =~ ^vmrun:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped ]]; then
		pass=$((pass + BASH_REMATCH[1])) fail=$((fail + BASH_REMATCH[2])) skip=$((skip + BASH_REMATCH[3]))
		grep -q "notify\|listening on" "$out/server.log" || true
	else
		result 1 "a doorbell guest on the packaged unit's socket (the runner printed no summary)"
	fi
else
	result 1 "a doorbell guest on the packaged unit's socket (not run)"
fi
grep -q "passed by the service manager" "$out/server.log"
result $? "the server was started by the socket and took it from the manager (server.log)"
rm -rf "$out"
finish
