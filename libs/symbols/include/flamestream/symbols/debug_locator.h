// Finds the file that holds the debug info (DWARF, else a symbol table) for a binary named by
// its build id and/or the path the process saw it at.
//
//   DebugLocator locator(LocatorConfig{.debug_dirs = {"/usr/lib/debug"}});
//   FS_ASSIGN_OR_RETURN(DebugFiles files, locator.Locate("4f1e...", "/usr/lib/libfoo.so"));
//   // files.debug: where DWARF (or .symtab) lives; files.code: a file whose PT_LOAD headers
//   // map file offsets (the binary itself, or an executable from debuginfod).
//
// Sources, in order (ARCHITECTURE.md, "Symbolization"):
//   1. the binary: path mappings, sysroots, build-id path hints, then the path as seen (local
//      mode reads the host's files); a file whose build id differs from the requested one is
//      skipped (the host's copy was upgraded since the sample was taken);
//   2. <debug_dir>/.build-id/xx/rest.debug;
//   3. the binary's .gnu_debuglink: next to the binary, in its .debug/ directory, and under
//      each debug dir; the CRC must match;
//   4. debuginfod servers (DEBUGINFOD_URLS, cached under DEBUGINFOD_CACHE_PATH), downloaded
//      asynchronously by a bounded worker pool (src/debuginfod_fetcher.h): while a download the
//      answer depends on runs, Locate returns an error IsPendingDownload() recognizes (not a
//      negative answer: ask again after WaitForDownloads() or in a later batch);
//   5. the binary's own .symtab/.dynsym when no DWARF exists anywhere.
// Not thread-safe (the Symbolizer serializes calls), except WaitForDownloads/
// DownloadGeneration/debuginfod_stats.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/symbols/elf_file.h"

namespace flamestream::symbols {

class DebuginfodFetcher;  // src/debuginfod_fetcher.h

struct LocatorConfig {
  // "from=to" prefix rewrites applied to a path hint, longest `from` first
  // (e.g. "/app=/srv/images/app-v7/app").
  std::vector<std::string> path_mappings;
  // Directories prepended to a path hint (an unpacked container image, a node's root mount).
  std::vector<std::string> sysroots;
  // Try the path hint itself on this host. True in local mode, where the agent and the
  // symbolizer share a file system.
  bool use_host_paths = true;
  // Global debug directories: build-id layout and the debuglink fallback. Tests point these at
  // a private tree.
  std::vector<std::string> debug_dirs = {"/usr/lib/debug"};
  // Ask debuginfod servers (only when DEBUGINFOD_URLS is set and non-empty).
  bool debuginfod = true;
  // Downloads running at once (one libdebuginfod client each); one per build id and kind.
  int debuginfod_concurrency = 4;
  // A debug file or executable larger than this is refused (the transfer is aborted).
  uint64_t debuginfod_max_size = uint64_t{1} << 30;
  // One download (connect included) is aborted after this long.
  std::chrono::nanoseconds debuginfod_timeout = std::chrono::minutes(3);
  // Downloads queued or running; further unknown build ids wait for a free slot (counted as
  // queue_full, their frames stay unresolved meanwhile).
  size_t debuginfod_max_pending = 1024;
};

// debuginfod activity, for metrics. Counters are totals since start.
struct DebuginfodStats {
  uint64_t found = 0;
  uint64_t not_found = 0;
  uint64_t too_large = 0;   // refused: over debuginfod_max_size
  uint64_t timeouts = 0;    // aborted after debuginfod_timeout
  uint64_t errors = 0;      // anything else (connection refused, server errors, ...)
  uint64_t queue_full = 0;  // lookups not queued: debuginfod_max_pending downloads pending
  uint64_t in_flight = 0;   // downloads running now
  uint64_t max_in_flight = 0;  // the most that ever ran at once
  uint64_t queued = 0;      // downloads waiting for a worker now
};

// Locate's error while a debuginfod download its answer depends on has not finished.
inline constexpr std::string_view kDownloadPending = "debuginfod download pending";
bool IsPendingDownload(const Status& status);

struct DebugFiles {
  // The file LLVM reads DWARF and symbols from.
  ElfInfo debug;
  // The file whose PT_LOAD segments map file offsets; unset when only a separate debug file was
  // found (then offsets cannot be mapped, but virtual addresses still resolve).
  std::optional<ElfInfo> code;
  // Where the debug file came from: "binary", "build-id-dir", "debuglink", "debuginfod",
  // "symtab".
  std::string source;
};

class DebugLocator {
 public:
  explicit DebugLocator(LocatorConfig config);
  ~DebugLocator();
  DebugLocator(const DebugLocator&) = delete;
  DebugLocator& operator=(const DebugLocator&) = delete;

  // `build_id` is lower-case hex and may be empty (then `path_hint` alone identifies the file);
  // `path_hint` may be empty. NotFound when no source has the build id; DataLoss and friends
  // when the file found is corrupt.
  [[nodiscard]] Result<DebugFiles> Locate(std::string_view build_id, std::string_view path_hint);

  // Resolve mode: the binary at exactly `path` (no mappings), then its separate debug info.
  [[nodiscard]] Result<DebugFiles> LocateForPath(const std::string& path);

  // A build id -> path hint, as an agent's process table or a config file provides.
  void AddBuildIdPath(std::string build_id, std::string path);

  // Pending downloads: read DownloadGeneration() before Locate, then WaitForDownloads(g,
  // deadline) returns once any download finished since (true) or at the deadline (false;
  // false at once without debuginfod).
  [[nodiscard]] uint64_t DownloadGeneration() const;
  bool WaitForDownloads(uint64_t generation, std::chrono::steady_clock::time_point deadline);
  [[nodiscard]] DebuginfodStats debuginfod_stats() const;

 private:

  std::vector<std::string> BinaryCandidates(std::string_view build_id,
                                            std::string_view path_hint) const;
  Result<DebugFiles> LocateSeparate(std::string_view build_id, std::optional<ElfInfo> binary);
  std::optional<ElfInfo> FindInBuildIdDirs(std::string_view build_id) const;
  std::optional<ElfInfo> FindByDebugLink(const ElfInfo& binary) const;

  LocatorConfig config_;
  std::map<std::string, std::string, std::less<>> build_id_paths_;
  // Null when disabled or DEBUGINFOD_URLS is unset.
  std::unique_ptr<DebuginfodFetcher> debuginfod_;
};

}  // namespace flamestream::symbols
