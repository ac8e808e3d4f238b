#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check.sh: the whole test suite (`make check`, called by .ci/run).
#
#   1. build everything (toolchain, test kernel, module with CLIPPY=1,
#      static harness, host tools);
#   2. lint: rustfmt of the module and the workspace, clippy of the
#      workspace, the release kernel's config;
#   3. host tests: cargo test for the workspace (KTAP, runner, server...);
#   4. guest tests: every suite scenario in QEMU, through ivshmem-vmrun,
#      on the project's debug kernel (for the sanitizers), then the stress
#      campaign's fixed-seed slice (`ivshmem-vmrun stress --quick`);
#   5. Debian's stock kernels, trixie-backports' 7.3.x and sid's 7.2.x: for
#      each, the ivshmem-dkms package is installed with apt into a Debian
#      system of the kernel's suite with its headers (DKMS builds the
#      module; the kernel hook rebuilds it; it rebuilds without the source
#      package; DKMS skips unsupported kernels and the package's hook says
#      why; on sid the system is a minimal one, so apt pulls every
#      dependency and DKMS prepares the kernel from nothing), and the whole guest suite runs again on that kernel with
#      the module DKMS built, plus the scenarios that boot a Debian root
#      (autoload by udev); build-debian-module.sh's refusals are checked
#      (trixie); the module is built for trixie-backports' newest 7.2.x,
#      whose rustc (1.85.1) is older than sid's;
#      lintian (trixie's) on both packages, which fails on any error;
#   6. the ivshmem-server package under a real systemd: installed with apt
#      into a Debian system that boots with systemd as PID 1 in
#      systemd-nspawn; its units verified and scored (systemd-analyze), its
#      socket activated by systemd, a client and a doorbell guest on that
#      socket from the host.
#
# Every step runs even when an earlier one failed (unless it needs what
# failed). The last line is the summary: `check: N passed, N failed, N skipped`.
# Arguments are passed to `ivshmem-vmrun suite` as scenario filters.

. "$(dirname "$0")/lib.sh"
set +e
cd "$IVSHMEM_TOP"

pass=0 fail=0 skip=0
failed_steps=()
t0=$SECONDS

step() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
ok() { pass=$((pass + 1)); echo "ok: $1"; }
sk() { skip=$((skip + 1)); echo "SKIP: $1"; }
ko() { fail=$((fail + 1)); failed_steps+=("$1"); echo "FAILED: $1"; }

step "build"
if scripts/build-all.sh test; then
	ok build
	built=1
else
	ko build
	built=0
fi

