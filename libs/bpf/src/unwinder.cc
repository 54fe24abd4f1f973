#include "flamestream/bpf/unwinder.h"

#include <malloc.h>
#include <sys/auxv.h>
#include <sys/stat.h>

#include <algorithm>
#include <limits>

#include "flamestream/log/log.h"
#include "flamestream/proc/process.h"

namespace flamestream::bpf {
namespace {

constexpr auto kSweepInterval = std::chrono::seconds(10);
constexpr size_t kMaxMapsBytes = size_t{16} << 20;

// The table of the agent's own vDSO, if it has the size of the process's [vdso] mapping (the
// same kernel maps the same image into every 64-bit process).
Result<unwind::UnwindTable> VdsoTable(uint64_t mapping_bytes, unwind::BuildStats* stats) {
  const auto base = static_cast<uintptr_t>(::getauxval(AT_SYSINFO_EHDR));
  if (base == 0) return NotFound("no vDSO in this process");
  FS_ASSIGN_OR_RETURN(std::string maps, proc::ReadProcFile("/proc/self/maps"));
  for (const proc::Mapping& own : proc::ParseMaps(maps).mappings) {
    if (own.start != base) continue;
    if (own.end - own.start != mapping_bytes) {
      return NotFound("the process's vDSO ({} bytes) is not this kernel's 64-bit one ({} bytes)",
                      mapping_bytes, own.end - own.start);
    }
    // NOLINTNEXTLINE(performance-no-int-to-ptr): AT_SYSINFO_EHDR is the vDSO's address
    const auto* image = reinterpret_cast<const char*>(base);
    return unwind::BuildTableFromImage(std::string_view(image, own.end - own.start), stats);
  }
  return NotFound("the vDSO is not in /proc/self/maps");
}

}  // namespace

RowAllocator::RowAllocator(uint64_t capacity)
    : capacity_(std::min<uint64_t>(capacity, std::numeric_limits<uint32_t>::max())) {
  if (capacity_ > 0) free_[0] = static_cast<uint32_t>(capacity_);
}

std::optional<uint32_t> RowAllocator::Allocate(uint32_t n) {
  if (n == 0) return std::nullopt;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < n) continue;
    const uint32_t first = it->first;
    const uint32_t len = it->second;
    free_.erase(it);
    if (len > n) free_[first + n] = len - n;
    used_ += n;
    return first;
  }
  return std::nullopt;
}

void RowAllocator::Free(uint32_t first, uint32_t n) {
  if (n == 0) return;
  used_ -= std::min<uint64_t>(used_, n);
  auto [it, inserted] = free_.emplace(first, n);
  if (!inserted) return;  // double free: keep the books as they are
  if (auto next = std::next(it); next != free_.end() && it->first + it->second == next->first) {
    it->second += next->second;
    free_.erase(next);
  }
  if (it != free_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      free_.erase(it);
    }
  }
}

uint64_t RowAllocator::largest_free() const {
  uint64_t best = 0;
  for (const auto& [first, len] : free_) best = std::max<uint64_t>(best, len);
  return best;
}

Unwinder::Unwinder(UnwinderConfig config, std::unique_ptr<UnwindMaps> maps)
    : config_(std::move(config)), maps_(std::move(maps)), rows_(maps_->row_capacity()) {
  stats_.table_capacity_bytes = rows_.capacity() * sizeof(fs_unwind_row);
}

Unwinder::~Unwinder() { Stop(); }

void Unwinder::Start() {
  std::lock_guard lock(mu_);
  if (worker_.joinable()) return;
  stop_ = false;
  worker_ = std::thread([this] { WorkLoop(); });
}

void Unwinder::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard lock(mu_);
  queue_.clear();
  queued_scans_.clear();
  busy_ = false;
  idle_cv_.notify_all();
}

void Unwinder::Enqueue(Job job) {
  // mu_ held.
  if (!job.forget && !queued_scans_.insert(job.pid).second) return;
  queue_.push_back(job);
  cv_.notify_one();
}

void Unwinder::Watch(uint32_t pid) {
  std::lock_guard lock(mu_);
  views_.try_emplace(pid);
  Enqueue({.pid = pid});
}

