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
#   4. guest tests: every suite scenario in QEMU, through ivshmem-vmrun.
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

step "host tests"
log=$(mktemp)
cargo test --locked --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Count every test of every test binary from libtest's summary lines.
read -r hp hf hi < <(awk '/^test result:/ {
	for (i = 1; i <= NF; i++) {
		if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i
	} } END { print p+0, f+0, s+0 }' "$log")
rm -f "$log"
pass=$((pass + hp)) fail=$((fail + hf)) skip=$((skip + hi))
if [ "$status" -ne 0 ] && [ "$hf" -eq 0 ]; then ko "cargo test (did not run to the end)"; fi
[ "$hf" -eq 0 ] || failed_steps+=("$hf host test(s)")
echo "host tests: $hp passed, $hf failed, $hi ignored"

step "guest tests (QEMU)"
if [ $built = 1 ]; then
	set -a
	. build/test/env
	set +a
	log=$(mktemp)
	"$IVSHMEM_VMRUN" suite "$@" 2>&1 | tee "$log"
	summary=$(grep '^vmrun: ' "$log" | tail -n 1)
	rm -f "$log"
	if [[ $summary =~ ^vmrun:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped ]]; then
		pass=$((pass + BASH_REMATCH[1])) fail=$((fail + BASH_REMATCH[2])) skip=$((skip + BASH_REMATCH[3]))
		[ "${BASH_REMATCH[2]}" -eq 0 ] || failed_steps+=("${BASH_REMATCH[2]} guest test(s)")
	else
		ko "guest tests (the runner printed no summary)"
	fi
else
	ko "guest tests (not run: the build failed)"
fi

echo
echo "check took $(((SECONDS - t0) / 60))m$(((SECONDS - t0) % 60))s"
[ ${#failed_steps[@]} -eq 0 ] || printf 'failed: %s\n' "${failed_steps[@]}"
echo "check: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
