# Every third-party dependency, found once. All come from Debian 12 packages
# (scripts/install-deps.sh); README.md says why each is here.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)          # flat_hash_map in hot paths (not Status: see status.h)
find_package(fmt CONFIG REQUIRED)           # string formatting (std::format is C++20 but not in GCC 12)
find_package(Protobuf REQUIRED)             # schemas (proto/)
find_package(gRPC CONFIG REQUIRED)          # OTLP gRPC receivers and exporters
find_package(yaml-cpp CONFIG REQUIRED)      # config files
find_package(ZLIB REQUIRED)                 # gzip for pprof files and HTTP bodies
find_package(OpenSSL 3 REQUIRED)            # TLS of the OTLP receivers and the admin listener
find_package(nlohmann_json CONFIG REQUIRED)  # OTLP/JSON span decoding (libs/spans)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)     # Kafka client + mock cluster
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)     # Redis symbol cache
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib) # admin, OTLP/HTTP, Pyroscope
pkg_check_modules(LIBBPF REQUIRED IMPORTED_TARGET libbpf)       # agent BPF loader
pkg_check_modules(LIBELF REQUIRED IMPORTED_TARGET libelf)       # build ids, ELF parsing
pkg_check_modules(LIBDW REQUIRED IMPORTED_TARGET libdw)         # CFI -> unwind tables (libs/unwind)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
if(FS_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(FS_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
# Symbolization (libs/symbols): LLVM's DebugInfo/Symbolize, linked statically into the
# flamestream-dwarf-worker process only (libs/symbols/CMakeLists.txt), and elfutils' debuginfod
# client.
find_package(LLVM 14 CONFIG REQUIRED PATHS /usr/lib/llvm-14/lib/cmake/llvm NO_DEFAULT_PATH)
pkg_check_modules(DEBUGINFOD REQUIRED IMPORTED_TARGET libdebuginfod)
