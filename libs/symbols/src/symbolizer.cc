#include "flamestream/symbols/symbolizer.h"

#include <absl/container/flat_hash_map.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <mutex>
#include <utility>

#include "flamestream/log/log.h"
#include "debug_module.h"

namespace flamestream::symbols {
namespace {

std::string BuildIdKey(std::string_view build_id) { return "b:" + std::string(build_id); }
std::string PathKey(std::string_view path) { return "p:" + std::string(path); }
std::string ModuleKey(std::string_view build_id, std::string_view path_hint) {
  return build_id.empty() ? PathKey(path_hint) : BuildIdKey(build_id);
}

}  // namespace

class Symbolizer::Impl {
 public:
  Impl(SymbolizerConfig config, SymbolCache* shared, std::unique_ptr<DwarfWorker> worker)
      : config_(std::move(config)),
        locator_(config_.locator),
        lru_(config_.lru_bytes),
        shared_(shared),
        worker_(std::move(worker)) {}
  ~Impl() {
    // Kill the worker before the modules' destructors ask it to free each file one by one.
    if (worker_ != nullptr) {
      worker_->Shutdown();
    }
  }

  std::vector<LocationPtr> ResolveBatch(std::span<const FrameRequest> frames);
  // `wait`: a pending debuginfod download is waited for (resolve mode) instead of returned as
  // an IsPendingDownload error (batches, which wait across all their files at once).
  Result<DebugModule*> ModuleForBuildId(std::string_view build_id, std::string_view path_hint,
                                       bool wait);
  Result<DebugModule*> ModuleForPath(const std::string& path);
  // Symbolizes with the module open under `key`; a file that killed the DWARF worker is
  // evicted and negatively cached (DataLoss for every later lookup until the TTL passes).
  Result<Location> SymbolizeAt(const std::string& key, DebugModule* module, uint64_t address);
  bool DropBuildId(std::string_view build_id);
  void AddBuildIdPath(std::string build_id, std::string path) {
    std::lock_guard<std::mutex> lock(resolve_mu_);
    locator_.AddBuildIdPath(std::move(build_id), std::move(path));
  }
  Stats stats() const;

  std::mutex resolve_mu_;  // guards locator_, modules_, negative_ (LLVM is single-threaded)

 private:
  struct OpenModule {
    std::string key;
    std::unique_ptr<DebugModule> module;
  };
  struct NegativeEntry {
    std::chrono::steady_clock::time_point expires;
    Status error;
  };

  // Returns the open module for `key`, locating and opening it with `locate` on a miss.
  // `build_id` (may be empty) is shared as unknown through the shared cache when no source
  // has it.
  template <typename LocateFn>
  Result<DebugModule*> GetModule(const std::string& key, std::string_view build_id,
                                LocateFn&& locate);
  // GetModule, waiting out pending debuginfod downloads (each is bounded by its own timeout).
  template <typename LocateFn>
  Result<DebugModule*> GetModuleWaiting(const std::string& key, std::string_view build_id,
                                       LocateFn&& locate);
  // Resolves the distinct, sorted `offsets` of one file (the frame `req` names it) in one pass;
  // out[i] is null when offsets[i] could not be resolved, cacheable[i] when the debug file
  // answered (the answer will not change). False while a debuginfod download the file needs
  // is pending (then every out[i] is null and nothing is cacheable).
  bool ResolveFile(const FrameRequest& req, std::span<const uint64_t> offsets,
                   std::vector<LocationPtr>& out, std::vector<bool>& cacheable);
  // Asks the shared cache which of the build ids no replica found debug info for, and
  // negatively caches those here, so no search (debug dirs, debuginfod) repeats fleet-wide.
  void CheckSharedNegatives(std::span<const std::string_view> build_ids);
  void MarkBad(const std::string& key, const Status& error);
  // Adds a negative entry, keeping at most config_.max_negative_entries.
  void PutNegative(const std::string& key, std::chrono::steady_clock::time_point now,
                   Status error);

  SymbolizerConfig config_;
  DebugLocator locator_;
  LruSymbolCache lru_;
  SymbolCache* shared_;
  std::unique_ptr<DwarfWorker> worker_;  // null: DWARF parsed in this process (dwarf_engine)

