// The shared tier of the symbol cache: resolved locations in Redis, shared by every symbolizer
// replica, so each (build id, offset) is resolved once for the whole fleet.
//
//   RedisCacheConfig rc;
//   rc.address = "redis://redis:6379/0";              // or "host:port"
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<RedisSymbolCache> redis, RedisSymbolCache::Create(rc));
//   FS_ASSIGN_OR_RETURN(auto symbolizer, Symbolizer::Create(config, redis.get()));
//   ...
//   RedisSymbolCache::Stats s = redis->stats();       // hits, misses, errors, reconnects, up
//
// Keys: `<prefix><build id>:<hex offset>` (e.g. "fs:sym:4f1e...:1a2b"), value EncodeLocation(),
// written with `SET key value PX ttl`. A batch is one pipelined round trip (MGET for reads, one
// SET per key for writes). Frames keyed by a path instead of a build id (no build id known) are
// never shared: a path names different files on different hosts.
// Negative entries (`<prefix><build id>:neg`, own TTL) record build ids that no replica could
// find debug info for, so others skip the search (PutUnknownBuildId/GetUnknownBuildIds).
//
// Redis is an optimization, never a dependency: when it is down, slow or answers garbage, calls
// return misses (and drop writes) within the configured timeouts, never throw, and the cache
// reconnects on later calls with exponential backoff. While it is down no call waits at all;
// a reconnect attempt happens on at most one thread at a time.
// Thread-safe: one connection guarded by a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/backoff.h"
#include "flamestream/common/status.h"
#include "flamestream/symbols/symbol_cache.h"

struct redisContext;

namespace flamestream::symbols {

struct RedisCacheConfig {
  // "host", "host:port", "[::1]:6379", "redis://[[user]:password@]host[:port][/db]" or
  // "unix:///path/to/redis.sock".
  std::string address = "127.0.0.1:6379";
  // Every key starts with this; lets several deployments share one Redis.
  std::string key_prefix = "fs:sym:";
  // Lifetime of a cached location (refreshed on every write, not on reads).
  std::chrono::nanoseconds ttl = std::chrono::hours(24 * 7);
  // Lifetime of a negative entry (debug info may be uploaded later).
  std::chrono::nanoseconds negative_ttl = kDefaultNegativeTtl;
  // Bounds on how long one call may wait for Redis: the TCP connect, and each socket read or
  // write of a command.
  std::chrono::nanoseconds connect_timeout = std::chrono::milliseconds(200);
  std::chrono::nanoseconds command_timeout = std::chrono::milliseconds(200);
  // Reconnect attempts after a failure wait backoff_min, doubling up to backoff_max.
  std::chrono::nanoseconds backoff_min = std::chrono::milliseconds(100);
  std::chrono::nanoseconds backoff_max = std::chrono::seconds(10);
  // Keys per MGET; larger batches are split into several commands of one pipeline.
  size_t max_keys_per_command = 1024;
};

// A parsed RedisCacheConfig::address.
struct RedisAddress {
  std::string host;       // empty for a unix socket
  int port = 6379;
  std::string unix_path;  // set for unix:// addresses
  int db = 0;
  std::string username;   // Redis 6 ACL user; empty for the default user
  std::string password;   // empty: no AUTH

  friend bool operator==(const RedisAddress&, const RedisAddress&) = default;
};
[[nodiscard]] Result<RedisAddress> ParseRedisAddress(std::string_view address);

class RedisSymbolCache final : public SymbolCache {
 public:
  // Fails only on an invalid config. An unreachable Redis is not an error: the cache starts
  // down (logged once) and connects on a later call.
  [[nodiscard]] static Result<std::unique_ptr<RedisSymbolCache>> Create(RedisCacheConfig config);
  ~RedisSymbolCache() override;
  RedisSymbolCache(const RedisSymbolCache&) = delete;
  RedisSymbolCache& operator=(const RedisSymbolCache&) = delete;

  // SymbolCache. GetBatch fills hits and leaves misses untouched; PutBatch skips null values.
  void GetBatch(std::span<const CacheKey> keys, std::span<LocationPtr> out) override;
  void PutBatch(std::span<const CacheKey> keys, std::span<const LocationPtr> values) override;
  // SCAN MATCH `<prefix><build id>:*` + UNLINK: the build id's locations and its negative
  // entry. False when Redis is unavailable or a command failed (some keys may remain).
  bool DropBuildId(std::string_view build_id) override;

  // Negative cache shared by replicas: `reason` (truncated) is stored for people reading Redis.
  void PutUnknownBuildId(std::string_view build_id, std::string_view reason) override;
  // One flag per build id: true when a negative entry exists. All false when Redis is down.
  [[nodiscard]] std::vector<bool> GetUnknownBuildIds(
      std::span<const std::string_view> build_ids) override;

  // Checks the connection now (PING), connecting if the backoff allows. For readiness probes.
  bool Ping();

  struct Stats {
    uint64_t hits = 0;            // keys found
    uint64_t misses = 0;          // keys not found, including every key asked while down
    uint64_t errors = 0;          // failed connects, commands, timeouts, undecodable values
    uint64_t reconnects = 0;      // successful connects after the first one
    uint64_t writes = 0;          // locations written
    uint64_t negative_hits = 0;   // build ids found in the negative cache
    bool up = false;              // connected and the last command succeeded
  };
  [[nodiscard]] Stats stats() const;
  [[nodiscard]] bool up() const { return up_.load(std::memory_order_relaxed); }

  // The key a location is stored under (tests, debugging).
  [[nodiscard]] std::string KeyFor(const CacheKey& key) const;

 private:
  using Clock = std::chrono::steady_clock;
  struct ContextDeleter {
    void operator()(redisContext* c) const;
  };
  using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

  RedisSymbolCache(RedisCacheConfig config, RedisAddress address);

  // Takes mu_ and makes sure a connection exists; returns a null lock when Redis is down and
  // the caller must give up immediately (backoff not elapsed, or another thread reconnecting).
  std::unique_lock<std::mutex> Acquire();
  // With mu_ held: connects (timeouts, AUTH, SELECT). False on failure (already handled).
  bool ConnectLocked();
  // With mu_ held: drops the connection after an error and schedules the next attempt.
  void FailLocked(std::string_view what, std::string_view error);

  const RedisCacheConfig config_;
  const RedisAddress address_;

  std::mutex mu_;
  ContextPtr ctx_;                     // guarded by mu_; null while down
  Backoff backoff_;                    // guarded by mu_
  bool ever_connected_ = false;        // guarded by mu_
  bool logged_down_ = false;           // guarded by mu_: this outage was logged
  // Readable without mu_, so calls while Redis is down return without waiting for the lock.
  std::atomic<bool> up_{false};
  std::atomic<int64_t> next_attempt_ns_{0};  // steady_clock time of the next connect attempt

  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> negative_hits_{0};
};

}  // namespace flamestream::symbols
