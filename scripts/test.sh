#!/usr/bin/env bash
# The project's one test command (README quick start, .ci/run):
#   dependencies -> configure -> build -> every test via ctest -> non-zero on any failure.
# Under CI=true it also builds the `asan` preset (ASan + UBSan) and runs the unit tests there,
# then builds the `fuzz` preset (clang) and runs every libFuzzer harness briefly (scripts/fuzz.sh).
# Tests labelled requires_root load BPF: they run as root (CI is root) and skip with a printed
# reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "dependencies"
bash scripts/install-deps.sh

if [ "$(id -u)" -eq 0 ]; then
  # BPF needs bpffs; BPF stats and kallsyms want debugfs/tracefs on some kernels.
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
  mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
  mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi

jobs=$(nproc)
step "configure + build (default preset)"
cmake --preset default >/dev/null
cmake --build --preset default -j"$jobs"

step "style (.clang-format, .clang-tidy) on files changed since .style-base"
bash scripts/check-style.sh build

step "tests (default preset)"
# Tests that sample CPU or time themselves are RUN_SERIAL; the rest run two at a time.
ctest --preset default -j2 --timeout 600

if [ "${CI:-}" = "true" ]; then
  step "configure + build (asan preset)"
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j"$jobs"
  step "unit tests under ASan + UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset asan -j2 --timeout 600
  step "fuzz harnesses (clang, ASan + UBSan, 15s each)"
  bash scripts/fuzz.sh 15
fi

step "all tests passed"
