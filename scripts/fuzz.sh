#!/usr/bin/env bash
# libFuzzer harnesses (fuzz/*.cc) for every decoder, under ASan + UBSan:
#   scripts/fuzz.sh [seconds-per-harness] [harness ...]   build the `fuzz` preset (clang), then
#       for each harness: run every file of fuzz/regressions/<harness>/ (regression check), then
#       fuzz for the budget (default 30 s) starting from fuzz/corpus/<harness>/.
#   scripts/fuzz.sh --update-corpus [seconds] [harness ...]   also merge the new inputs found
#       into fuzz/corpus/<harness>/ (otherwise the committed corpus is never modified).
#   scripts/fuzz.sh --make-corpus   regenerate the seed corpora (fuzz/make_corpus.cc, ELF seeds).
# A crash, leak, timeout (10 s) or OOM (2 GiB) is copied to fuzz/regressions/<harness>/ and
# the script exits 1. Prints one summary line per harness and "N passed, N failed".
# FUZZ_JOBS: build parallelism (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

update_corpus=0
make_corpus=0
while [ $# -gt 0 ]; do
  case "$1" in
    --update-corpus) update_corpus=1; shift ;;
    --make-corpus) make_corpus=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
budget="${1:-30}"
[ $# -gt 0 ] && shift
case "$budget" in ''|*[!0-9]*) echo "fuzz.sh: seconds must be a number, got \"$budget\"" >&2; exit 2 ;; esac

build=build-fuzz
jobs="${FUZZ_JOBS:-$(nproc)}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"

t0=$(date +%s)
cmake --preset fuzz >/dev/null
if [ "$make_corpus" = 1 ]; then
  cmake --build "$build" -j"$jobs" --target fuzz_make_corpus
  "$build/fuzz/fuzz_make_corpus" fuzz/corpus
  # ELF seeds: a tiny static executable with a build id and DWARF, its debug file, the
  # stripped executable with a .gnu_debuglink, one without section headers' extras, an object.
  tmp=$(mktemp -d)
  printf 'int x = 1;\nint f(int a) { return a * x; }\nvoid _start(void) { for (;;) f(2); }\n' > "$tmp/tiny.c"
  gcc -Os -g -nostdlib -static -fno-asynchronous-unwind-tables -Wl,--build-id=sha1 -Wl,-n \
    -Wl,--no-warn-rwx-segments -o "$tmp/exe-debug" "$tmp/tiny.c" 2>/dev/null ||
    gcc -Os -g -nostdlib -static -fno-asynchronous-unwind-tables -Wl,--build-id=sha1 -Wl,-n \
      -o "$tmp/exe-debug" "$tmp/tiny.c"
  objcopy --only-keep-debug "$tmp/exe-debug" "$tmp/exe.debug"
  (cd "$tmp" && objcopy --strip-debug --add-gnu-debuglink=exe.debug exe-debug exe-stripped)
  objcopy --strip-all --remove-section=.comment "$tmp/exe-stripped" "$tmp/exe-sstrip"
  gcc -c -Os -o "$tmp/obj.o" "$tmp/tiny.c"
  mkdir -p fuzz/corpus/elf
  cp "$tmp"/{exe-debug,exe.debug,exe-stripped,exe-sstrip,obj.o} fuzz/corpus/elf/
  # unwind_table seeds: a program with CFI (calls, a leaf, an alloca frame on rbp) as
  # .eh_frame + .eh_frame_hdr, as .eh_frame without the header, and as .debug_frame only.
  printf '%s\n' 'int g(int a);' 'int f(int a) { return g(a) + 1; }' \
    'int g(int a) { volatile char b[64]; b[a & 63] = 1; return b[3]; }' \
    'int h(int n) { char* p = __builtin_alloca(n); p[0] = 1; return f(p[0]); }' \
    'void _start(void) { for (;;) h(8); }' > "$tmp/cfi.c"
  cfi_flags=(-O1 -nostdlib -static -s -fno-stack-protector -Wl,--build-id=sha1 -Wl,-n)
  gcc "${cfi_flags[@]}" -fasynchronous-unwind-tables -Wl,--eh-frame-hdr -o "$tmp/eh-frame" "$tmp/cfi.c"
  gcc "${cfi_flags[@]}" -fasynchronous-unwind-tables -Wl,--no-eh-frame-hdr -o "$tmp/eh-frame-nohdr" "$tmp/cfi.c"
  gcc -O1 -g -nostdlib -static -fno-stack-protector -fno-asynchronous-unwind-tables \
    -Wl,--build-id=sha1 -Wl,-n -o "$tmp/debug-frame" "$tmp/cfi.c"
  objcopy --remove-section=.debug_info --remove-section=.debug_line --remove-section=.debug_str \
    --remove-section=.debug_abbrev --remove-section=.debug_aranges --remove-section=.comment \
    --remove-section=.debug_line_str "$tmp/debug-frame"
  mkdir -p fuzz/corpus/unwind_table
  cp "$tmp"/{eh-frame,eh-frame-nohdr,debug-frame} fuzz/corpus/unwind_table/
  rm -rf "$tmp"
  du -sh fuzz/corpus
  exit 0
