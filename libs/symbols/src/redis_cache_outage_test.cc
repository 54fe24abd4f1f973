// RedisSymbolCache through Redis outages (libs/testing's RedisServer fixture): a server killed
// mid-stream and restarted, one hung with SIGSTOP, one unreachable at start, and concurrent
// callers through an outage. Lookups must turn into misses, never stalls, and hits resume.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "flamestream/symbols/redis_cache.h"
#include "flamestream/symbols/symbolizer.h"
#include "flamestream/testing/redis_server.h"
#include "redis_cache_test_util.h"

namespace flamestream::symbols::redis_test {
namespace {

// ---------------------------------------------------------------------------------------------
// Outages: killed, hung, restarted

TEST(RedisSymbolCache, KilledRedisMeansMissesNotStallsAndHitsResumeAfterRestart) {
  const TinyBinary& tiny = Tiny();
  ASSERT_GT(tiny.frames.size(), 50u);
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto cache = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache, nullptr);

  // Warm Redis; these are the answers every later phase must reproduce.
  std::vector<LocationPtr> want = MakeSymbolizer(cache.get())->ResolveBatch(tiny.frames);

  // Mid-stream: a fresh symbolizer (empty LRU) reads batches of 16 from Redis, and Redis dies
  // after the second batch. No cache call may take longer than the command timeout (200 ms)
  // plus scheduling slack.
  TimingCache timed(cache.get());
  auto during = MakeSymbolizer(&timed);
  const size_t kBatch = 16;
  size_t batches = 0;
  for (size_t pos = 0; pos < tiny.frames.size(); pos += kBatch, ++batches) {
    if (batches == 2) {
      (*redis)->Kill();
    }
    size_t n = std::min(kBatch, tiny.frames.size() - pos);
    std::vector<LocationPtr> got = during->ResolveBatch(std::span(tiny.frames).subspan(pos, n));
    ASSERT_EQ(got.size(), n);
    for (size_t i = 0; i < n; ++i) {
      SCOPED_TRACE(fmt::format("frame {}", pos + i));
      ExpectSameLocation(*got[i], *want[pos + i]);
    }
  }
  EXPECT_LT(timed.longest(), milliseconds(400));
  Symbolizer::Stats ds = during->stats();
  EXPECT_EQ(ds.shared_hits, 2 * kBatch);
  EXPECT_EQ(ds.resolved, tiny.frames.size() - 2 * kBatch);  // the rest came from DWARF
  EXPECT_EQ(ds.unresolved, 0u);
  RedisSymbolCache::Stats s = cache->stats();
  EXPECT_FALSE(s.up);
  EXPECT_GE(s.errors, 1u);

  // While down, a lookup does not wait for anything.
  std::vector<CacheKey> keys = {{tiny.info.build_id, tiny.frames[0].file_offset}};
  std::vector<LocationPtr> out(1);
  auto start = Clock::now();
  cache->GetBatch(keys, out);
  EXPECT_LT(Clock::now() - start, milliseconds(100));
  EXPECT_EQ(out[0], nullptr);

  // Restarted (empty, no persistence): after the backoff, writes and hits resume.
  ASSERT_TRUE((*redis)->Restart().ok());
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  uint64_t shared_hits = 0;
  while (Clock::now() < deadline && shared_hits < tiny.frames.size()) {
    MakeSymbolizer(cache.get())->ResolveBatch(tiny.frames);  // resolves and writes back
    auto after = MakeSymbolizer(cache.get());
    std::vector<LocationPtr> got = after->ResolveBatch(tiny.frames);
    shared_hits = after->stats().shared_hits;
    for (size_t i = 0; i < got.size(); ++i) {
      ExpectSameLocation(*got[i], *want[i]);
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(shared_hits, tiny.frames.size());
  s = cache->stats();
  EXPECT_TRUE(s.up);
  EXPECT_GE(s.reconnects, 1u);
}

TEST(RedisSymbolCache, HungRedisTimesOutWithinCommandTimeout) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  RedisCacheConfig config = FastConfig(**redis);
  config.command_timeout = milliseconds(300);
  config.backoff_min = milliseconds(1000);
  config.backoff_max = milliseconds(1000);
  auto cache = MakeCache(config);
  ASSERT_NE(cache, nullptr);
  std::vector<CacheKey> keys = {{kBuildA, 1}};
  std::vector<LocationPtr> values = {MakeLocation({{"f", "f", "/a.c", 1, 1}})};
  cache->PutBatch(keys, values);

  pid_t pid = Inspector((*redis)->port()).ServerPid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  std::vector<LocationPtr> out(1);
  auto start = Clock::now();
  cache->GetBatch(keys, out);
  auto took = Clock::now() - start;
  EXPECT_EQ(out[0], nullptr);
  EXPECT_GE(took, milliseconds(290));  // it did wait for the reply, as long as allowed
  EXPECT_LT(took, milliseconds(800));
  EXPECT_FALSE(cache->up());
  // Within the backoff, no further waiting.
  start = Clock::now();
  cache->GetBatch(keys, out);
  EXPECT_LT(Clock::now() - start, milliseconds(100));
  ASSERT_EQ(::kill(pid, SIGCONT), 0);

  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline && out[0] == nullptr) {
    cache->GetBatch(keys, out);
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_NE(out[0], nullptr);
  EXPECT_EQ(out[0]->frames.at(0).function, "f");
  EXPECT_EQ(cache->stats().reconnects, 1u);
}

TEST(RedisSymbolCache, StartsDownWhenRedisIsUnreachableAndConnectsLater) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  RedisCacheConfig config = FastConfig(**redis);
  (*redis)->Kill();
  auto cache = MakeCache(config);  // not an error: the stage runs without Redis
  ASSERT_NE(cache, nullptr);
  EXPECT_FALSE(cache->up());
  EXPECT_FALSE(cache->Ping());
  ASSERT_TRUE((*redis)->Restart().ok());
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline && !cache->Ping()) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(cache->up());
  EXPECT_EQ(cache->stats().reconnects, 0u);  // the first successful connect is not a reconnect
}

TEST(RedisSymbolCache, ConcurrentCallersSurviveAnOutage) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto cache = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::string build = fmt::format("{:040x}", t + 1);
      std::vector<CacheKey> keys;
      std::vector<LocationPtr> values;
      for (uint64_t i = 0; i < 64; ++i) {
        keys.push_back({build, i});
        values.push_back(MakeLocation({{fmt::format("f{}", i), "", "/a.c", 1, 1}}));
      }
      while (!stop.load()) {
        std::vector<LocationPtr> out(keys.size());
        cache->GetBatch(keys, out);
        for (size_t i = 0; i < out.size(); ++i) {
          if (out[i] != nullptr) {
            ASSERT_EQ(out[i]->frames.at(0).function, fmt::format("f{}", i));
          }
        }
        cache->PutBatch(keys, values);
        calls.fetch_add(1);
      }
    });
  }
  std::this_thread::sleep_for(milliseconds(200));
  (*redis)->Kill();
  std::this_thread::sleep_for(milliseconds(200));
  ASSERT_TRUE((*redis)->Restart().ok());
  std::this_thread::sleep_for(milliseconds(500));
  stop = true;
  for (auto& t : threads) t.join();
  RedisSymbolCache::Stats s = cache->stats();
  EXPECT_GT(calls.load(), 20u);
  EXPECT_TRUE(s.up);
  EXPECT_GE(s.reconnects, 1u);
  EXPECT_GT(s.hits, 0u);
  EXPECT_EQ(s.hits + s.misses, calls.load() * 64);
}

}  // namespace
}  // namespace flamestream::symbols::redis_test
