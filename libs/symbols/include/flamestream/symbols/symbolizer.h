// Resolves (build id, file offset) frames to functions, files, lines and inlined call chains.
//
//   SymbolizerConfig config;                       // defaults: /usr/lib/debug, debuginfod on
//   auto symbolizer = Symbolizer::Create(config);  // Result<std::unique_ptr<Symbolizer>>
//   std::vector<FrameRequest> frames = {
//       {.build_id = "4f1e...", .path_hint = "/usr/lib/libfoo.so", .file_offset = 0x1a2b,
//        .is_return_address = true}};
//   std::vector<LocationPtr> out = (*symbolizer)->ResolveBatch(frames);
//   // out[0]->frames: innermost first; out[0]->resolved == false -> "libfoo.so+0x1a2b"
//
// Lookup order per frame: in-process LRU, then the optional shared SymbolCache (Redis), then
// resolution: DebugLocator finds the debug file, LLVM's DebugInfo/Symbolize (the library inside
// llvm-symbolizer; README.md says why) reads DWARF in the flamestream-dwarf-worker process
// (this library does not link LLVM; dwarf_engine.h for in-process parsing), falling back to
// .symtab/.dynsym. Open debug
// files stay in a cache bounded by count and bytes; a build id found nowhere, or whose files are
// corrupt, is negatively cached for `negative_ttl` and its frames come back unresolved.
// With a shared cache, build ids that no replica found anywhere are shared as negative entries
// too (SymbolCache::GetUnknownBuildIds), so one replica's failed search (debug dirs,
// debuginfod) is not repeated by the others.
// debuginfod downloads run on a bounded worker pool, never under the resolution lock; a batch
// waits for them at most `debuginfod_batch_deadline`.
// Thread-safe: cache lookups run in parallel, resolution is serialized (LLVM's symbolizer is
// single-threaded); run one Symbolizer per core for parallel cold resolution.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/symbols/debug_locator.h"
#include "flamestream/symbols/location.h"
#include "flamestream/symbols/symbol_cache.h"

namespace flamestream::symbols {

class DwarfEngine;  // flamestream/symbols/dwarf_engine.h

struct SymbolizerConfig {
  LocatorConfig locator;
  // In-process LRU of resolved locations, in bytes.
  size_t lru_bytes = size_t{256} << 20;
  // Open debug files kept mapped: at most this many, and at most this many bytes of files.
  size_t max_open_files = 64;
  uint64_t max_open_bytes = uint64_t{4} << 30;
  // How long a build id that could not be found (or opened) stays unresolvable before the
  // locator tries again (debug info may be uploaded to debuginfod later).
  std::chrono::nanoseconds negative_ttl = kDefaultNegativeTtl;
  // Parse DWARF only in a worker process started by Create() (and again after it dies), so
  // DWARF that crashes or hangs LLVM 14's parser becomes an error for its build id instead of
  // taking this process down. Costs one process start per Symbolizer (a few ms) and a socket
  // round trip per file per batch; turn off only for trusted debug info (then DWARF is parsed
  // in this process by `dwarf_engine`, which must be set).
  bool probe_debug_info = true;
  // The worker executable (flamestream-dwarf-worker). Empty: $FLAMESTREAM_DWARF_WORKER, else
  // next to this executable, else ../bin/. When none is found, Create() fails naming the paths
  // it looked at, unless `dwarf_engine` is set: then the worker is a fork of this process
  // (equally safe, slower to start).
  std::string dwarf_worker;
  // How long the worker may take to answer one request (open a file, or look up a batch of
  // its addresses) before it counts as hung: it is killed, that file becomes an error for its
  // build id, and the next request starts a new worker.
  std::chrono::milliseconds dwarf_timeout{60'000};
  // DWARF parsing in this process (LlvmDwarfEngine() from flamestream::symbols_dwarf, which
  // links LLVM; dwarf_engine.h). Null by default, so processes that only talk to the worker do
  // not map libLLVM. Needed for probe_debug_info = false and for the fork fallback.
  std::shared_ptr<const DwarfEngine> dwarf_engine;
  // The longest one ResolveBatch waits for debuginfod downloads its frames need (they run on
  // the locator's worker pool, LocatorConfig::debuginfod_*). Frames whose download is still
  // pending then come back unresolved, are counted (Stats::pending_debuginfo) and are not
  // cached: a later batch names them once the download finished. Each build id is waited
  // for at most this long in total, by the batches that find it pending (a slow download
  // does not slow every batch after the first). 0: never wait. The
  // single-address calls (resolve mode) wait for the download itself.
  std::chrono::nanoseconds debuginfod_batch_deadline = std::chrono::seconds(2);
  // Negative entries (build ids found nowhere, corrupt files) kept at most; expired ones go
  // first, then arbitrary ones.
  size_t max_negative_entries = 100'000;
  // Clock for the negative cache; tests inject a fake one.
  std::function<std::chrono::steady_clock::time_point()> now = [] {
    return std::chrono::steady_clock::now();
  };
};

struct FrameRequest {
  std::string_view build_id;   // lower-case hex; may be empty when path_hint names the file
  std::string_view path_hint;  // the path the process mapped the file from
  uint64_t file_offset = 0;
  // Non-leaf frames hold return addresses, which point after the call; they are looked up at
  // offset - 1 so the call's own line (and inline chain) is reported.
  bool is_return_address = false;
};

class Symbolizer {
 public:
  // `shared_cache` (may be null) must outlive the Symbolizer.
  [[nodiscard]] static Result<std::unique_ptr<Symbolizer>> Create(
      SymbolizerConfig config, SymbolCache* shared_cache = nullptr);
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // One location per request, same order. Never fails: frames that cannot be resolved come
  // back with resolved == false and display_name "basename+0xoffset".
  std::vector<LocationPtr> ResolveBatch(std::span<const FrameRequest> frames);

