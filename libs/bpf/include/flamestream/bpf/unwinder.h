// Keeps the BPF unwinder's tables (bpf/unwind.h) filled for the processes being sampled.
//
//   Unwinder unwinder(config, std::move(maps));   // maps: the sampler's three BPF maps
//   unwinder.Start();                              // the worker thread that builds tables
//   unwinder.Watch(1234);                          // load a known pid before its first sample
//   unwinder.OnSample(sample);                     // per sample: new pid or unknown code -> scan
//   unwinder.OnExec(pid); unwinder.OnExit(pid);    // from the BPF process events
//
// A scan reads /proc/<pid>/maps and, for every executable file mapping, finds its table by
// build id: built once per build id from the file as the process sees it
// (/proc/<pid>/root/<path>, else /proc/<pid>/map_files/...), shared by every process mapping it,
// and written into the row pool once. The process's entry (its mappings, sorted) then goes into
// unwind_procs. Forked children get a copy of their parent's entry in BPF, so only exec'd and
// first-seen processes need a scan.
//
// The row pool has a fixed budget (max_table_bytes). When a new table does not fit, the tables
// least recently used by a sampled process are evicted (counted) until it does; a process that
// still maps an evicted table falls back to frame pointers in it, and its next sample in that
// code rescans (rate-limited) and reloads it.
//
// Threads: OnSample/OnExec/OnExit/Watch are cheap and may run on any thread (the sampler's
// dispatch thread); building and map writes happen on the unwinder's own worker thread.
#pragma once

#include <linux/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/proc/build_id.h"
#include "flamestream/proc/maps.h"
#include "flamestream/unwind/table.h"
#include "unwind.h"  // bpf/unwind.h

namespace flamestream::bpf {

struct UnwinderConfig {
  bool enabled = true;
  // Row pool size (kernel memory, allocated when the BPF program loads): every resident
  // table's rows (12 bytes each) must fit. A whole Debian machine's running binaries need
  // ~28 MiB; the tables of the processes an agent samples are usually a fraction of that.
  uint64_t max_table_bytes = uint64_t{32} << 20;
  uint32_t max_tables = 16384;    // resident tables (unwind_tables entries)
  uint32_t max_processes = 8192;  // processes with tables (unwind_procs entries)
  // Minimum time between two rescans of one process that sampled code no table covers (a
  // dlopen'ed library, a JIT page). The first scan after exec or first sight is immediate.
  std::chrono::milliseconds rescan_interval{250};
  // Larger files are not read (their table would crowd out everyone else's).
  uint64_t max_file_bytes = uint64_t{2} << 30;
  std::string proc_root = "/proc";
};

struct UnwinderStats {
  uint64_t scans = 0;            // /proc/<pid>/maps reads
  uint64_t processes = 0;        // processes with an entry now (gauge)
  uint64_t tables_built = 0;     // BuildTable runs
  uint64_t tables_loaded = 0;    // tables written into the row pool
  uint64_t tables_evicted = 0;   // tables dropped from the pool for room
  uint64_t tables_resident = 0;  // gauge
  uint64_t table_bytes = 0;      // gauge: rows resident x 12
  uint64_t table_capacity_bytes = 0;
  uint64_t files_without_cfi = 0;    // build ids whose file has no usable CFI (fp only)
  uint64_t build_failures = 0;       // files that could not be read or parsed
  uint64_t cfi_errors = 0;           // corrupt CFI ranges dropped while building (fp there)
  uint64_t over_budget = 0;          // tables that did not fit even after eviction
  uint64_t mappings_over_limit = 0;  // executable mappings beyond FS_MAX_PROC_MAPPINGS
  uint64_t build_ns = 0;             // time spent building tables
};

// The three BPF maps, behind an interface so the policy can be tested without BPF.
class UnwindMaps {
 public:
  virtual ~UnwindMaps() = default;
  [[nodiscard]] virtual uint64_t row_capacity() const = 0;
  virtual void WriteRows(uint32_t first, std::span<const fs_unwind_row> rows) = 0;
  virtual Status PutTable(uint32_t id, const fs_unwind_table& table) = 0;
  virtual void DeleteTable(uint32_t id) = 0;
  virtual Status PutProcess(uint32_t pid, const fs_unwind_proc& proc) = 0;
  virtual void DeleteProcess(uint32_t pid) = 0;
};

// First-fit allocator of row ranges in the pool; frees coalesce with their neighbours.
class RowAllocator {
 public:
  explicit RowAllocator(uint64_t capacity);
  // The first row of a free run of `n`, or nullopt when no run is long enough.
  std::optional<uint32_t> Allocate(uint32_t n);
  void Free(uint32_t first, uint32_t n);
  [[nodiscard]] uint64_t used() const { return used_; }
  [[nodiscard]] uint64_t capacity() const { return capacity_; }
  [[nodiscard]] uint64_t largest_free() const;

