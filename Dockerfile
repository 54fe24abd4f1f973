# syntax=docker/dockerfile:1
# Flamestream container images, Debian 12 (bookworm) based.
#
#   docker build --target agent      -t flamestream/agent:dev .       # runs as root (eBPF)
#   docker build --target symbolizer -t flamestream/symbolizer:dev .  # uid 10001
#   docker build --target correlator -t flamestream/correlator:dev .  # uid 10001
#   docker build --target exporter   -t flamestream/exporter:dev .    # uid 10001
#   docker build --target debuginfod -t flamestream/debuginfod:dev .  # elfutils debuginfod, uid 10001
#   docker build -t flamestream/flamestream:dev .                     # every binary (default target)
#
# Every service image takes its settings from `--config FILE`, FLAMESTREAM_* variables or flags
# (see README.md); without arguments it only moves the admin listener (/metrics, /healthz,
# /readyz) to 0.0.0.0 so probes can reach it. Runtime stages install Debian 12's shared
# libraries by package name (soname-versioned names such as libgrpc++1.51 pin the ABI; the
# Debian revision is left to the archive so security updates apply) and fail the build if
# `ldd` finds any library missing.

ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
# build: the same toolchain and -dev packages as a developer machine (scripts/install-deps.sh).
FROM debian:${DEBIAN_RELEASE} AS build
ENV DEBIAN_FRONTEND=noninteractive CCACHE_DIR=/ccache
WORKDIR /src
# Copied alone first so the dependency layer is cached until the package list changes.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# Release preset: -O3-ish, frame pointers kept (Flamestream profiles itself, too), no tests;
# benchmarks are not shipped either. ccache lives in a BuildKit cache mount across builds.
RUN --mount=type=cache,target=/ccache \
    cmake --preset release -DFS_BUILD_BENCH=OFF \
 && cmake --build --preset release -j"$(nproc)" \
 && mkdir -p /out/bin \
 && cp build-release/bin/flamestream-* /out/bin/ \
 && if [ -x build-release/bin/flamestream ]; then cp build-release/bin/flamestream /out/bin/; fi \
 && ls -l /out/bin

# ---------------------------------------------------------------------------------------------
# runtime-base: libraries every service links (Kafka client, schemas, config, admin HTTP).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime-base
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates tini \
      libstdc++6 libssl3 zlib1g libzstd1 libfmt9 libyaml-cpp0.7 libcpp-httplib0.11 \
      librdkafka1 libprotobuf32 libgrpc++1.51 libgrpc29 libabsl20220623 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 flamestream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/flamestream \
      --shell /usr/sbin/nologin flamestream \
 && install -d -o 10001 -g 10001 /var/lib/flamestream /var/cache/flamestream \
 && install -d /etc/flamestream
# libdebuginfod's client cache (symbolizer) and the file sink's default directory stay writable
# for the non-root user; mount volumes there to keep them across restarts.
ENV HOME=/var/lib/flamestream DEBUGINFOD_CACHE_PATH=/var/cache/flamestream/debuginfod
WORKDIR /var/lib/flamestream

# ---------------------------------------------------------------------------------------------
# agent: eBPF sampler, one per node. Needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE,
# CAP_SYS_RESOURCE), the host pid namespace, /sys/fs/bpf and /sys/kernel/debug, so this is the
# one image that keeps USER root. Its --print mode symbolizes locally (LLVM, elfutils).
FROM runtime-base AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libbpf1 libelf1 libdw1 libdebuginfod1 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d /var/lib/flamestream/spool
COPY --from=build /out/bin/flamestream-agent /out/bin/flamestream-dwarf-worker /usr/local/bin/
RUN if ldd /usr/local/bin/flamestream-agent | grep 'not found'; then exit 1; fi
USER root
EXPOSE 9400
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/flamestream-agent"]
CMD ["--admin-listen", "0.0.0.0:9400"]

# ---------------------------------------------------------------------------------------------
# symbolizer: DWARF via LLVM 14 and elfutils, debuginfod client, Redis cache (hiredis).
FROM runtime-base AS symbolizer
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libdw1 libdebuginfod1 libelf1 libhiredis0.14 \
 && rm -rf /var/lib/apt/lists/*
# The DWARF worker parses debug info in its own process (a corrupt file kills it, not the stage).
COPY --from=build /out/bin/flamestream-symbolizer /out/bin/flamestream-dwarf-worker /usr/local/bin/
RUN for b in flamestream-symbolizer flamestream-dwarf-worker; do \
      if ldd /usr/local/bin/$b | grep 'not found'; then exit 1; fi; done
USER 10001:10001
EXPOSE 9401
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/flamestream-symbolizer"]
CMD ["--admin-listen", "0.0.0.0:9401"]

# ---------------------------------------------------------------------------------------------
# correlator: span router (OTLP gRPC 4317, OTLP/HTTP 4318) and the sample/span join.
FROM runtime-base AS correlator
COPY --from=build /out/bin/flamestream-correlator /usr/local/bin/
RUN if ldd /usr/local/bin/flamestream-correlator | grep 'not found'; then exit 1; fi
USER 10001:10001
EXPOSE 9402 4317 4318
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/flamestream-correlator"]
CMD ["--admin-listen", "0.0.0.0:9402"]

# ---------------------------------------------------------------------------------------------
# exporter: Pyroscope push, OTLP profiles, pprof files.
FROM runtime-base AS exporter
RUN install -d -o 10001 -g 10001 /var/lib/flamestream/out
COPY --from=build /out/bin/flamestream-exporter /usr/local/bin/
RUN if ldd /usr/local/bin/flamestream-exporter | grep 'not found'; then exit 1; fi
USER 10001:10001
EXPOSE 9403
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/flamestream-exporter"]
CMD ["--admin-listen", "0.0.0.0:9403"]

# ---------------------------------------------------------------------------------------------
# debuginfod: elfutils' server for the symbolizer's DEBUGINFOD_URLS. Indexes ELF/DWARF files
# under /srv/debuginfo (mount your debug files or .build-id tree there) every 60 s.
FROM debian:${DEBIAN_RELEASE}-slim AS debuginfod
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends debuginfod tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 debuginfod-user \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/cache/debuginfod \
      --shell /usr/sbin/nologin debuginfod-user \
 && install -d -o 10001 -g 10001 /var/cache/debuginfod /srv/debuginfo
USER 10001:10001
EXPOSE 8002
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/bin/debuginfod"]
CMD ["--port=8002", "--database=/var/cache/debuginfod/debuginfod.sqlite", "--rescan-time=60", \
     "--scan-file-dir", "/srv/debuginfo"]

# ---------------------------------------------------------------------------------------------
# flamestream (default target): every binary, e.g. for `flamestream topics create` jobs or a
# one-image deployment (`--entrypoint flamestream-symbolizer`). Non-root; give the agent
# `--user 0` and the privileges above when you run it from this image.
FROM runtime-base AS flamestream
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libbpf1 libelf1 libdw1 libdebuginfod1 libhiredis0.14 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o 10001 -g 10001 /var/lib/flamestream/out /var/lib/flamestream/spool
COPY --from=build /out/bin/ /usr/local/bin/
RUN if ldd /usr/local/bin/flamestream* | grep 'not found'; then exit 1; fi
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["flamestream-symbolizer", "--help"]