fi

if [ $# -gt 0 ]; then
  harnesses=("$@")
else
  mapfile -t harnesses < <(grep -l LLVMFuzzerTestOneInput fuzz/*.cc | xargs -n1 basename | sed 's/\.cc$//' | sort)
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build "$build" -j"$jobs" --target "${targets[@]}"
t_build=$(( $(date +%s) - t0 ))
echo "fuzz: built ${#harnesses[@]} harnesses in ${t_build}s; ${budget}s each"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
logs=$(mktemp -d)
passed=0
failed=0
summary=()
for h in "${harnesses[@]}"; do
  bin="$build/fuzz/fuzz_$h"
  corpus="fuzz/corpus/$h"
  regress="fuzz/regressions/$h"
  log="$logs/$h.log"
  mkdir -p "$corpus"
  result="ok"

  # 1. Regression inputs: each must run clean.
  nreg=0
  if [ -d "$regress" ]; then
    mapfile -t reg_files < <(find "$regress" -type f ! -name '*.md' | sort)
    nreg=${#reg_files[@]}
    if [ "$nreg" -gt 0 ] && ! "$bin" -rss_limit_mb=2048 -timeout=10 "${reg_files[@]}" >"$log.regress" 2>&1; then
      result="REGRESSION FAILED"
      echo "---- fuzz $h: a regression input fails again:"
      grep -E "^Running:|ERROR|runtime error|invariant failed" "$log.regress" | tail -20 || true
      tail -40 "$log.regress"
    fi
  fi

  # 2. Fuzzing for the budget, new inputs into a fresh directory.
  out=$(mktemp -d)
  artifacts=$(mktemp -d)
  runs=0
  secs=0
  if [ "$result" = ok ]; then
    h_start=$(date +%s)
    if ! "$bin" -max_total_time="$budget" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "$out" "$corpus" >"$log" 2>&1; then
      result="CRASH"
    fi
    if line=$(grep -E "^Done [0-9]+ runs in [0-9]+ second" "$log" | tail -1); then
      runs=$(echo "$line" | awk '{print $2}')
      secs=$(echo "$line" | awk '{print $5}')
    else
      # No "Done" line after a crash: the final stats and the wall time.
      runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo 0)
      secs=$(( $(date +%s) - h_start ))
    fi
    if [ "$result" != ok ]; then
      mkdir -p "$regress"
      saved=()
      for a in "$artifacts"/*; do
        [ -f "$a" ] || continue
        dest="$regress/$(basename "$a")"
        cp "$a" "$dest"
        saved+=("$dest")
      done
      echo "---- fuzz $h: found a failure; the report:"
      grep -nE "ERROR: |runtime error|invariant failed|SUMMARY" "$log" | head -10 || true
      sed -n '/==ERROR\|runtime error\|invariant failed\|ALARM\|out-of-memory/,$p' "$log" | head -60
      echo "---- saved to: ${saved[*]:-(no artifact written)}"
      echo "     reproduce: $bin ${saved[0]:-<input>}"
      echo "     fix the bug, keep the input in $regress/ (every fuzz.sh run replays it) and commit both."
    elif [ "$update_corpus" = 1 ]; then
      "$bin" -merge=1 -rss_limit_mb=2048 -timeout=10 "$corpus" "$out" >"$log.merge" 2>&1 || true
    fi
  fi
  rm -rf "$out" "$artifacts"
  if [ "$result" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  line=$(printf 'fuzz %-18s %10s runs in %3ss, %d regression inputs, %s' "$h" "$runs" "$secs" "$nreg" "$result")
  echo "$line"
  summary+=("$line")
done
rm -rf "$logs"

echo
echo "fuzz summary ($(( $(date +%s) - t0 ))s total, build ${t_build}s):"
for l in "${summary[@]}"; do echo "  $l"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