void Unwinder::ScanBeforeStart(uint32_t pid) {
  {
    std::lock_guard lock(mu_);
    if (worker_.joinable()) {
      Enqueue({.pid = pid});
      return;
    }
    views_.try_emplace(pid);
  }
  Scan(pid, false);
}

void Unwinder::OnSample(uint32_t pid, bool bpf_has_entry, std::span<const uint64_t> user_frames) {
  const Clock::time_point now = Clock::now();
  std::lock_guard lock(mu_);
  auto [it, inserted] = views_.try_emplace(pid);
  View& v = it->second;
  v.last_sample = now;
  if (inserted) {
    Enqueue({.pid = pid});
    return;
  }
  if (!v.scanned) return;  // a scan is on its way
  bool need = !bpf_has_entry;
  for (size_t i = 0; !need && i < user_frames.size(); ++i) {
    // A return address may sit one past its mapping's last byte (a call as the last instruction).
    const uint64_t addr = i == 0 ? user_frames[i] : user_frames[i] - 1;
    auto r = std::upper_bound(v.known.begin(), v.known.end(), addr,
                              [](uint64_t a, const Range& x) { return a < x.start; });
    need = r == v.known.begin() || addr >= std::prev(r)->end;
  }
  if (need &&
      (v.last_rescan == Clock::time_point{} || now - v.last_rescan >= config_.rescan_interval)) {
    v.last_rescan = now;
    Enqueue({.pid = pid});
  }
}

void Unwinder::OnExec(uint32_t pid) {
  std::lock_guard lock(mu_);
  View& v = views_[pid];
  v.known.clear();
  v.scanned = false;
  v.last_rescan = {};
  exec_pending_.insert(pid);
  Enqueue({.pid = pid});
}

void Unwinder::OnExit(uint32_t pid) {
  std::lock_guard lock(mu_);
  views_.erase(pid);
  exec_pending_.erase(pid);
  Enqueue({.pid = pid, .forget = true});
}

bool Unwinder::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
}

UnwinderStats Unwinder::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Unwinder::WorkLoop() {
  Clock::time_point next_sweep = Clock::now() + kSweepInterval;
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      idle_cv_.notify_all();
      cv_.wait_until(lock, next_sweep, [this] { return stop_ || !queue_.empty(); });
      if (stop_) break;
    }
    std::vector<uint32_t> gone;
    if (Clock::now() >= next_sweep) {
      next_sweep = Clock::now() + kSweepInterval;
      // Exit events can be lost (ring full): retire processes whose /proc entry is gone or
      // belongs to a new process.
      busy_ = true;
      lock.unlock();
      for (const auto& [pid, p] : procs_) {
        Result<uint64_t> ticks = proc::ReadStartTicks(pid, config_.proc_root);
        if (!ticks.ok() || *ticks != p.start_ticks) gone.push_back(pid);
      }
      for (uint32_t pid : gone) Forget(pid);
      lock.lock();
      for (uint32_t pid : gone) views_.erase(pid);
      busy_ = false;
      continue;
    }
    if (queue_.empty()) continue;
    const Job job = queue_.front();
    queue_.pop_front();
    bool exec = false;
    if (!job.forget) {
      queued_scans_.erase(job.pid);
      exec = exec_pending_.erase(job.pid) > 0;
    }
    busy_ = true;
    lock.unlock();
    if (job.forget) {
      Forget(job.pid);
    } else {
      Scan(job.pid, exec);
    }
    lock.lock();
    busy_ = false;
  }
  idle_cv_.notify_all();
}

void Unwinder::Forget(uint32_t pid) {
  maps_->DeleteProcess(pid);
  auto it = procs_.find(pid);
  if (it == procs_.end()) return;
  for (const std::string& key : it->second.tables) {
    if (auto t = tables_.find(key); t != tables_.end()) {
      t->second.pids.erase(pid);
      t->second.last_use = Clock::now();
    }
  }
  procs_.erase(it);
  std::lock_guard lock(mu_);
  stats_.processes = procs_.size();
}

