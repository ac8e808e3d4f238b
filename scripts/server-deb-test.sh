#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# server-deb-test.sh ENV-FILE...: the ivshmem-server package under a real
# systemd. A Debian system (a throw-away overlay of the trixie build root,
# which has systemd) gets build/deb/ivshmem-server_*.deb with apt, and boots
# with systemd as PID 1 in systemd-nspawn (--boot, a private network). Its
# /run/ivshmem is bound to a host directory, where QEMU on the host reaches
# the socket systemd made, and its /dev/shm to another, where the test sees
# the memory object. Then:
#
#   1. apt-get install of the package (sysusers.d makes its user, tmpfiles.d
#      its directory); ivshmem-server@pkgtest.socket enabled, with
#      /etc/ivshmem/pkgtest.conf; the system boots to "running";
#   2. systemd-analyze verify of both units (any failure fails) and
#      systemd-analyze security of the service (its exposure must stay at or
#      below EXPOSURE_MAX, see below);
#   3. the socket is listening and the service not started; on the host the
#      socket is 0660 with the system's group kvm, in a 0750 directory of
#      user ivshmem-server;
#   4. a client handshake from the host (the packaged ivshmem-client): the
#      service starts through socket activation, takes the socket from the
#      manager, and runs as ivshmem-server with no capability, no new
#      privileges and a seccomp filter;
#   5. a doorbell guest boots against the socket (vmrun scenario
#      doorbell-service, with the paths of ENV-FILE...).
#
# Prints TAP and, last, `server-deb: N passed, N failed, N skipped`.

# The unit's exposure, as systemd-analyze security scores it (0 safest, 10
# unprotected), may not exceed EXPOSURE_MAX, and no check may fail but the
# ones in ACCEPTED. The hardened unit scores 0.2 with trixie's systemd 257
# (the root user's unit before it: 7.2). What is left is what the server
# needs: AF_UNIX sockets; UMask=0007, so that a socket it binds itself is
# group-writable for QEMU; no RemoveIPC=, which would delete the shared
# memory; the host's root directory, which it only reads; ProtectClock='s
# read access to the RTC. 0.5 leaves room for one new check of a newer
# systemd and fails when the server runs as root again (0.4 alone) or loses
# a group of protections (capabilities, system calls, namespaces); any
# single protection dropped fails the list.
EXPOSURE_MAX=0.5
ACCEPTED='RemoveIPC=|RootDirectory=/RootImage=|RestrictAddressFamilies=~AF_UNIX|DeviceAllow=|UMask='

. "$(dirname "$0")/lib.sh"
cd "$IVSHMEM_TOP"
set +e

# Everything below runs in a private mount namespace (the overlay's mount
# dies with it).
if [ "${1:-}" != --in-namespace ]; then
	exec unshare --mount --propagation private -- "$IVSHMEM_TOP/scripts/server-deb-test.sh" --in-namespace "$@"
fi
shift
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
	[ "$1" = 0 ]
}
note() { echo "# $*"; }
finish() {
	echo "server-deb: $pass passed, $fail failed, $skip skipped"
	[ $fail -eq 0 ]
	exit
}

