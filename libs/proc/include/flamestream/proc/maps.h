// /proc/<pid>/maps: parsing, and a per-process cache that turns a user address into
// (mapping, build id, path, file offset).
//
//   MapsCache cache;                                   // reads the real /proc
//   Result<Location> loc = cache.Resolve(pid, 0x55d0c0de1234);
//   if (loc.ok() && loc->kind == MappingKind::kFile) {
//     Emit(loc->build_id, loc->file_offset);           // what the symbolizer needs
//   }
//   cache.OnExec(pid);    // the BPF exec event: mappings are gone, reload on next use
//   cache.OnExit(pid);
//
// A process is identified by (pid, start time), so a recycled pid never inherits stale
// mappings. An address outside every known mapping (a new dlopen, a JIT page) triggers a reload,
// rate-limited per process so a stream of junk addresses cannot make us re-read maps per sample.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/proc/build_id.h"

namespace flamestream::proc {

enum class MappingKind {
  kFile,       // a file-backed mapping: resolvable through build id + file offset
  kAnonymous,  // [anon], [heap], [stack], //anon, memfd: code here is JIT or self-modifying
  kJit,        // anonymous, but perf-<pid>.map names its symbols
  kVdso,       // [vdso]: the kernel's shared object
  kVsyscall,   // [vsyscall]
  kDeleted,    // file-backed, but the file was deleted or replaced ("(deleted)")
};

std::string_view MappingKindName(MappingKind kind);

struct Mapping {
  uint64_t start = 0;
  uint64_t end = 0;     // exclusive
  uint64_t offset = 0;  // file offset of `start`
  bool readable = false;
  bool writable = false;
  bool executable = false;
  bool shared = false;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // as printed (may be empty, "[heap]", "/memfd:x (deleted)")
  MappingKind kind = MappingKind::kAnonymous;

  [[nodiscard]] bool Contains(uint64_t addr) const { return addr >= start && addr < end; }
  [[nodiscard]] uint64_t FileOffset(uint64_t addr) const { return addr - start + offset; }
};

// One line: "55d0c0de0000-55d0c0de2000 r-xp 00001000 fd:01 1234   /usr/bin/x".
Result<Mapping> ParseMapsLine(std::string_view line);

// Where another process's mapped file can be opened from here: "<proc_root>/<pid>/map_files/
// <start>-<end>" (also deleted files; needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE) and
// "<proc_root>/<pid>/root<path>" (the file as the process's mount namespace sees it).
std::string MapFilesPath(const std::string& proc_root, uint32_t pid, const Mapping& m);
std::string RootPath(const std::string& proc_root, uint32_t pid, const Mapping& m);

struct ParsedMaps {
  std::vector<Mapping> mappings;  // sorted by start
  size_t malformed_lines = 0;
};
// Whole file; malformed lines are skipped and counted, never fatal.
ParsedMaps ParseMaps(std::string_view content);

// Where a user address lives.
struct Location {
  MappingKind kind = MappingKind::kAnonymous;
  std::string path;          // mapping path ("[vdso]", "" for anonymous)
  std::string build_id;      // hex; empty when unknown or not file-backed
  uint64_t file_offset = 0;  // for file mappings: addr - start + pgoff; else addr
  uint64_t mapping_start = 0;
  uint64_t mapping_end = 0;
  uint64_t mapping_offset = 0;
};

struct MapsCacheOptions {
  std::string proc_root = "/proc";
  // Minimum time between two reloads of one process triggered by unknown addresses.
  std::chrono::milliseconds min_reload_interval{250};
  // Processes kept; the least recently used is forgotten beyond this.
  size_t max_processes = 4096;
};

struct MapsCacheStats {
  uint64_t loads = 0;              // maps files read
  uint64_t unknown_addresses = 0;  // addresses in no mapping even after a reload
  uint64_t build_id_failures = 0;
};

class MapsCache {
 public:
  explicit MapsCache(MapsCacheOptions options = {});

  // NotFound when the process is gone or the address is in no mapping.
  Result<Location> Resolve(uint32_t pid, uint64_t addr);
  // All mappings of a process (loading them if needed).
  Result<std::vector<Mapping>> Mappings(uint32_t pid);

  void OnExec(uint32_t pid);  // reload on next use
  void OnExit(uint32_t pid);  // forget
  [[nodiscard]] size_t size() const { return processes_.size(); }
  [[nodiscard]] const MapsCacheStats& stats() const { return stats_; }

 private:
  struct Process {
    uint64_t start_ticks = 0;
    std::vector<Mapping> mappings;
    std::vector<std::string> build_ids;  // parallel to mappings; "" = not read yet
    std::vector<bool> build_id_read;
    std::chrono::steady_clock::time_point loaded_at;
    uint64_t last_use = 0;
    bool has_perf_map = false;  // /tmp/perf-<pid>.map exists: anonymous code is JIT
  };

  Result<Process*> Load(uint32_t pid, bool force);
  const std::string& BuildIdFor(uint32_t pid, Process& p, size_t index);
  void EvictIfFull();

  MapsCacheOptions options_;
  std::unordered_map<uint32_t, Process> processes_;
  BuildIdCache build_ids_;
  MapsCacheStats stats_;
  uint64_t clock_ = 0;
};

}  // namespace flamestream::proc
