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
find_package(nlohmann_json CONFIG REQUIRED)  # OTLP/JSON span decoding (libs/spans)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)     # Kafka client + mock cluster
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)     # Redis symbol cache
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib) # admin, OTLP/HTTP, Pyroscope
pkg_check_modules(LIBBPF REQUIRED IMPORTED_TARGET libbpf)       # agent BPF loader
pkg_check_modules(LIBELF REQUIRED IMPORTED_TARGET libelf)       # build ids, ELF parsing
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
if(FS_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(FS_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
# Symbolization (libs/symbols): LLVM's DebugInfo/Symbolize from the shared libLLVM-14.so, and
# elfutils' debuginfod client.
find_package(LLVM 14 CONFIG REQUIRED PATHS /usr/lib/llvm-14/lib/cmake/llvm NO_DEFAULT_PATH)
find_library(FS_LLVM_DYLIB NAMES LLVM-14 PATHS ${LLVM_LIBRARY_DIR} NO_DEFAULT_PATH REQUIRED)
if(NOT TARGET LLVM14::Dylib)
  add_library(LLVM14::Dylib INTERFACE IMPORTED)
  target_include_directories(LLVM14::Dylib SYSTEM INTERFACE ${LLVM_INCLUDE_DIRS})
  target_link_libraries(LLVM14::Dylib INTERFACE ${FS_LLVM_DYLIB})
endif()
pkg_check_modules(DEBUGINFOD REQUIRED IMPORTED_TARGET libdebuginfod)