deb=$(ls build/deb/ivshmem-server_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { scripts/build-deb.sh >/dev/null && deb=$(ls build/deb/ivshmem-server_*.deb | head -n 1); }
[ -n "$deb" ] || { result 1 "ivshmem-server package built"; finish; }
command -v systemd-nspawn >/dev/null ||
	{ result 1 "systemd-nspawn on the host (setup-toolchain.sh's HOST_PACKAGES: systemd-container)"; finish; }
in_buildroot dpkg-query -W -f='${Status}' systemd 2>/dev/null | grep -q 'install ok installed' ||
	{ result 1 "systemd in the build root (lib.sh's BUILDROOT_PACKAGES)"; finish; }

ovl=$(overlay_new server)
m=$ovl/merged
machine=ivshmem-pkgtest-$$
run_dir= shm_dir= client= out= nspawn=
cleanup() {
	if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
		# nspawn asks the container's systemd to power off.
		kill -TERM "$nspawn"
		timeout 60 tail --pid="$nspawn" -f /dev/null || kill -KILL "$nspawn"
	fi
	wait 2>/dev/null
	umount "$m" 2>/dev/null
	rm -rf "$ovl" "$run_dir" "$shm_dir" "$client" "$out" "/run/systemd/nspawn/propagate/$machine"
}
trap cleanup EXIT
run_dir=$(mktemp -d /run/ivshmem-pkgtest.XXXXXX)
shm_dir=$(mktemp -d /dev/shm/ivshmem-pkgtest.XXXXXX)
chmod 1777 "$shm_dir" # as /dev/shm itself
client=$(mktemp -d)
out=$(mktemp -d)
mount -t overlay overlay -o "lowerdir=$(buildroot_dir),upperdir=$ovl/upper,workdir=$ovl/work" "$m" ||
	{ result 1 "overlay of the build root mounted"; finish; }
# The build root's systemd (257) needs the unified cgroup hierarchy.
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
run_in() { systemd-nspawn -q -D "$m" --register=no --keep-unit "$@"; }

# 1. Install, configure, enable, boot.
run_in --bind-ro="$IVSHMEM_TOP/$(dirname "$deb"):/mnt/deb" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y --no-install-recommends "/mnt/deb/$(basename "$deb")" >"$out/apt.log" 2>&1
result $? "ivshmem-server installs with apt (in a trixie system)" ||
	{ tail -n 20 "$out/apt.log" | sed 's/^/#   /'; finish; }
shm_name=pkgtest-$$
printf "SIZE=4M\nVECTORS=4\nSHM_NAME=%s\n" "$shm_name" >"$m/etc/ivshmem/pkgtest.conf"
run_in systemctl enable ivshmem-server@pkgtest.socket >"$out/enable.log" 2>&1
result $? "systemctl enable ivshmem-server@pkgtest.socket"

log "server-deb: booting the Debian system with systemd as PID 1 (systemd-nspawn --boot)"
systemd-nspawn --boot -D "$m" --register=no --keep-unit --private-network -M "$machine" \
	--bind="$run_dir:/run/ivshmem" --bind="$shm_dir:/dev/shm" --console=pipe >"$out/boot.log" 2>&1 &
nspawn=$!
init=
for _ in $(seq 300); do
	for p in $(pgrep -P "$nspawn"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ] && init=$p
	done
	[ -n "$init" ] && break
	kill -0 "$nspawn" 2>/dev/null || break
	sleep 0.1
done
# ct CMD...: CMD in the booted system (its namespaces and root).
ct() {
	nsenter -t "$init" -m -u -i -n -p -r -w /usr/bin/env -i LANG=C.UTF-8 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
# The console's tail and the journal's, when something failed.
tails() {
	note "--- console (tail)"
	tail -n 15 "$out/boot.log" | sed 's/^/#   /'
	[ -n "$init" ] && { note "--- journal (tail)"; ct journalctl -b --no-pager -n 30 2>&1 | sed 's/^/#   /'; }
	note "repeat: scripts/server-deb-test.sh $*"
}
if [ -z "$init" ]; then
	result 1 "systemd-nspawn --boot started systemd"
	tails "$@"
	finish
fi
for _ in $(seq 300); do
	ct test -S /run/systemd/private && break
	sleep 0.1
done
state=$(ct timeout 180 systemctl is-system-running --wait 2>&1)
[ "$state" = running ]
result $? "the system boots with systemd as PID 1 (is-system-running: $state)" || {
	ct systemctl --failed --no-legend --no-pager | sed 's/^/#   failed: /'
	tails "$@"
}

# 2. The units, as this systemd sees them.
ct systemd-analyze verify --man=no ivshmem-server@pkgtest.service ivshmem-server@pkgtest.socket \
	>"$out/verify.log" 2>&1
result $? "systemd-analyze verify ivshmem-server@pkgtest.service ivshmem-server@pkgtest.socket" ||
	sed 's/^/#   /' "$out/verify.log"
ct systemd-analyze security --no-pager ivshmem-server@pkgtest.service >"$out/security.log" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for ivshmem-server@pkgtest.service: \([0-9.]*\).*/\1/p' "$out/security.log")
grep '✗' "$out/security.log" | cut -c1-130 | sed 's/ *$//; s/^/#   /'
[ -n "$exposure" ] && awk -v e="$exposure" -v max="$EXPOSURE_MAX" 'BEGIN { exit !(e <= max) }'
result $? "systemd-analyze security: exposure ${exposure:-(none)}, at most $EXPOSURE_MAX" ||
	sed 's/^/#   /' "$out/security.log"
unexpected=$(grep '✗' "$out/security.log" | awk '{ print $2 }' | grep -vxE "$ACCEPTED")
[ -n "$exposure" ] && [ -z "$unexpected" ]
result $? "systemd-analyze security: no failed check but the five the server needs${unexpected:+ (also: $(echo $unexpected))}"

# 3. The socket systemd made, seen from the host.
[ "$(ct systemctl is-active ivshmem-server@pkgtest.socket)" = active ] &&
	[ "$(ct systemctl is-active ivshmem-server@pkgtest.service)" = inactive ]
result $? "the socket unit listens; the service waits for a connection"
sock=$run_dir/pkgtest.sock
kvm_gid=$(ct getent group kvm | cut -d: -f3)
user_uid=$(ct id -u ivshmem-server)
[ -S "$sock" ] && [ -n "$kvm_gid" ] && [ "$(stat -c %a:%g "$sock")" = "660:$kvm_gid" ]
result $? "the socket on the host is 0660, group kvm ($(stat -c %a:%g "$sock" 2>&1), kvm is $kvm_gid)"
[ -n "$user_uid" ] && [ "$(stat -c %a:%u:%g "$run_dir")" = "750:$user_uid:$kvm_gid" ]
result $? "/run/ivshmem is 0750 ivshmem-server:kvm ($(stat -c %a:%u:%g "$run_dir"))"

# 4. A client's handshake starts the service.
dpkg-deb -x "$deb" "$client"
timeout 30 "$client/usr/bin/ivshmem-client" -S "$sock" info >"$out/client.log" 2>&1 &&
	grep -qx 'shm_size: 4194304' "$out/client.log" && grep -qx 'vectors: 4' "$out/client.log"
result $? "a client on the host completes the handshake (4 MiB, 4 vectors)" || sed 's/^/#   /' "$out/client.log"
# journald stores the service's output on its own schedule: --sync first.
ct journalctl --sync
[ "$(ct systemctl is-active ivshmem-server@pkgtest.service)" = active ] &&
	ct journalctl -b --no-pager -u ivshmem-server@pkgtest.service | grep -q "passed by the service manager"
result $? "the connection started the service, which took the socket from systemd"
pid=$(ct systemctl show -P MainPID ivshmem-server@pkgtest.service)
status=$(ct cat "/proc/$pid/status" 2>/dev/null)
echo "$status" | grep -qE "^Uid:\s+$user_uid\s" &&
	echo "$status" | grep -qE '^CapEff:\s+0+$' && echo "$status" | grep -qE '^CapBnd:\s+0+$' &&
	echo "$status" | grep -qE '^NoNewPrivs:\s+1$' && echo "$status" | grep -qE '^Seccomp:\s+2$'
result $? "the server runs as ivshmem-server ($user_uid), no capabilities, no new privileges, seccomp" ||
	echo "$status" | grep -E '^(Uid|Gid|Cap|NoNewPrivs|Seccomp)' | sed 's/^/#   /'
[ -f "$shm_dir/$shm_name" ] && [ "$(stat -c %u "$shm_dir/$shm_name")" = "$user_uid" ]
result $? "the server made /dev/shm/$shm_name as its user"

# What the container leaves out of the unit's sandboxing, as its manager
# logged it.
ct journalctl -b --no-pager -u ivshmem-server@pkgtest.service -u ivshmem-server@pkgtest.socket |
	grep -iE "not supported|unsupported|ignoring|limit" | sed 's/^/# the container: /'

# 5. A doorbell guest on that socket.
"$IVSHMEM_VMRUN" --server-socket "$sock" --server-shm "$shm_dir/$shm_name" run doorbell-service \
	>"$out/vmrun.log" 2>&1
sed 's/^/    /' "$out/vmrun.log"
summary=$(grep '^vmrun: ' "$out/vmrun.log" | tail -n 1)
if [[ $summary =~ ^vmrun:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped ]]; then
	pass=$((pass + BASH_REMATCH[1])) fail=$((fail + BASH_REMATCH[2])) skip=$((skip + BASH_REMATCH[3]))
else
	result 1 "a doorbell guest on the packaged unit's socket (the runner printed no summary)"
fi
[ "$(ct systemctl is-active ivshmem-server@pkgtest.service)" = active ]
result $? "the service is still running after the guest" ||
	ct journalctl -b --no-pager -n 20 -u ivshmem-server@pkgtest.service | sed 's/^/#   /'
finish