void Unwinder::Scan(uint32_t pid, bool exec) {
  const std::string dir = fmt::format("{}/{}", config_.proc_root, pid);
  Result<std::string> text = proc::ReadProcFile(dir + "/maps", kMaxMapsBytes);
  Result<uint64_t> ticks = proc::ReadStartTicks(pid, config_.proc_root);
  {
    std::lock_guard lock(mu_);
    ++stats_.scans;
  }
  if (!text.ok() || !ticks.ok()) {
    Forget(pid);  // gone already
    std::lock_guard lock(mu_);
    views_.erase(pid);
    return;
  }
  const proc::ParsedMaps maps = proc::ParseMaps(*text);
  Process& p = procs_[pid];
  if (p.start_ticks != *ticks || exec) {
    // A new image (exec, or a new process under a recycled pid): nothing of the old applies.
    for (const std::string& key : p.tables) {
      if (auto t = tables_.find(key); t != tables_.end()) t->second.pids.erase(pid);
    }
    p.tables.clear();
    p.start_ticks = *ticks;
  }

  auto value = std::make_unique<fs_unwind_proc>();
  std::vector<Range> known;
  std::set<std::string> used;
  std::set<std::string> keep = p.tables;  // eviction spares this process's own tables
  uint64_t over_limit = 0;
  for (const proc::Mapping& m : maps.mappings) {
    if (!m.executable) continue;
    known.push_back({m.start, m.end});  // anonymous/JIT code: nothing to load, fp there
    const bool vdso = m.kind == proc::MappingKind::kVdso;
    if (!vdso && ((m.kind != proc::MappingKind::kFile && m.kind != proc::MappingKind::kDeleted) ||
                  m.inode == 0)) {
      continue;
    }
    std::string key;
    Table* t = TableFor(pid, m, keep, &key);
    if (t == nullptr) continue;
    used.insert(key);
    keep.insert(key);
    if (t->id == 0) continue;
    if (value->count >= FS_MAX_PROC_MAPPINGS) {
      ++over_limit;
      continue;
    }
    Result<uint64_t> shift = unwind::RowPcShift(t->segments, t->base, m.start, m.offset);
    if (!shift.ok()) continue;  // a mapping of a non-code part of the file
    fs_unwind_mapping& e = value->mappings[value->count++];
    e.start = m.start;
    e.end = m.end;
    e.shift = *shift;
    e.table_id = t->id;
  }
  std::sort(
      value->mappings, value->mappings + value->count,
      [](const fs_unwind_mapping& a, const fs_unwind_mapping& b) { return a.start < b.start; });
  if (Status st = maps_->PutProcess(pid, *value); !st.ok()) {
    log::Warn("unwind tables not loaded for a process", {{"pid", pid}, {"error", st}});
  }
  for (const std::string& key : p.tables) {
    if (!used.contains(key)) {
      if (auto t = tables_.find(key); t != tables_.end()) t->second.pids.erase(pid);
    }
  }
  for (const std::string& key : used) tables_[key].pids.insert(pid);
  p.tables = std::move(used);

  std::sort(known.begin(), known.end(),
            [](const Range& a, const Range& b) { return a.start < b.start; });
  std::lock_guard lock(mu_);
  stats_.mappings_over_limit += over_limit;
  stats_.processes = procs_.size();
  auto v = views_.find(pid);
  if (v == views_.end()) return;  // exited meanwhile; its forget job follows
  v->second.known = std::move(known);
  v->second.scanned = true;
}

