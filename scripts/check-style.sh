#!/usr/bin/env bash
# Checks .clang-format and .clang-tidy on the C++ files changed since the commit in .style-base
# (committed and uncommitted changes alike). Files older than the base are brought in line
# when next touched: a file that changes is formatted and tidy-clean as a whole.
#
#   scripts/check-style.sh [build-dir]      # build-dir holds compile_commands.json (default: build)
#
# Headers are tidied through the sources that include them, but only changed headers report:
# an old header's findings do not fail a change that merely includes it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

base=$(tr -d '[:space:]' < .style-base)
if ! git rev-parse -q --verify "${base}^{commit}" >/dev/null; then
  echo "check-style: skipped: base ${base} is not in this clone's history (shallow clone?)"
  exit 0
fi

mapfile -t files < <(git diff --name-only --diff-filter=ACMR "$base" -- \
  'libs/**.cc' 'libs/**.h' 'services/**.cc' 'services/**.h' 'tools/**.cc' 'tools/**.h' \
  'tests/**.cc' 'tests/**.h' 'fuzz/**.cc' 'fuzz/**.h' 'bench/**.cc' 'bench/**.h' 'examples/**.cc' 'examples/**.h' | sort -u)
mapfile -t untracked < <(git ls-files --others --exclude-standard -- \
  'libs/**.cc' 'libs/**.h' 'services/**.cc' 'services/**.h' 'tools/**.cc' 'tools/**.h' \
  'tests/**.cc' 'tests/**.h' 'fuzz/**.cc' 'fuzz/**.h' 'bench/**.cc' 'bench/**.h' 'examples/**.cc')
files+=("${untracked[@]}")
if [ ${#files[@]} -eq 0 ]; then
  echo "check-style: no C++ file changed since ${base:0:12}"
  exit 0
fi
echo "check-style: ${#files[@]} C++ files changed since ${base:0:12}"

fail=0
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "check-style: not clang-formatted (run: clang-format -i <file>)" >&2
  fail=1
fi

sources=()
headers_re=""
for f in "${files[@]}"; do
  case "$f" in
    *.cc) sources+=("$f") ;;
    *.h) headers_re+="${headers_re:+|}$(printf '%s' "$PWD/$f" | sed 's/[.[\*^$()+?{}|]/\\&/g')" ;;
  esac
done
if [ ! -f "$build/compile_commands.json" ]; then
  echo "check-style: clang-tidy skipped: no $build/compile_commands.json (configure first)" >&2
elif [ ${#sources[@]} -gt 0 ]; then
  # A header-filter that matches nothing when no header changed.
  filter=${headers_re:-'^$nothing'}
  # Sources not in the compile database (a fixture compiled by a test) are skipped.
  compiled=()
  for f in "${sources[@]}"; do
    grep -q "\"file\": \"$PWD/$f\"" "$build/compile_commands.json" && compiled+=("$f")
  done
  if [ ${#compiled[@]} -gt 0 ] &&
     ! clang-tidy -p "$build" --quiet --header-filter="$filter" "${compiled[@]}" 2>/dev/null; then
    echo "check-style: clang-tidy findings above" >&2
    fail=1
  fi
fi
exit $fail
