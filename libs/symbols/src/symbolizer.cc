#include "flamestream/symbols/symbolizer.h"

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <list>
#include <mutex>
#include <utility>

#include "flamestream/log/log.h"
#include "llvm_module.h"

namespace flamestream::symbols {
namespace {

std::string BuildIdKey(std::string_view build_id) { return "b:" + std::string(build_id); }
std::string PathKey(std::string_view path) { return "p:" + std::string(path); }

}  // namespace

class Symbolizer::Impl {
 public:
  Impl(SymbolizerConfig config, SymbolCache* shared)
      : config_(std::move(config)),
        locator_(config_.locator),
        lru_(config_.lru_bytes),
        shared_(shared) {}

  std::vector<LocationPtr> ResolveBatch(std::span<const FrameRequest> frames);
  Result<LlvmModule*> ModuleForBuildId(std::string_view build_id, std::string_view path_hint);
  Result<LlvmModule*> ModuleForPath(const std::string& path);
  void DropBuildId(std::string_view build_id);
  void AddBuildIdPath(std::string build_id, std::string path) {
    std::lock_guard<std::mutex> lock(resolve_mu_);
    locator_.AddBuildIdPath(std::move(build_id), std::move(path));
  }
  Stats stats() const;

  std::mutex resolve_mu_;  // guards locator_, modules_, negative_ (LLVM is single-threaded)

 private:
  struct OpenModule {
    std::string key;
    std::unique_ptr<LlvmModule> module;
  };
  struct NegativeEntry {
    std::chrono::steady_clock::time_point expires;
    Status error;
  };

  // Returns the open module for `key`, locating and opening it with `locate` on a miss.
  template <typename LocateFn>
  Result<LlvmModule*> GetModule(const std::string& key, LocateFn&& locate);
  LocationPtr ResolveOne(const FrameRequest& req, uint64_t lookup_offset, bool* cacheable);

  SymbolizerConfig config_;
  DebugLocator locator_;
  LruSymbolCache lru_;
  SymbolCache* shared_;

  std::list<OpenModule> modules_;  // most recently used first
  absl::flat_hash_map<std::string, std::list<OpenModule>::iterator> module_index_;
  uint64_t open_bytes_ = 0;
  absl::flat_hash_map<std::string, NegativeEntry> negative_;

  std::atomic<uint64_t> lru_hits_{0};
  std::atomic<uint64_t> shared_hits_{0};
  std::atomic<uint64_t> resolved_{0};
  std::atomic<uint64_t> unresolved_{0};
  std::atomic<uint64_t> negative_hits_{0};
  std::atomic<uint64_t> files_opened_{0};
  std::atomic<uint64_t> files_evicted_{0};
};

template <typename LocateFn>
Result<LlvmModule*> Symbolizer::Impl::GetModule(const std::string& key, LocateFn&& locate) {
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
  }
  Result<DebugFiles> files = locate();
  Result<std::unique_ptr<LlvmModule>> module =
      files.ok() ? LlvmModule::Open(std::move(files).value(), config_.probe_debug_info)
                 : Result<std::unique_ptr<LlvmModule>>(files.error());
  if (!module.ok()) {
    log::Warn("no debug info", {{"key", key}, {"error", module.error()}});
    negative_[key] = {now + config_.negative_ttl, module.error()};
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

Result<LlvmModule*> Symbolizer::Impl::ModuleForBuildId(std::string_view build_id,
                                                       std::string_view path_hint) {
  if (build_id.empty()) {
    if (path_hint.empty()) {
      return InvalidArgument("a frame needs a build id or a path");
    }
    return GetModule(PathKey(path_hint), [&] { return locator_.Locate("", path_hint); });
  }
  return GetModule(BuildIdKey(build_id), [&] { return locator_.Locate(build_id, path_hint); });
}

Result<LlvmModule*> Symbolizer::Impl::ModuleForPath(const std::string& path) {
  return GetModule(PathKey(path), [&] { return locator_.LocateForPath(path); });
}

LocationPtr Symbolizer::Impl::ResolveOne(const FrameRequest& req, uint64_t lookup_offset,
                                         bool* cacheable) {
  *cacheable = false;
  auto module = ModuleForBuildId(req.build_id, req.path_hint);
  if (!module.ok()) {
    return nullptr;
  }
  const DebugFiles& files = (*module)->files();
  if (!files.code) {
    return nullptr;
  }
  auto address = files.code->FileOffsetToVaddr(lookup_offset);
  if (!address.ok()) {
    return nullptr;
  }
  auto loc = (*module)->Symbolize(*address);
  if (!loc.ok()) {
    return nullptr;
  }
  *cacheable = true;  // the debug file answered; the answer will not change
  if (loc->resolved) {
    loc->display_name = loc->frames.front().function;
  } else {
    loc->frames.clear();
  }
  return std::make_shared<const Location>(std::move(loc).value());
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
      std::lock_guard<std::mutex> lock(resolve_mu_);
      // A batch repeats (build id, offset) pairs; resolve each once.
      absl::flat_hash_map<std::pair<std::string_view, uint64_t>, LocationPtr> seen;
      for (size_t i : missing) {
        auto [it, inserted] = seen.try_emplace({keys[i].build_id, keys[i].offset}, nullptr);
        if (inserted) {
          bool cacheable = false;
          it->second = ResolveOne(frames[i], keys[i].offset, &cacheable);
          if (cacheable) {
            new_keys.push_back(keys[i]);
            new_values.push_back(it->second);
          }
        }
        out[i] = it->second;
      }
    }
    lru_.PutBatch(new_keys, new_values);
    if (shared_ != nullptr && !new_keys.empty()) {
      shared_->PutBatch(new_keys, new_values);
    }
  }
  // Unresolved frames name their file and offset (the frame's own offset, not offset - 1).
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == nullptr || !out[i]->resolved) {
      auto loc = std::make_shared<Location>();
      loc->display_name =
          UnresolvedName(frames[i].path_hint, frames[i].build_id, frames[i].file_offset);
      out[i] = std::move(loc);
      unresolved_.fetch_add(1, std::memory_order_relaxed);
    } else if (std::find(missing.begin(), missing.end(), i) != missing.end()) {
      resolved_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return out;
}

