#!/bin/sh
# Splits a binary's debug info off the way distributions do, for one of three lookups:
#   make_stripped.sh buildid    <full> <out> <debug-root>  -> <root>/.build-id/xx/rest.debug
#   make_stripped.sh debuglink  <full> <out>               -> <dir of out>/.debug/<name>.debug
#   make_stripped.sh debuginfod <full> <out> <serve-dir>   -> <serve-dir>/<name>.debug + copy
# <out> is always fully stripped (no .symtab, no DWARF).
set -eu
mode=$1 full=$2 out=$3
name=$(basename "$out")
strip --strip-all -o "$out" "$full"
case "$mode" in
  buildid)
    root=$4
    id=$(readelf -n "$full" | awk '/Build ID:/ {print $3}')
    dir="$root/.build-id/$(echo "$id" | cut -c1-2)"
    mkdir -p "$dir"
    objcopy --only-keep-debug "$full" "$dir/$(echo "$id" | cut -c3-).debug"
    ;;
  debuglink)
    dir="$(dirname "$out")/.debug"
    mkdir -p "$dir"
    objcopy --only-keep-debug "$full" "$dir/$name.debug"
    objcopy --add-gnu-debuglink="$dir/$name.debug" "$out"
    ;;
  debuginfod)
    serve=$4
    mkdir -p "$serve"
    objcopy --only-keep-debug "$full" "$serve/$name.debug"
    cp "$out" "$serve/$name"
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
