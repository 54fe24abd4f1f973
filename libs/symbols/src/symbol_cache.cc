#include "flamestream/symbols/symbol_cache.h"

#include <absl/container/flat_hash_map.h>
#include <absl/hash/hash.h>

#include <atomic>
#include <utility>

namespace flamestream::symbols {
namespace {

// Map keys are views into the list node that owns the module string, so a lookup with a
// caller's CacheKey allocates nothing.
struct KeyView {
  std::string_view module;
  uint64_t offset;
  friend bool operator==(const KeyView& a, const KeyView& b) {
    return a.offset == b.offset && a.module == b.module;
  }
  template <typename H>
  friend H AbslHashValue(H h, const KeyView& k) {
    return H::combine(std::move(h), k.module, k.offset);
  }
};

// Rough per-entry overhead: list node, map slot, shared_ptr control block.
constexpr size_t kEntryOverhead = 128;

}  // namespace

class LruSymbolCache::Shard {
 public:
  explicit Shard(size_t max_bytes) : max_bytes_(max_bytes) {}

  LocationPtr Get(const CacheKey& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(KeyView{key.module, key.offset});
    if (it == index_.end()) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    hits_.fetch_add(1, std::memory_order_relaxed);
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->value;
  }

  void Put(const CacheKey& key, LocationPtr value) {
    if (value == nullptr) {
      return;
    }
    size_t bytes = kEntryOverhead + key.module.size() + value->ByteSize();
    if (bytes > max_bytes_) {
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = index_.find(KeyView{key.module, key.offset}); it != index_.end()) {
      bytes_ -= it->second->bytes;
      it->second->value = std::move(value);
      it->second->bytes = bytes;
      bytes_ += bytes;
      lru_.splice(lru_.begin(), lru_, it->second);
    } else {
      lru_.push_front(Node{std::string(key.module), key.offset, std::move(value), bytes});
      index_.emplace(KeyView{lru_.front().module, key.offset}, lru_.begin());
      bytes_ += bytes;
    }
    while (bytes_ > max_bytes_ && !lru_.empty()) {
      Node& victim = lru_.back();
      index_.erase(KeyView{victim.module, victim.offset});
      bytes_ -= victim.bytes;
      lru_.pop_back();
      evictions_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  bool DropBuildId(std::string_view build_id) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = lru_.begin(); it != lru_.end();) {
      if (it->module == build_id) {
        index_.erase(KeyView{it->module, it->offset});
        bytes_ -= it->bytes;
        it = lru_.erase(it);
      } else {
        ++it;
      }
    }
    return true;
  }

  void AddStats(Stats& s) const {
    std::lock_guard<std::mutex> lock(mu_);
    s.hits += hits_.load(std::memory_order_relaxed);
    s.misses += misses_.load(std::memory_order_relaxed);
    s.evictions += evictions_.load(std::memory_order_relaxed);
    s.entries += lru_.size();
    s.bytes += bytes_;
  }

 private:
  struct Node {
    std::string module;
    uint64_t offset;
    LocationPtr value;
    size_t bytes;
  };

  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Node> lru_;  // most recently used first
  absl::flat_hash_map<KeyView, std::list<Node>::iterator> index_;
  size_t bytes_ = 0;
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> evictions_{0};
};

LruSymbolCache::LruSymbolCache(size_t max_bytes, size_t shards) {
  shards = std::max<size_t>(shards, 1);
  for (size_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>(max_bytes / shards));
  }
}

LruSymbolCache::~LruSymbolCache() = default;

LruSymbolCache::Shard& LruSymbolCache::ShardFor(const CacheKey& key) {
  size_t h = absl::HashOf(key.module, key.offset);
  return *shards_[h % shards_.size()];
}

LocationPtr LruSymbolCache::Get(const CacheKey& key) { return ShardFor(key).Get(key); }

void LruSymbolCache::Put(const CacheKey& key, LocationPtr value) {
  ShardFor(key).Put(key, std::move(value));
}

void LruSymbolCache::GetBatch(std::span<const CacheKey> keys, std::span<LocationPtr> out) {
  for (size_t i = 0; i < keys.size() && i < out.size(); ++i) {
    if (LocationPtr hit = Get(keys[i])) {
      out[i] = std::move(hit);
    }
  }
}

void LruSymbolCache::PutBatch(std::span<const CacheKey> keys,
                              std::span<const LocationPtr> values) {
  for (size_t i = 0; i < keys.size() && i < values.size(); ++i) {
    Put(keys[i], values[i]);
  }
}

bool LruSymbolCache::DropBuildId(std::string_view build_id) {
  for (auto& shard : shards_) {
    shard->DropBuildId(build_id);
  }
  return true;
}

LruSymbolCache::Stats LruSymbolCache::stats() const {
  Stats s;
  for (const auto& shard : shards_) {
    shard->AddStats(s);
  }
  return s;
}

}  // namespace flamestream::symbols
