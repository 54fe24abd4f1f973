// Caches of resolved locations keyed by (build id, file offset looked up).
//
//   LruSymbolCache lru(64 << 20);                 // bounded by bytes
//   std::vector<CacheKey> keys = {{"4f1e...", 0x1a2b}};
//   std::vector<LocationPtr> found(keys.size());
//   lru.GetBatch(keys, found);                     // found[i] == nullptr on a miss
//   lru.PutBatch(keys, values);
//
// SymbolCache is the seam for the shared tier: the Symbolizer asks its in-process LRU first,
// then an optional shared cache (Redis, RedisSymbolCache), then resolves. Implementations are
// thread-safe and never block for long: a shared cache that is down reports misses.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/symbols/location.h"

namespace flamestream::symbols {

// How long a build id that could not be resolved stays negative (in the LRU and in Redis) before
// it is tried again: debug info may be uploaded later.
inline constexpr std::chrono::nanoseconds kDefaultNegativeTtl = std::chrono::minutes(5);

struct CacheKey {
  // The module looked up in: its build id (lower-case hex), or, for a file that has none, its
  // path. Path keys stay in the process (the shared tier only takes hex build ids: a path
  // names different files on different nodes).
  std::string_view module;
  uint64_t offset = 0;  // the file offset looked up (already minus 1 for return addresses)
};

class SymbolCache {
 public:
  virtual ~SymbolCache() = default;
  // Fills out[i] for every hit; leaves misses untouched (callers pass nullptrs).
  virtual void GetBatch(std::span<const CacheKey> keys, std::span<LocationPtr> out) = 0;
  virtual void PutBatch(std::span<const CacheKey> keys, std::span<const LocationPtr> values) = 0;
  // Forgets every entry of a build id (re-symbolization after new debug info arrived). May be
  // unsupported (returns false) by caches that cannot enumerate.
  virtual bool DropBuildId(std::string_view build_id) = 0;

  // Negative entries shared by replicas: build ids whose debug info no source had. The
  // defaults share nothing (an in-process cache has no other replicas to tell).
  virtual void PutUnknownBuildId(std::string_view /*build_id*/, std::string_view /*reason*/) {}
  // One flag per build id: true when some replica recorded it as unknown (and it has not
  // expired).
  [[nodiscard]] virtual std::vector<bool> GetUnknownBuildIds(
      std::span<const std::string_view> build_ids) {
    // NOLINTNEXTLINE(modernize-return-braced-init-list): a size, not elements
    return std::vector<bool>(build_ids.size(), false);
  }
};

// In-process LRU bounded by bytes (keys + locations), sharded by key hash to keep lock hold
// times short under several consumer threads.
class LruSymbolCache final : public SymbolCache {
 public:
  explicit LruSymbolCache(size_t max_bytes, size_t shards = 16);
  ~LruSymbolCache() override;

  void GetBatch(std::span<const CacheKey> keys, std::span<LocationPtr> out) override;
  void PutBatch(std::span<const CacheKey> keys, std::span<const LocationPtr> values) override;
  bool DropBuildId(std::string_view build_id) override;

  [[nodiscard]] LocationPtr Get(const CacheKey& key);
  void Put(const CacheKey& key, LocationPtr value);

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
    size_t entries = 0;
    size_t bytes = 0;
  };
  [[nodiscard]] Stats stats() const;

 private:
  class Shard;
  Shard& ShardFor(const CacheKey& key);
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace flamestream::symbols