  // Resolve mode, llvm-symbolizer's semantics: `address` is an ELF virtual address in the file
  // at `path` (debug info located from it). Errors name the file or build id. These calls (and
  // the offset ones below) wait for a debuginfod download they need, holding the resolution
  // lock: meant for resolve mode, not next to a stage's ResolveBatch.
  [[nodiscard]] Result<Location> ResolvePathAddress(const std::string& path, uint64_t address);
  // The same for a build id; `path_hint` may be empty.
  [[nodiscard]] Result<Location> ResolveBuildIdAddress(std::string_view build_id,
                                                       std::string_view path_hint,
                                                       uint64_t address);
  // File offset -> virtual address for the file at `path` / the build id (--offsets).
  [[nodiscard]] Result<uint64_t> PathOffsetToAddress(const std::string& path, uint64_t offset);
  [[nodiscard]] Result<uint64_t> BuildIdOffsetToAddress(std::string_view build_id,
                                                        std::string_view path_hint,
                                                        uint64_t offset);

  // Forgets a build id: its LRU and shared-cache entries (the shared negative entry included),
  // local negative entry and open files (replay after new debug info arrived). False when the
  // shared cache could not drop its entries (Redis down): they may still be served later.
  bool DropBuildId(std::string_view build_id);
  // A build id -> path hint (an agent's process table, a config file).
  void AddBuildIdPath(std::string build_id, std::string path);

  struct Stats {
    uint64_t lru_hits = 0;
    uint64_t shared_hits = 0;
    uint64_t resolved = 0;        // frames resolved from debug info in this process
    uint64_t unresolved = 0;      // frames returned unresolved
    uint64_t negative_hits = 0;   // frames skipped because their build id is negatively cached
    uint64_t searches = 0;        // debug info searches (locate + open), successful or not
    uint64_t shared_negative_hits = 0;  // build ids skipped: another replica found them nowhere
    uint64_t worker_starts = 0;   // DWARF worker processes forked (restarts included)
    uint64_t worker_crashes = 0;  // DWARF worker deaths and hangs (each blames one file)
    uint64_t files_opened = 0;
    uint64_t files_evicted = 0;
    size_t open_files = 0;
    uint64_t open_bytes = 0;
    // Frames returned unresolved because the debuginfod download of their build id had not
    // finished by the batch deadline (one per distinct frame of a batch).
    uint64_t pending_debuginfo = 0;
    size_t negative_entries = 0;
    DebuginfodStats debuginfod;
  };
  [[nodiscard]] Stats stats() const;

 private:
  class Impl;
  explicit Symbolizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flamestream::symbols