void Symbolizer::Impl::DropBuildId(std::string_view build_id) {
  lru_.DropBuildId(build_id);
  if (shared_ != nullptr) {
    shared_->DropBuildId(build_id);
  }
  std::lock_guard<std::mutex> lock(resolve_mu_);
  std::string key = BuildIdKey(build_id);
  negative_.erase(key);
  if (auto it = module_index_.find(key); it != module_index_.end()) {
    open_bytes_ -= it->second->module->bytes();
    modules_.erase(it->second);
    module_index_.erase(it);
  }
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
  s.open_files = module_index_.size();
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
  return std::unique_ptr<Symbolizer>(
      new Symbolizer(std::make_unique<Impl>(std::move(config), shared_cache)));
}

Symbolizer::Symbolizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Symbolizer::~Symbolizer() = default;

std::vector<LocationPtr> Symbolizer::ResolveBatch(std::span<const FrameRequest> frames) {
  return impl_->ResolveBatch(frames);
}

Result<Location> Symbolizer::ResolvePathAddress(const std::string& path, uint64_t address) {
  std::lock_guard<std::mutex> lock(impl_->resolve_mu_);
  FS_ASSIGN_OR_RETURN(LlvmModule * module, impl_->ModuleForPath(path));
  return module->Symbolize(address);
}

Result<Location> Symbolizer::ResolveBuildIdAddress(std::string_view build_id,
                                                   std::string_view path_hint,
                                                   uint64_t address) {
  std::lock_guard<std::mutex> lock(impl_->resolve_mu_);
  FS_ASSIGN_OR_RETURN(LlvmModule * module, impl_->ModuleForBuildId(build_id, path_hint));
  return module->Symbolize(address);
}

namespace {
Result<uint64_t> OffsetToAddress(const LlvmModule& module, uint64_t offset) {
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
  FS_ASSIGN_OR_RETURN(LlvmModule * module, impl_->ModuleForPath(path));
  return OffsetToAddress(*module, offset);
}

Result<uint64_t> Symbolizer::BuildIdOffsetToAddress(std::string_view build_id,
                                                    std::string_view path_hint,
                                                    uint64_t offset) {
  std::lock_guard<std::mutex> lock(impl_->resolve_mu_);
  FS_ASSIGN_OR_RETURN(LlvmModule * module, impl_->ModuleForBuildId(build_id, path_hint));
  return OffsetToAddress(*module, offset);
}

void Symbolizer::DropBuildId(std::string_view build_id) { impl_->DropBuildId(build_id); }

void Symbolizer::AddBuildIdPath(std::string build_id, std::string path) {
  impl_->AddBuildIdPath(std::move(build_id), std::move(path));
}

Symbolizer::Stats Symbolizer::stats() const { return impl_->stats(); }

}  // namespace flamestream::symbols