Unwinder::Table* Unwinder::TableFor(uint32_t pid, const proc::Mapping& m,
                                    const std::set<std::string>& keep, std::string* key) {
  // The process's own view of the file first (its mount namespace): the agent drops the
  // capability map_files needs after start, so that one is the fallback (deleted files).
  std::vector<std::string> paths;
  const bool vdso = m.kind == proc::MappingKind::kVdso;
  if (vdso) {
    // Every process of this kernel maps the same vDSO image: the agent's own.
    *key = "vdso";
  } else {
    if (m.kind == proc::MappingKind::kFile && !m.path.empty() && m.path[0] == '/') {
      paths.push_back(proc::RootPath(config_.proc_root, pid, m));
    }
    paths.push_back(proc::MapFilesPath(config_.proc_root, pid, m));
    const proc::FileKey fk{.dev_major = m.dev_major, .dev_minor = m.dev_minor, .inode = m.inode};
    Result<std::string> build_id = build_ids_.Get(fk, paths);
    *key = build_id.ok() && !build_id->empty()
               ? *build_id
               : fmt::format("file:{:x}:{:x}:{}", m.dev_major, m.dev_minor, m.inode);
  }
  Table& t = tables_[*key];
  if (t.id != 0 || t.no_cfi) {
    t.last_use = Clock::now();
    return &t;
  }

  const Clock::time_point started = Clock::now();
  Result<unwind::UnwindTable> built = NotFound("no readable path");
  unwind::BuildStats bs;
  if (vdso) built = VdsoTable(m.end - m.start, &bs);
  for (const std::string& path : paths) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    if (static_cast<uint64_t>(st.st_size) > config_.max_file_bytes) {
      built = ResourceExhausted("{} is {} bytes, over the {}-byte limit", path, st.st_size,
                                config_.max_file_bytes);
      break;
    }
    built = unwind::BuildTable(path, &bs);
    if (built.ok()) break;
  }
  const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started);
  // libdw's CFI cache and the intervals of a big binary are tens of MB, freed by now: give
  // them back to the system instead of keeping them in malloc's arenas.
  ::malloc_trim(0);
  std::lock_guard lock(mu_);
  stats_.build_ns += took.count();
  ++stats_.tables_built;
  if (!built.ok()) {
    ++stats_.build_failures;
    t.no_cfi = true;
    log::Debug("no unwind table for a mapping",
               {{"pid", pid}, {"path", m.path}, {"error", built.status()}});
    return &t;
  }
  stats_.cfi_errors += bs.errors;
  if (built->rows.empty()) {
    ++stats_.files_without_cfi;
    t.no_cfi = true;
    return &t;
  }
  t.segments = built->code_segments;
  t.base = built->base;
  t.pc_end = built->end - built->base;
  const auto n = static_cast<uint32_t>(built->rows.size());
  uint32_t first = 0;
  if (!Allocate(n, keep, &first)) {
    ++stats_.over_budget;
    return &t;
  }
  maps_->WriteRows(first, built->rows);
  uint32_t id = next_id_++;
  if (id == 0) id = next_id_++;
  const fs_unwind_table info{
      .first_row = first, .row_count = n, .pc_end = static_cast<__u32>(t.pc_end), .reserved = 0};
  if (Status st = maps_->PutTable(id, info); !st.ok()) {
    rows_.Free(first, n);
    ++stats_.over_budget;
    log::Warn("unwind table not loaded", {{"path", m.path}, {"error", st}});
    return &t;
  }
  t.id = id;
  t.first_row = first;
  t.row_count = n;
  t.last_use = Clock::now();
  ++stats_.tables_loaded;
  ++stats_.tables_resident;
  stats_.table_bytes += uint64_t{n} * sizeof(fs_unwind_row);
  return &t;
}

bool Unwinder::Allocate(uint32_t rows, const std::set<std::string>& keep, uint32_t* first) {
  // mu_ held.
  while (true) {
    if (stats_.tables_resident < config_.max_tables) {
      if (std::optional<uint32_t> f = rows_.Allocate(rows)) {
        *first = *f;
        return true;
      }
    }
    // Evict the resident table whose processes were sampled least recently.
    Table* victim = nullptr;
    Clock::time_point oldest = Clock::time_point::max();
    for (auto& [key, t] : tables_) {
      if (t.id == 0 || keep.contains(key)) continue;
      Clock::time_point used = t.last_use;
      for (uint32_t pid : t.pids) {
        if (auto v = views_.find(pid); v != views_.end())
          used = std::max(used, v->second.last_sample);
      }
      if (used < oldest) {
        oldest = used;
        victim = &t;
      }
    }
    if (victim == nullptr) return false;
    Evict(*victim);
  }
}

void Unwinder::Evict(Table& t) {
  // mu_ held.
  maps_->DeleteTable(t.id);
  rows_.Free(t.first_row, t.row_count);
  ++stats_.tables_evicted;
  --stats_.tables_resident;
  stats_.table_bytes -= uint64_t{t.row_count} * sizeof(fs_unwind_row);
  t.id = 0;
  // Their next sample rescans (rate-limited) and reloads what they still run.
  for (uint32_t pid : t.pids) {
    if (auto v = views_.find(pid); v != views_.end()) v->second.known.clear();
  }
}

}  // namespace flamestream::bpf
