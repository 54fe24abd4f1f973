#!/usr/bin/env bash
# Installs exactly the Debian 12 packages Flamestream needs to build, test and run locally.
# Non-interactive and idempotent: when everything is present it only checks and exits.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  clang llvm            # clang -target bpf compiles bpf/*.bpf.c; llvm-strip for BPF objects
  # eBPF
  bpftool libbpf-dev libelf-dev zlib1g-dev linux-perf
  # Kafka
  librdkafka-dev kcat
  # schemas and RPC
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc libabsl-dev
  # caches, config, HTTP, CLI
  libhiredis-dev redis-server libyaml-cpp-dev libcpp-httplib-dev libssl-dev openssl libzstd-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev
  # symbolization
  llvm-14-dev libdw-dev libdebuginfod-dev debuginfod elfutils binutils
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev googletest util-linux procps iproute2 curl
  libc6-dbg             # libs/unwind tests: local libc symbols (clone3) from its debug file
  chromium bpftrace
  # deploy checks: scripts/check-deploy.sh validates docker-compose.yml offline (kubectl ships separately)
  docker-compose
)
# Node.js (OpenTelemetry SDK test app, flame graph bundle): the machine image may ship its own.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PACKAGES[@]} packages present"
fi