  std::list<OpenModule> modules_;  // most recently used first
  absl::flat_hash_map<std::string, std::list<OpenModule>::iterator> module_index_;
  uint64_t open_bytes_ = 0;
  absl::flat_hash_map<std::string, NegativeEntry> negative_;
  // Files (build ids) whose debuginfod download a batch found pending, since when: each is
  // waited for at most debuginfod_batch_deadline in total, so a slow download does not slow
  // every batch after it. Bounded (cleared when it outgrows the download queue).
  absl::flat_hash_map<std::string, std::chrono::steady_clock::time_point> pending_since_;

  std::atomic<uint64_t> lru_hits_{0};
  std::atomic<uint64_t> shared_hits_{0};
  std::atomic<uint64_t> resolved_{0};
  std::atomic<uint64_t> unresolved_{0};
  std::atomic<uint64_t> negative_hits_{0};
  std::atomic<uint64_t> files_opened_{0};
  std::atomic<uint64_t> files_evicted_{0};
  std::atomic<uint64_t> searches_{0};
  std::atomic<uint64_t> shared_negative_hits_{0};
  std::atomic<uint64_t> pending_debuginfo_{0};
  std::atomic<size_t> negative_entries_{0};  // negative_.size(), for stats() without the lock
};

void Symbolizer::Impl::PutNegative(const std::string& key,
                                   std::chrono::steady_clock::time_point now, Status error) {
  if (negative_.size() >= config_.max_negative_entries && !negative_.contains(key)) {
    absl::erase_if(negative_, [&](const auto& entry) { return entry.second.expires <= now; });
    while (!negative_.empty() && negative_.size() >= config_.max_negative_entries) {
      negative_.erase(negative_.begin());
    }
  }
  negative_[key] = {now + config_.negative_ttl, std::move(error)};
  negative_entries_.store(negative_.size(), std::memory_order_relaxed);
}

template <typename LocateFn>
Result<DebugModule*> Symbolizer::Impl::GetModule(const std::string& key,
                                                std::string_view build_id, LocateFn&& locate) {
  if (auto it = module_index_.find(key); it != module_index_.end()) {
    modules_.splice(modules_.begin(), modules_, it->second);
    return it->second->module.get();
  }
  auto now = config_.now();
  if (auto it = negative_.find(key); it != negative_.end()) {
    if (now < it->second.expires) {
      negative_hits_.fetch_add(1, std::memory_order_relaxed);
      return it->second.error;
    }
    negative_.erase(it);
    negative_entries_.store(negative_.size(), std::memory_order_relaxed);
  }
  Result<DebugFiles> files = locate();
  if (!files.ok() && IsPendingDownload(files.error())) {
    // Not an answer yet: neither cached nor shared, asked again by the next lookup.
    return files.error();
  }
  searches_.fetch_add(1, std::memory_order_relaxed);
  if (!files.ok() && files.error().code() == StatusCode::kNotFound && shared_ != nullptr &&
      !build_id.empty()) {
    // Found nowhere: tell the other replicas, so they skip the same search.
    shared_->PutUnknownBuildId(build_id, files.error().message());
  }
  Result<std::unique_ptr<DebugModule>> module =
      files.ok() ? DebugModule::Open(std::move(files).value(), worker_.get(),
                                                    config_.dwarf_engine.get())
                 : Result<std::unique_ptr<DebugModule>>(files.error());
  if (!module.ok()) {
    log::Warn("no debug info", {{"key", key}, {"error", module.error()}});
    PutNegative(key, now, module.error());
    return module.error();
  }
  log::Debug("debug info opened", {{"key", key},
                                   {"path", (*module)->files().debug.path},
                                   {"source", (*module)->files().source}});
  files_opened_.fetch_add(1, std::memory_order_relaxed);
  open_bytes_ += (*module)->bytes();
  modules_.push_front(OpenModule{key, std::move(module).value()});
  module_index_[key] = modules_.begin();
  // Evict least recently used files, never the one just opened.
  while (modules_.size() > 1 && (modules_.size() > config_.max_open_files ||
                                 open_bytes_ > config_.max_open_bytes)) {
    OpenModule& victim = modules_.back();
    open_bytes_ -= victim.module->bytes();
    module_index_.erase(victim.key);
    modules_.pop_back();
    files_evicted_.fetch_add(1, std::memory_order_relaxed);
  }
  return modules_.front().module.get();
}

template <typename LocateFn>
Result<DebugModule*> Symbolizer::Impl::GetModuleWaiting(const std::string& key,
                                                       std::string_view build_id,
                                                       LocateFn&& locate) {
  // Each download ends by its own timeout; the debug file and the executable may both be
  // needed, and queued behind others.
  const auto deadline = std::chrono::steady_clock::now() +
                        3 * config_.locator.debuginfod_timeout + std::chrono::seconds(10);
  while (true) {
    const uint64_t generation = locator_.DownloadGeneration();
    Result<DebugModule*> module = GetModule(key, build_id, locate);
    if (module.ok() || !IsPendingDownload(module.error()) ||
        !locator_.WaitForDownloads(generation, deadline)) {
      return module;
    }
  }
}

Result<DebugModule*> Symbolizer::Impl::ModuleForBuildId(std::string_view build_id,
                                                       std::string_view path_hint, bool wait) {
  if (build_id.empty()) {
    if (path_hint.empty()) {
      return InvalidArgument("a frame needs a build id or a path");
    }
    auto locate = [&] { return locator_.Locate("", path_hint); };
    return wait ? GetModuleWaiting(PathKey(path_hint), "", locate)
                : GetModule(PathKey(path_hint), "", locate);
  }
  auto locate = [&] { return locator_.Locate(build_id, path_hint); };
  return wait ? GetModuleWaiting(BuildIdKey(build_id), build_id, locate)
              : GetModule(BuildIdKey(build_id), build_id, locate);
}

Result<DebugModule*> Symbolizer::Impl::ModuleForPath(const std::string& path) {
  return GetModuleWaiting(PathKey(path), "", [&] { return locator_.LocateForPath(path); });
}

void Symbolizer::Impl::MarkBad(const std::string& key, const Status& error) {
  log::Warn("debug info unusable", {{"key", key}, {"error", error}});
  PutNegative(key, config_.now(), error);
  if (auto it = module_index_.find(key); it != module_index_.end()) {
    open_bytes_ -= it->second->module->bytes();
    modules_.erase(it->second);
    module_index_.erase(it);
  }
}

Result<Location> Symbolizer::Impl::SymbolizeAt(const std::string& key, DebugModule* module,
                                               uint64_t address) {
  auto out = module->SymbolizeMany({&address, 1});
  if (!out.ok()) {
    MarkBad(key, out.error());
    return out.error();
  }
  return std::move(out->front());
}

void Symbolizer::Impl::CheckSharedNegatives(std::span<const std::string_view> build_ids) {
  if (shared_ == nullptr) {
    return;
  }
  // Only build ids this process would search for now: not open, not negatively cached here.
  const auto now = config_.now();
  std::vector<std::string_view> ask;
  for (std::string_view id : build_ids) {
    if (id.empty()) continue;
    std::string key = BuildIdKey(id);
    if (module_index_.contains(key)) continue;
    if (auto it = negative_.find(key); it != negative_.end() && now < it->second.expires) continue;
    ask.push_back(id);
  }
  if (ask.empty()) {
    return;
  }
  std::vector<bool> unknown = shared_->GetUnknownBuildIds(ask);
  for (size_t i = 0; i < ask.size() && i < unknown.size(); ++i) {
    if (unknown[i]) {
      shared_negative_hits_.fetch_add(1, std::memory_order_relaxed);
      PutNegative(BuildIdKey(ask[i]), now,
                  NotFound("no debug info or symbols for build id {} (another replica searched)",
                           ask[i]));
    }
  }
}

bool Symbolizer::Impl::ResolveFile(const FrameRequest& req, std::span<const uint64_t> offsets,
                                   std::vector<LocationPtr>& out,
                                   std::vector<bool>& cacheable) {
  out.assign(offsets.size(), nullptr);
  cacheable.assign(offsets.size(), false);
  auto module = ModuleForBuildId(req.build_id, req.path_hint, /*wait=*/false);
  if (!module.ok()) {
    return !IsPendingDownload(module.error());
  }
  const DebugFiles& files = (*module)->files();
  if (!files.code) {
    return true;
  }
  std::vector<uint64_t> addresses;
  std::vector<size_t> positions;
  addresses.reserve(offsets.size());
  positions.reserve(offsets.size());
  for (size_t i = 0; i < offsets.size(); ++i) {
    if (auto address = files.code->FileOffsetToVaddr(offsets[i]); address.ok()) {
      addresses.push_back(*address);
      positions.push_back(i);
    }
  }
  if (addresses.empty()) {
    return true;
  }
  // One round trip for the whole file; sorted addresses walk each unit's tables once.
  auto locs = (*module)->SymbolizeMany(addresses);
  if (!locs.ok()) {
    MarkBad(ModuleKey(req.build_id, req.path_hint), locs.error());
    return true;
  }
  for (size_t j = 0; j < positions.size(); ++j) {
    Result<Location>& loc = (*locs)[j];
    if (!loc.ok()) {
      continue;
    }
    if (loc->resolved) {
      loc->display_name = loc->frames.front().function;
    } else {
      loc->frames.clear();
    }
    out[positions[j]] = std::make_shared<const Location>(std::move(loc).value());
    cacheable[positions[j]] = true;
  }
  return true;
}

std::vector<LocationPtr> Symbolizer::Impl::ResolveBatch(std::span<const FrameRequest> frames) {
  std::vector<CacheKey> keys(frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    const FrameRequest& f = frames[i];
    uint64_t offset = f.file_offset;
    if (f.is_return_address && offset > 0) {
      --offset;
    }
    keys[i] = CacheKey{f.build_id.empty() ? f.path_hint : f.build_id, offset};
  }
  std::vector<LocationPtr> out(frames.size());
  lru_.GetBatch(keys, out);

  std::vector<size_t> missing;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == nullptr) {
      missing.push_back(i);
    } else {
      lru_hits_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (!missing.empty() && shared_ != nullptr) {
    std::vector<CacheKey> shared_keys;
    shared_keys.reserve(missing.size());
    for (size_t i : missing) {
      shared_keys.push_back(keys[i]);
    }
    std::vector<LocationPtr> found(missing.size());
    shared_->GetBatch(shared_keys, found);
    std::vector<size_t> still_missing;
    for (size_t j = 0; j < missing.size(); ++j) {
      if (found[j] != nullptr) {
        shared_hits_.fetch_add(1, std::memory_order_relaxed);
        lru_.Put(shared_keys[j], found[j]);
        out[missing[j]] = std::move(found[j]);
      } else {
        still_missing.push_back(missing[j]);
      }
    }
    missing = std::move(still_missing);
  }
  if (!missing.empty()) {
    std::vector<CacheKey> new_keys;
    std::vector<LocationPtr> new_values;
    {
      // A batch repeats (build id, offset) pairs: resolve each once, grouped by file so each
      // file is found, opened and asked once, its offsets in order.
      absl::flat_hash_map<std::pair<std::string_view, uint64_t>, LocationPtr> seen;
      absl::flat_hash_map<std::string_view, std::vector<size_t>> by_file;  // -> frame indexes
      std::vector<std::string_view> file_order;
      for (size_t i : missing) {
        if (seen.try_emplace({keys[i].module, keys[i].offset}, nullptr).second) {
          auto [it, inserted] = by_file.try_emplace(keys[i].module);
          if (inserted) {
            file_order.push_back(keys[i].module);
          }
          it->second.push_back(i);
        }
      }
      std::vector<std::string_view> build_ids;
      for (std::string_view file : file_order) {
        const FrameRequest& first = frames[by_file[file].front()];
        if (!first.build_id.empty()) {
          build_ids.push_back(first.build_id);
        }
      }
      // Files whose debuginfod download is pending are retried whenever a download finishes,
      // until the batch deadline; the lock is not held while waiting.
      const auto batch_deadline =
          std::chrono::steady_clock::now() + config_.debuginfod_batch_deadline;
      auto deadline = batch_deadline;
      std::vector<std::string_view> todo = std::move(file_order);
      std::vector<std::string_view> pending;
      std::vector<uint64_t> offsets;
      std::vector<LocationPtr> locs;
      std::vector<bool> cacheable;
      for (bool first_round = true;; first_round = false) {
        const uint64_t generation = locator_.DownloadGeneration();
        pending.clear();
        {
          std::lock_guard<std::mutex> lock(resolve_mu_);
          if (first_round) {
            CheckSharedNegatives(build_ids);
          }
          const auto now = std::chrono::steady_clock::now();
          std::chrono::steady_clock::time_point wait_for_pending = now;
          for (std::string_view file : todo) {
            std::vector<size_t>& idx = by_file[file];
            if (first_round) {
              std::sort(idx.begin(), idx.end(),
                        [&](size_t a, size_t b) { return keys[a].offset < keys[b].offset; });
            }
            offsets.clear();
            for (size_t i : idx) {
              offsets.push_back(keys[i].offset);
            }
            if (!ResolveFile(frames[idx.front()], offsets, locs, cacheable)) {
              pending.push_back(file);
              if (pending_since_.size() > 2 * config_.locator.debuginfod_max_pending + 1024) {
                pending_since_.clear();
              }
              auto since = pending_since_.try_emplace(std::string(file), now).first->second;
              wait_for_pending =
                  std::max(wait_for_pending, since + config_.debuginfod_batch_deadline);
              continue;
            }
            if (!pending_since_.empty()) {
              pending_since_.erase(std::string(file));
            }
            for (size_t j = 0; j < idx.size(); ++j) {
              const size_t i = idx[j];
              seen[{keys[i].module, keys[i].offset}] = locs[j];
              if (cacheable[j]) {
                new_keys.push_back(keys[i]);
                new_values.push_back(locs[j]);
              }
            }
          }
          deadline = std::min(batch_deadline, wait_for_pending);
        }
        if (pending.empty() || std::chrono::steady_clock::now() >= deadline ||
            !locator_.WaitForDownloads(generation, deadline)) {
          break;
        }
        todo.swap(pending);
      }
      for (std::string_view file : pending) {
        pending_debuginfo_.fetch_add(by_file[file].size(), std::memory_order_relaxed);
      }
      for (size_t i : missing) {
        out[i] = seen[{keys[i].module, keys[i].offset}];
      }
    }
    lru_.PutBatch(new_keys, new_values);
    if (shared_ != nullptr && !new_keys.empty()) {
      shared_->PutBatch(new_keys, new_values);
    }
  }
  // Unresolved frames name their file and offset (the frame's own offset, not offset - 1).
  std::vector<bool> was_missing(out.size(), false);
  for (size_t i : missing) {
    was_missing[i] = true;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == nullptr || !out[i]->resolved) {
      auto loc = std::make_shared<Location>();
      loc->display_name =
          UnresolvedName(frames[i].path_hint, frames[i].build_id, frames[i].file_offset);
      out[i] = std::move(loc);
      unresolved_.fetch_add(1, std::memory_order_relaxed);
    } else if (was_missing[i]) {
      resolved_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return out;
}

bool Symbolizer::Impl::DropBuildId(std::string_view build_id) {
  lru_.DropBuildId(build_id);
  bool dropped = shared_ == nullptr || shared_->DropBuildId(build_id);
  std::lock_guard<std::mutex> lock(resolve_mu_);
  std::string key = BuildIdKey(build_id);
  negative_.erase(key);
  negative_entries_.store(negative_.size(), std::memory_order_relaxed);
  if (auto it = module_index_.find(key); it != module_index_.end()) {
    open_bytes_ -= it->second->module->bytes();
    modules_.erase(it->second);
    module_index_.erase(it);
  }
  return dropped;
}

Symbolizer::Stats Symbolizer::Impl::stats() const {
  Stats s;
  s.lru_hits = lru_hits_.load();
  s.shared_hits = shared_hits_.load();
  s.resolved = resolved_.load();
  s.unresolved = unresolved_.load();
  s.negative_hits = negative_hits_.load();
  s.files_opened = files_opened_.load();
  s.files_evicted = files_evicted_.load();
  s.searches = searches_.load();
  s.shared_negative_hits = shared_negative_hits_.load();
  s.pending_debuginfo = pending_debuginfo_.load();
  s.debuginfod = locator_.debuginfod_stats();
  if (worker_ != nullptr) {
    s.worker_starts = worker_->starts();
    s.worker_crashes = worker_->crashes();
  }
  s.open_files = module_index_.size();
  s.negative_entries = negative_entries_.load(std::memory_order_relaxed);
  s.open_bytes = open_bytes_;
  return s;
}

Result<std::unique_ptr<Symbolizer>> Symbolizer::Create(SymbolizerConfig config,
                                                       SymbolCache* shared_cache) {
  if (config.max_open_files == 0) {
    return InvalidArgument("symbolizer: max_open_files must be at least 1");
  }
  if (!config.now) {
    return InvalidArgument("symbolizer: a clock is required");
  }
  std::unique_ptr<DwarfWorker> worker;
  if (config.probe_debug_info) {
    std::vector<std::string> tried;
    std::string executable = FindDwarfWorkerBinary(config.dwarf_worker, &tried);
    if (executable.empty()) {
      if (config.dwarf_engine == nullptr) {
        return NotFound("symbolizer: {} not found (looked at {}); install it next to this "
                        "executable or set $FLAMESTREAM_DWARF_WORKER",
                        kDwarfWorkerName, fmt::join(tried, ", "));
      }
      log::Warn("flamestream-dwarf-worker not found; the DWARF worker will be a fork of this "
                "process (slower to start)",
                {{"looked_at", fmt::format("{}", fmt::join(tried, ", "))}});
    }
    FS_ASSIGN_OR_RETURN(worker,
                        DwarfWorker::Create(std::move(executable), config.dwarf_engine.get(),
                                            config.dwarf_timeout));
  } else if (config.dwarf_engine == nullptr) {
    return InvalidArgument(
        "symbolizer: probe_debug_info=false parses DWARF in this process, which needs "
        "SymbolizerConfig::dwarf_engine (LlvmDwarfEngine() from flamestream::symbols_dwarf)");
  }
  return std::unique_ptr<Symbolizer>(new Symbolizer(
      std::make_unique<Impl>(std::move(config), shared_cache, std::move(worker))));
}

Symbolizer::Symbolizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Symbolizer::~Symbolizer() = default;

std::vector<LocationPtr> Symbolizer::ResolveBatch(std::span<const FrameRequest> frames) {
  return impl_->ResolveBatch(frames);
}

Result<Location> Symbolizer::ResolvePathAddress(const std::string& path, uint64_t address) {
  std::lock_guard<std::mutex> lock(impl_->resolve_mu_);
  FS_ASSIGN_OR_RETURN(DebugModule * module, impl_->ModuleForPath(path));
  return impl_->SymbolizeAt(PathKey(path), module, address);
}

Result<Location> Symbolizer::ResolveBuildIdAddress(std::string_view build_id,
                                                   std::string_view path_hint,
                                                   uint64_t address) {
  std::lock_guard<std::mutex> lock(impl_->resolve_mu_);
  FS_ASSIGN_OR_RETURN(DebugModule * module,
                      impl_->ModuleForBuildId(build_id, path_hint, /*wait=*/true));
  return impl_->SymbolizeAt(ModuleKey(build_id, path_hint), module, address);
}

namespace {
Result<uint64_t> OffsetToAddress(const DebugModule& module, uint64_t offset) {
  if (!module.files().code) {
    return FailedPrecondition(
        "only a separate debug file was found ({}); without the binary's program headers a "
        "file offset cannot be mapped",
        module.files().debug.path);
  }
  return module.files().code->FileOffsetToVaddr(offset);
}
}  // namespace

Result<uint64_t> Symbolizer::PathOffsetToAddress(const std::string& path, uint64_t offset) {
  std::lock_guard<std::mutex> lock(impl_->resolve_mu_);
  FS_ASSIGN_OR_RETURN(DebugModule * module, impl_->ModuleForPath(path));
  return OffsetToAddress(*module, offset);
}

Result<uint64_t> Symbolizer::BuildIdOffsetToAddress(std::string_view build_id,
                                                    std::string_view path_hint,
                                                    uint64_t offset) {
  std::lock_guard<std::mutex> lock(impl_->resolve_mu_);
  FS_ASSIGN_OR_RETURN(DebugModule * module,
                      impl_->ModuleForBuildId(build_id, path_hint, /*wait=*/true));
  return OffsetToAddress(*module, offset);
}

bool Symbolizer::DropBuildId(std::string_view build_id) { return impl_->DropBuildId(build_id); }

void Symbolizer::AddBuildIdPath(std::string build_id, std::string path) {
  impl_->AddBuildIdPath(std::move(build_id), std::move(path));
}

Symbolizer::Stats Symbolizer::stats() const { return impl_->stats(); }

}  // namespace flamestream::symbols