 private:
  uint64_t capacity_;
  uint64_t used_ = 0;
  std::map<uint32_t, uint32_t> free_;  // first row -> length
};

class Unwinder {
 public:
  Unwinder(UnwinderConfig config, std::unique_ptr<UnwindMaps> maps);
  ~Unwinder();
  Unwinder(const Unwinder&) = delete;
  Unwinder& operator=(const Unwinder&) = delete;

  void Start();  // starts the worker; idempotent
  void Stop();   // joins it; queued scans are dropped

  void Watch(uint32_t pid);  // scan soon
  // Scans on the calling thread; only before Start (the sampler loads the tables of the pids
  // it is told to watch before attaching, so their first samples already unwind with CFI).
  void ScanBeforeStart(uint32_t pid);
  // A sample: scans a process seen for the first time, and rescans one whose user frames fall
  // outside every executable mapping of its last scan (or whose BPF entry is gone).
  void OnSample(uint32_t pid, bool bpf_has_entry, std::span<const uint64_t> user_frames);
  void OnExec(uint32_t pid);  // BPF already deleted its entry; scan the new image
  void OnExit(uint32_t pid);  // BPF already deleted its entry; release its tables

  // Waits until no scan is queued or running (tests, benchmarks).
  bool WaitIdle(std::chrono::milliseconds timeout);

  [[nodiscard]] UnwinderStats Stats() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Range {
    uint64_t start = 0;
    uint64_t end = 0;
  };
  // What OnSample needs, under mu_.
  struct View {
    std::vector<Range> known;  // executable mappings with a resident table or none to load
    Clock::time_point last_sample{};
    Clock::time_point last_rescan{};
    bool scanned = false;
  };
  // The worker's own state (no lock).
  struct Table {
    uint32_t id = 0;  // key in unwind_tables; 0 while not resident
    uint32_t first_row = 0;
    uint32_t row_count = 0;
    bool no_cfi = false;  // nothing to load (empty table or unreadable file)
    std::vector<unwind::CodeSegment> segments;
    uint64_t base = 0;
    uint64_t pc_end = 0;
    std::set<uint32_t> pids;       // processes whose entry names this table
    Clock::time_point last_use{};  // last scan or exit of a process mapping it
  };
  struct Process {
    uint64_t start_ticks = 0;
    std::set<std::string> tables;
  };
  struct Job {
    uint32_t pid = 0;
    bool forget = false;
  };

  void Enqueue(Job job);
  void WorkLoop();
  void Scan(uint32_t pid, bool exec);
  void Forget(uint32_t pid);
  // The table of an executable file mapping, made resident if it can be; null when the file
  // cannot be read. `keep` are tables eviction must not touch.
  Table* TableFor(uint32_t pid, const proc::Mapping& m, const std::set<std::string>& keep,
                  std::string* key);
  bool Allocate(uint32_t rows, const std::set<std::string>& keep, uint32_t* first);
  void Evict(Table& t);

  UnwinderConfig config_;
  std::unique_ptr<UnwindMaps> maps_;

  // Worker state.
  RowAllocator rows_;
  std::unordered_map<std::string, Table> tables_;  // by build id, or "file:<dev>:<inode>"
  std::unordered_map<uint32_t, Process> procs_;
  proc::BuildIdCache build_ids_;
  uint32_t next_id_ = 1;

  mutable std::mutex mu_;  // guards what follows
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Job> queue_;
  std::set<uint32_t> queued_scans_;
  std::set<uint32_t> exec_pending_;  // the next scan of these starts from an empty image
  bool busy_ = false;
  bool stop_ = false;
  std::unordered_map<uint32_t, View> views_;
  UnwinderStats stats_;
  std::thread worker_;
};

}  // namespace flamestream::bpf