step "lint"
if [ $built = 1 ]; then
	kdir=$(. build/test/env && echo "$IVSHMEM_KDIR")
	ksrc=$(kernel_src_dir)
	if in_buildroot rustfmt --check --edition 2021 --config-path "$ksrc/.rustfmt.toml" rust/*.rs rust/raw/*.rs; then
		ok "rustfmt (module)"
	else
		ko "rustfmt (module)"
	fi
fi
if [ $built = 1 ]; then
	# The release flavour is built on demand (benchmarks); its config is
	# checked here so that it cannot rot.
	if scripts/build-kernel.sh release --config-only >/dev/null; then
		ok "kernel config (release)"
	else
		ko "kernel config (release)"
	fi
fi
if cargo fmt --all --check; then ok "rustfmt (workspace)"; else ko "rustfmt (workspace)"; fi
if cargo clippy --locked --workspace --all-targets -- -D warnings; then
	ok "clippy (workspace)"
else
	ko "clippy (workspace)"
fi

step "libvirt recipes (docs/libvirt) against libvirt's schema"
for f in docs/libvirt/*.xml; do
	if virt-xml-validate "$f" domain; then ok "libvirt: $f"; else ko "libvirt: $f"; fi
done

step "host tests"
log=$(mktemp)
# Built first, then run under a bound: a test that hangs fails this step in
# minutes (libtest names it: "has been running for over 60 seconds")
# instead of holding the whole check until CI's own limit.
host_limit=${IVSHMEM_HOST_TEST_LIMIT:-900}
cargo test --locked --workspace --no-run 2>&1 | tail -n 3
timeout -k 30 "$host_limit" cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Count every test of every test binary from libtest's summary lines; an
# ignored test is a skip (one whose tool is missing here is reported as
# ignored, with a `SKIP name: reason` line: see userspace-test/needs).
read -r hp hf hi < <(awk '/^test result:/ {
	for (i = 1; i <= NF; i++) {
		if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i
	} } END { print p+0, f+0, s+0 }' "$log")
rm -f "$log"
pass=$((pass + hp)) fail=$((fail + hf)) skip=$((skip + hi))
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
	ko "host tests did not finish within ${host_limit}s (a hung test is named above)"
elif [ "$status" -ne 0 ] && [ "$hf" -eq 0 ]; then
	ko "cargo test (did not run to the end)"
fi
[ "$hf" -eq 0 ] || failed_steps+=("$hf host test(s)")
echo "host tests: $hp passed, $hf failed, $hi ignored (skipped)"

# guest_suite WHAT ENV-FILE... -- VMRUN-ARGS...: `ivshmem-vmrun VMRUN-ARGS`
# with the paths of the env files (later ones override), its counts added
# to the summary.
guest_suite() {
	local what=$1 log summary envs=()
	shift
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	log=$(mktemp)
	(
		set -a
		for f in "${envs[@]}"; do . "$f"; done
		set +a
		"$IVSHMEM_VMRUN" "$@"
	) 2>&1 | tee "$log"
	summary=$(grep -a '^vmrun: ' "$log" | tail -n 1)
	rm -f "$log"
	if [[ $summary =~ ^vmrun:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped ]]; then
		pass=$((pass + BASH_REMATCH[1])) fail=$((fail + BASH_REMATCH[2])) skip=$((skip + BASH_REMATCH[3]))
		[ "${BASH_REMATCH[2]}" -eq 0 ] || failed_steps+=("${BASH_REMATCH[2]} guest test(s) on the $what")
		echo "guest tests on the $what: ${BASH_REMATCH[1]} passed, ${BASH_REMATCH[2]} failed, ${BASH_REMATCH[3]} skipped"
	else
		ko "guest tests on the $what (the runner printed no summary)"
	fi
}
filters=("$@")

step "guest tests (QEMU), project debug kernel"
if [ $built = 1 ]; then
	guest_suite "debug kernel" build/test/env -- suite "${filters[@]}"
else
	ko "guest tests (not run: the build failed)"
fi

step "stress campaign, the fixed-seed slice (make stress runs it all), project debug kernel"
if [ $built = 1 ] && [ ${#filters[@]} -eq 0 ]; then
	guest_suite "debug kernel (stress slice)" build/test/env -- stress --quick
elif [ $built = 1 ]; then
	sk "stress slice (scenario filters given)"
else
	ko "stress slice (not run: the build failed)"
fi

# The stock kernels whose whole suite runs, each with the module DKMS built
# in a Debian system of its suite; then the one that is only built.
deb=
step "the Debian packages (ivshmem-dkms, ivshmem-server)"
if [ $built = 1 ] && deb=$(scripts/build-deb.sh); then
	ok "Debian packages built"
	if scripts/lintian.sh; then
		ok "lintian (trixie) on both packages: no error"
	else
		ko "lintian (trixie) on the packages: errors above"
	fi
else
	ko "Debian packages (build)"
fi
declare -A dkms=()
for k in trixie sid; do
	step "Debian stock kernel ($k): the ivshmem-dkms package, installed with apt, built by DKMS"
	dkms[$k]=0
	# On sid, into a minimal system (debootstrap minbase, the kernel's
	# headers and modules): apt must pull every dependency, and DKMS
	# prepares the kernel's Rust metadata from nothing (review D2).
	minimal=()
	[ "$k" = sid ] && minimal=(--minimal)
	if [ -n "$deb" ] && IVSHMEM_DEB=$deb scripts/dkms-install.sh "${minimal[@]}" "$k"; then
		ok "ivshmem-dkms ($k${minimal:+, minimal system}): installed with apt, built by DKMS, rebuilt by the kernel hook and without the source package; unsupported kernels skipped with the reason"
		dkms[$k]=1
	else
		ko "ivshmem-dkms ($k) (build or install)"
	fi
	if [ "$k" = trixie ] && [ "${dkms[$k]}" = 1 ]; then
		tap=$(mktemp)
		(
			stock_profile trixie
			BUILDROOT_LAYER=$(cat build/dkms/trixie/layer) in_buildroot sh scripts/test-build-debian-module.sh
		) 2>&1 | tee "$tap"
		tp=$(grep -ac '^ok ' "$tap") tf=$(grep -ac '^not ok ' "$tap")
		plan=$(grep -a '^1\.\.' "$tap" | head -n 1)
		rm -f "$tap"
		pass=$((pass + tp)) fail=$((fail + tf))
		if [ "$plan" != "1..$((tp + tf))" ] || [ "$tp" -eq 0 ]; then
			ko "build-debian-module refusals (plan '$plan', $((tp + tf)) results)"
		elif [ "$tf" -ne 0 ]; then
			failed_steps+=("$tf build-debian-module refusal test(s)")
		fi
	fi
	step "guest tests (QEMU), Debian stock kernel ($k) with the DKMS-built module"
	if [ "${dkms[$k]}" = 1 ]; then
		guest_suite "Debian stock kernel ($k, $(cat "build/dkms/$k/release"))" build/test/env "build/dkms/$k/env" -- suite "${filters[@]}"
	else
		ko "guest tests on the Debian stock kernel ($k) (not run: no DKMS-built module)"
	fi
done

step "Debian stock kernel (trixie-7.2, rustc 1.85.1): the module builds (no suite)"
if [ $built = 1 ] && scripts/build-stock.sh trixie-7.2; then
	ok "module built for trixie-backports' 7.2 ($(cat build/stock/trixie-7.2/release 2>/dev/null))"
else
	ko "module build for trixie-backports' 7.2"
fi

step "make bench --quick (tiny sizes, few repetitions: only so that it cannot rot; no timing asserted)"
if [ "${dkms[trixie]}" = 1 ]; then
	if (
		set -a
		. build/test/env
		. build/dkms/trixie/env
		set +a
		"$IVSHMEM_VMRUN" bench --quick --out build/bench/check
	); then
		ok "make bench --quick"
	else
		ko "make bench --quick"
	fi
else
	ko "make bench --quick (not run: no DKMS-built module)"
fi

step "host packaging: ivshmem-server's .deb under systemd (nspawn), a guest on the socket it makes"
if [ "${dkms[trixie]}" = 1 ]; then
	log=$(mktemp)
	scripts/server-deb-test.sh build/test/env build/dkms/trixie/env 2>&1 | tee "$log"
	summary=$(grep -a '^server-deb: ' "$log" | tail -n 1)
	rm -f "$log"
	if [[ $summary =~ ^server-deb:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped ]]; then
		pass=$((pass + BASH_REMATCH[1])) fail=$((fail + BASH_REMATCH[2])) skip=$((skip + BASH_REMATCH[3]))
		[ "${BASH_REMATCH[2]}" -eq 0 ] || failed_steps+=("${BASH_REMATCH[2]} ivshmem-server package test(s)")
	else
		ko "ivshmem-server package test (no summary)"
	fi
else
	ko "ivshmem-server package test (not run: the packages were not built)"
fi

echo
echo "check took $(((SECONDS - t0) / 60))m$(((SECONDS - t0) % 60))s"
[ ${#failed_steps[@]} -eq 0 ] || printf 'failed: %s\n' "${failed_steps[@]}"
echo "check: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
