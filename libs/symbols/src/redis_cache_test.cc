// RedisSymbolCache against a real redis-server (libs/testing's RedisServer fixture): address
// parsing, round trips, a second Symbolizer hitting the shared cache, DropBuildId, negative
// entries and TTLs. Outages are in redis_cache_outage_test.cc.
#include "flamestream/symbols/redis_cache.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "flamestream/symbols/symbolizer.h"
#include "flamestream/testing/redis_server.h"
#include "redis_cache_test_util.h"

namespace flamestream::symbols::redis_test {
namespace {

// ---------------------------------------------------------------------------------------------
// Address parsing (no server)

TEST(ParseRedisAddress, AcceptsHostPortUrlsAndSockets) {
  struct Case {
    std::string in;
    RedisAddress want;
  };
  std::vector<Case> cases = {
      {"redis", {.host = "redis"}},
      {"10.0.0.7:6380", {.host = "10.0.0.7", .port = 6380}},
      {"[::1]:7000", {.host = "::1", .port = 7000}},
      {"[::1]", {.host = "::1"}},
      {"redis://cache.svc:6390/3", {.host = "cache.svc", .port = 6390, .db = 3}},
      {"redis://cache.svc", {.host = "cache.svc"}},
      {"redis://cache.svc/", {.host = "cache.svc"}},
      {"redis://:s3cret@h:1/2", {.host = "h", .port = 1, .db = 2, .password = "s3cret"}},
      {"redis://fs:pw@h", {.host = "h", .username = "fs", .password = "pw"}},
      {"redis://pw@h", {.host = "h", .password = "pw"}},
      {"unix:///run/redis.sock", {.host = "", .unix_path = "/run/redis.sock"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    auto got = ParseRedisAddress(c.in);
    ASSERT_TRUE(got.ok()) << got.error();
    EXPECT_EQ(*got, c.want);
  }
}

TEST(ParseRedisAddress, RejectsMalformed) {
  for (std::string bad :
       {"", "h:0", "h:65536", "h:port", "::1:6379", "[::1", "[::1]x", "redis://h/db",
        "redis://:6379", "http://h:1", "unix://rel/path", "rediss://h:6379"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ParseRedisAddress(bad).ok());
  }
}

TEST(ParseRedisAddress, ErrorsNeverShowThePasswordAndTlsSaysWhy) {
  Result<RedisAddress> tls = ParseRedisAddress("rediss://user:s3cret@h:6380");
  ASSERT_FALSE(tls.ok());
  EXPECT_EQ(tls.error().code(), StatusCode::kUnimplemented);
  EXPECT_NE(tls.error().message().find("hiredis"), std::string::npos) << tls.error();
  EXPECT_NE(tls.error().message().find("rediss://***@h:6380"), std::string::npos) << tls.error();
  Result<RedisAddress> db = ParseRedisAddress("redis://:s3cret@h:6379/x");
  ASSERT_FALSE(db.ok());
  for (const Status& e : {tls.error(), db.error()}) {
    EXPECT_EQ(e.message().find("s3cret"), std::string::npos) << e;
  }
}

TEST(RedisSymbolCache, RejectsInvalidConfig) {
  RedisCacheConfig c;
  c.key_prefix = "";
  EXPECT_EQ(RedisSymbolCache::Create(c).error().code(), StatusCode::kInvalidArgument);
  c = RedisCacheConfig{};
  c.backoff_max = milliseconds(1);
  EXPECT_EQ(RedisSymbolCache::Create(c).error().code(), StatusCode::kInvalidArgument);
  c = RedisCacheConfig{};
  c.ttl = std::chrono::nanoseconds(0);
  EXPECT_EQ(RedisSymbolCache::Create(c).error().code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// (1) Round trip

TEST(RedisSymbolCache, RoundTripsLocationsWithInlinedFrames) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto writer = MakeCache(FastConfig(**redis));
  ASSERT_NE(writer, nullptr);
  EXPECT_TRUE(writer->up());

  std::vector<CacheKey> keys = {
      {kBuildA, 0x1a2b}, {kBuildA, 0x1a2c}, {kBuildB, 0x1a2b}, {kBuildB, 0}};
  std::vector<LocationPtr> values = {
      // leaf inlined into middle inlined into outer
      MakeLocation({{"leaf", "leaf", "/src/tiny.c", 2, 60},
                    {"middle", "middle", "/src/tiny.c", 5, 31},
                    {"outer", "outer", "/src/tiny.c", 8, 52}}),
      MakeLocation(
          {{"ns::Shape<int>::Area() const", "_ZNK2ns5ShapeIiE4AreaEv", "/src/a.cc", 12, 7}}),
      MakeLocation({{"??", "??", "??", 0, 0}}),
      MakeLocation({}),  // unresolved: symbol table knew nothing at this offset
  };
  writer->PutBatch(keys, values);
  EXPECT_EQ(writer->stats().writes, 4u);

  auto reader = MakeCache(FastConfig(**redis));  // a second replica's connection
  ASSERT_NE(reader, nullptr);
  std::vector<CacheKey> ask = {keys[0], {kBuildA, 0x9999}, keys[1], keys[2], keys[0], keys[3]};
  std::vector<LocationPtr> out(ask.size());
  reader->GetBatch(ask, out);
  ASSERT_NE(out[0], nullptr);
  ExpectSameLocation(*out[0], *values[0]);
  EXPECT_EQ(out[0]->frames.size(), 3u);
  EXPECT_EQ(out[1], nullptr);
  ASSERT_NE(out[2], nullptr);
  ExpectSameLocation(*out[2], *values[1]);
  ASSERT_NE(out[3], nullptr);
  ExpectSameLocation(*out[3], *values[2]);
  ASSERT_NE(out[4], nullptr);
  ExpectSameLocation(*out[4], *values[0]);
  ASSERT_NE(out[5], nullptr);
  ExpectSameLocation(*out[5], *values[3]);
  RedisSymbolCache::Stats s = reader->stats();
  EXPECT_EQ(s.hits, 5u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_TRUE(s.up);

  Inspector inspect((*redis)->port());
  EXPECT_EQ(
      inspect.Keys("fs:sym:*"),
      (std::set<std::string>{
          "fs:sym:" + std::string(kBuildA) + ":1a2b", "fs:sym:" + std::string(kBuildA) + ":1a2c",
          "fs:sym:" + std::string(kBuildB) + ":1a2b", "fs:sym:" + std::string(kBuildB) + ":0"}));
  EXPECT_EQ(reader->KeyFor(keys[0]), "fs:sym:" + std::string(kBuildA) + ":1a2b");
}

TEST(RedisSymbolCache, AuthenticatesAndSelectsTheUrlsDatabase) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  Inspector inspect((*redis)->port());
  ASSERT_NE(inspect.Command({"CONFIG", "SET", "requirepass", "s3cret"}), nullptr);
  ASSERT_NE(inspect.Command({"AUTH", "s3cret"}), nullptr);

  RedisCacheConfig config = FastConfig(**redis);
  config.address = fmt::format("redis://:wrong@127.0.0.1:{}/2", (*redis)->port());
  auto refused = MakeCache(config);
  ASSERT_NE(refused, nullptr);
  EXPECT_FALSE(refused->up());
  EXPECT_EQ(refused->stats().errors, 1u);

  config.address = fmt::format("redis://:s3cret@127.0.0.1:{}/2", (*redis)->port());
  auto cache = MakeCache(config);
  ASSERT_NE(cache, nullptr);
  EXPECT_TRUE(cache->up());
  std::vector<CacheKey> keys = {{kBuildA, 0x10}};
  std::vector<LocationPtr> values = {MakeLocation({{"f", "f", "/a.c", 1, 1}})};
  cache->PutBatch(keys, values);
  EXPECT_EQ(inspect.Integer({"DBSIZE"}), 0);  // db 0
  ASSERT_NE(inspect.Command({"SELECT", "2"}), nullptr);
  EXPECT_EQ(inspect.Integer({"DBSIZE"}), 1);
}

TEST(RedisSymbolCache, NeverSharesPathKeyedFrames) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto cache = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache, nullptr);
  std::vector<CacheKey> keys = {{"/usr/lib/libfoo.so", 0x10}, {"ABCDEF", 0x10}};
  std::vector<LocationPtr> values = {MakeLocation({{"f", "f", "/a.c", 1, 1}}),
                                     MakeLocation({{"g", "g", "/a.c", 2, 1}})};
  cache->PutBatch(keys, values);
  std::vector<LocationPtr> out(2);
  cache->GetBatch(keys, out);
  EXPECT_EQ(out[0], nullptr);
  EXPECT_EQ(out[1], nullptr);
  EXPECT_EQ(Inspector((*redis)->port()).Integer({"DBSIZE"}), 0);
  EXPECT_EQ(cache->stats().writes, 0u);
}

TEST(RedisSymbolCache, ForeignOrOldValuesReadAsMisses) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto cache = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache, nullptr);
  CacheKey key{kBuildA, 0x40};
  Inspector inspect((*redis)->port());
  ASSERT_NE(inspect.Command({"SET", cache->KeyFor(key), "\x07garbage"}), nullptr);
  std::vector<LocationPtr> out(1);
  cache->GetBatch(std::span(&key, 1), out);
  EXPECT_EQ(out[0], nullptr);
  EXPECT_EQ(cache->stats().misses, 1u);
  EXPECT_EQ(cache->stats().errors, 1u);
  EXPECT_TRUE(cache->up());  // a bad value is not a connection problem
}

TEST(RedisSymbolCache, SplitsLargeBatchesIntoSeveralCommands) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  RedisCacheConfig config = FastConfig(**redis);
  config.max_keys_per_command = 7;
  auto cache = MakeCache(config);
  ASSERT_NE(cache, nullptr);
  std::vector<CacheKey> keys;
  std::vector<LocationPtr> values;
  for (uint64_t i = 0; i < 100; ++i) {
    keys.push_back({kBuildA, i * 16});
    values.push_back(MakeLocation({{fmt::format("fn{}", i), "", "/a.c", uint32_t(i), 0}}));
  }
  cache->PutBatch(std::span(keys).subspan(0, 50), std::span(values).subspan(0, 50));
  std::vector<LocationPtr> out(keys.size());
  cache->GetBatch(keys, out);
  for (size_t i = 0; i < keys.size(); ++i) {
    SCOPED_TRACE(i);
    if (i < 50) {
      ASSERT_NE(out[i], nullptr);
      EXPECT_EQ(out[i]->frames.at(0).function, fmt::format("fn{}", i));
    } else {
      EXPECT_EQ(out[i], nullptr);
    }
  }
  EXPECT_EQ(cache->stats().hits, 50u);
  EXPECT_EQ(cache->stats().misses, 50u);
}

// ---------------------------------------------------------------------------------------------
// (2) A second Symbolizer with an empty LRU hits the shared cache

TEST(RedisSymbolCache, SecondSymbolizerGetsSharedHitsWithSameResults) {
  const TinyBinary& tiny = Tiny();
  ASSERT_GT(tiny.frames.size(), 50u);
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto cache_a = MakeCache(FastConfig(**redis));
  auto cache_b = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache_a, nullptr);
  ASSERT_NE(cache_b, nullptr);

  auto first = MakeSymbolizer(cache_a.get());
  std::vector<LocationPtr> want = first->ResolveBatch(tiny.frames);
  EXPECT_EQ(first->stats().shared_hits, 0u);
  EXPECT_EQ(first->stats().resolved, tiny.frames.size());
  size_t inlined = 0;
  for (const LocationPtr& loc : want) {
    ASSERT_TRUE(loc->resolved) << loc->display_name;
    inlined += loc->frames.size() > 1 ? 1 : 0;
  }
  EXPECT_GT(inlined, 0u) << "the tiny binary should have inlined chains";
  EXPECT_EQ(cache_a->stats().writes, tiny.frames.size());

  auto second = MakeSymbolizer(cache_b.get());
  std::vector<LocationPtr> got = second->ResolveBatch(tiny.frames);
  Symbolizer::Stats s = second->stats();
  EXPECT_EQ(s.shared_hits, tiny.frames.size());
  EXPECT_EQ(s.resolved, 0u);
  EXPECT_EQ(s.files_opened, 0u);  // never touched DWARF
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(fmt::format("offset {:#x}", tiny.frames[i].file_offset));
    ExpectSameLocation(*got[i], *want[i]);
  }
  EXPECT_EQ(cache_b->stats().hits, tiny.frames.size());
}

// ---------------------------------------------------------------------------------------------
// (3) DropBuildId, negative entries

TEST(RedisSymbolCache, DropBuildIdRemovesOnlyThatBuildIdsKeys) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  RedisCacheConfig config = FastConfig(**redis);
  auto cache = MakeCache(config);
  ASSERT_NE(cache, nullptr);
  std::vector<CacheKey> keys;
  std::vector<LocationPtr> values;
  // Enough keys for several SCAN steps.
  for (uint64_t i = 0; i < 2500; ++i) {
    keys.push_back({i % 2 == 0 ? kBuildA : kBuildB, i});
    values.push_back(MakeLocation({{"f", "f", "/a.c", 1, 1}}));
  }
  cache->PutBatch(keys, values);
  cache->PutUnknownBuildId(kBuildA, "not found anywhere");
  cache->PutUnknownBuildId(kBuildB, "not found anywhere");
  Inspector inspect((*redis)->port());
  // A key of another deployment whose prefix starts like A's keys.
  ASSERT_NE(inspect.Command({"SET", "fs:sym:" + std::string(kBuildA) + "0:1", "x"}), nullptr);
  ASSERT_NE(inspect.Command({"SET", "other:" + std::string(kBuildA) + ":1", "x"}), nullptr);
  ASSERT_EQ(inspect.Integer({"DBSIZE"}), 2500 + 2 + 2);

  EXPECT_TRUE(cache->DropBuildId(kBuildA));
  EXPECT_TRUE(inspect.Keys("fs:sym:" + std::string(kBuildA) + ":*").empty());
  EXPECT_EQ(inspect.Keys("fs:sym:" + std::string(kBuildB) + ":*").size(), 1250u + 1);
  EXPECT_EQ(inspect.Integer({"DBSIZE"}), 1250 + 1 + 2);
  std::vector<std::string_view> ids = {kBuildA, kBuildB};
  EXPECT_EQ(cache->GetUnknownBuildIds(ids), (std::vector<bool>{false, true}));

  std::vector<LocationPtr> out(keys.size());
  cache->GetBatch(keys, out);
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(out[i] != nullptr, keys[i].module == kBuildB) << i;
  }

  // Down: reported, not pretended.
  (*redis)->Kill();
  EXPECT_FALSE(cache->DropBuildId(kBuildB));
}

TEST(RedisSymbolCache, SymbolizerDropBuildIdReachesRedis) {
  const TinyBinary& tiny = Tiny();
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto cache = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache, nullptr);
  auto sym = MakeSymbolizer(cache.get());
  sym->ResolveBatch(tiny.frames);
  Inspector inspect((*redis)->port());
  EXPECT_EQ(inspect.Keys("fs:sym:" + tiny.info.build_id + ":*").size(), tiny.frames.size());
  sym->DropBuildId(tiny.info.build_id);
  EXPECT_TRUE(inspect.Keys("fs:sym:*").empty());
}

// A build id one replica searched everywhere (debug dirs, debuginfod) and found nowhere is
// shared through Redis: a second replica skips the whole search, debuginfod included, until
// the negative entry expires or a replay drops it.
TEST(RedisSymbolCache, SecondSymbolizerSkipsTheSearchAnotherReplicaFoundNothingFor) {
  // A debuginfod server that knows nothing and counts what it is asked.
  httplib::Server debuginfod;
  std::atomic<int> asked{0};
  debuginfod.Get(".*", [&](const httplib::Request&, httplib::Response& res) {
    asked.fetch_add(1);
    res.status = 404;
  });
  const int port = debuginfod.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread server([&] { debuginfod.listen_after_bind(); });
  struct StopServer {
    httplib::Server& s;
    std::thread& t;
    ~StopServer() {
      s.stop();
      t.join();
    }
  } stop_server{debuginfod, server};
  const std::filesystem::path tmp =
      std::filesystem::temp_directory_path() / fmt::format("fs-symneg-{}", ::getpid());
  std::filesystem::create_directories(tmp);
  ::setenv("DEBUGINFOD_URLS", fmt::format("http://127.0.0.1:{}", port).c_str(), 1);
  ::setenv("DEBUGINFOD_TIMEOUT", "5", 1);

  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  const std::string unknown = "00deadbeef00deadbeef00deadbeef00deadbeef";
  const FrameRequest frame{.build_id = unknown,
                           .path_hint = "/nonexistent/libgone.so",
                           .file_offset = 0x1234,
                           .is_return_address = false};
  // Each replica its own debuginfod client cache, as on separate hosts (libdebuginfod caches
  // misses locally too, which would hide the second replica's request).
  auto replica = [&](const char* name, SymbolCache* cache) {
    ::setenv("DEBUGINFOD_CACHE_PATH", (tmp / name).c_str(), 1);
    SymbolizerConfig c = TinyConfig();
    c.locator.debuginfod = true;
    auto s = Symbolizer::Create(c, cache);
    EXPECT_TRUE(s.ok()) << s.error();
    return std::move(s).value();
  };

  auto cache_a = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache_a, nullptr);
  auto first = replica("a", cache_a.get());
  auto out = first->ResolveBatch({&frame, 1});
  EXPECT_FALSE(out[0]->resolved);
  EXPECT_EQ(out[0]->display_name, "libgone.so+0x1234");
  EXPECT_EQ(first->stats().searches, 1u);
  EXPECT_EQ(first->stats().shared_negative_hits, 0u);
  const int asked_by_first = asked.load();
  EXPECT_GE(asked_by_first, 1) << "the first replica should have asked debuginfod";
  Inspector inspect((*redis)->port());
  EXPECT_EQ(inspect.Keys("fs:sym:" + unknown + ":neg").size(), 1u);

  auto cache_b = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache_b, nullptr);
  auto second = replica("b", cache_b.get());
  out = second->ResolveBatch({&frame, 1});
  EXPECT_FALSE(out[0]->resolved);
  EXPECT_EQ(out[0]->display_name, "libgone.so+0x1234");
  EXPECT_EQ(second->stats().searches, 0u);
  EXPECT_EQ(second->stats().shared_negative_hits, 1u);
  EXPECT_EQ(cache_b->stats().negative_hits, 1u);
  EXPECT_EQ(asked.load(), asked_by_first) << "the second replica asked debuginfod again";
  // Later batches of the same replica do not ask Redis again (the entry is now local).
  second->ResolveBatch({&frame, 1});
  EXPECT_EQ(cache_b->stats().negative_hits, 1u);

  // Replay's --build-id drops the shared negative entry: a fresh replica searches again.
  EXPECT_TRUE(second->DropBuildId(unknown));
  EXPECT_TRUE(inspect.Keys("fs:sym:" + unknown + ":neg").empty());
  auto cache_c = MakeCache(FastConfig(**redis));
  ASSERT_NE(cache_c, nullptr);
  auto third = replica("c", cache_c.get());
  third->ResolveBatch({&frame, 1});
  EXPECT_EQ(third->stats().searches, 1u);
  EXPECT_EQ(third->stats().shared_negative_hits, 0u);
  EXPECT_GT(asked.load(), asked_by_first);

  ::unsetenv("DEBUGINFOD_URLS");
  ::unsetenv("DEBUGINFOD_CACHE_PATH");
  ::unsetenv("DEBUGINFOD_TIMEOUT");
  std::filesystem::remove_all(tmp);
}

TEST(RedisSymbolCache, NegativeEntriesHaveTheirOwnTtl) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  RedisCacheConfig config = FastConfig(**redis);
  config.negative_ttl = milliseconds(300);
  auto cache = MakeCache(config);
  ASSERT_NE(cache, nullptr);
  cache->PutUnknownBuildId(kBuildA, "no debug info: NOT_FOUND");
  std::vector<std::string_view> ids = {kBuildA, kBuildB, "/not/a/build/id"};
  EXPECT_EQ(cache->GetUnknownBuildIds(ids), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(cache->stats().negative_hits, 1u);
  Inspector inspect((*redis)->port());
  const std::string key = "fs:sym:" + std::string(kBuildA) + ":neg";
  long long pttl = inspect.Integer({"PTTL", key});
  EXPECT_GT(pttl, 0);
  EXPECT_LE(pttl, 300);
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(cache->GetUnknownBuildIds(ids), (std::vector<bool>{false, false, false}));
}

// ---------------------------------------------------------------------------------------------
// (4) TTL

TEST(RedisSymbolCache, WritesCarryTheConfiguredTtl) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto cache = MakeCache(FastConfig(**redis));  // default ttl: 7 days
  ASSERT_NE(cache, nullptr);
  std::vector<CacheKey> keys = {{kBuildA, 0x10}};
  std::vector<LocationPtr> values = {MakeLocation({{"f", "f", "/a.c", 1, 1}})};
  cache->PutBatch(keys, values);
  Inspector inspect((*redis)->port());
  long long ttl = inspect.Integer({"TTL", cache->KeyFor(keys[0])});
  EXPECT_GT(ttl, 7 * 24 * 3600 - 60);
  EXPECT_LE(ttl, 7 * 24 * 3600);

  RedisCacheConfig shortc = FastConfig(**redis);
  shortc.ttl = milliseconds(200);
  auto short_cache = MakeCache(shortc);
  std::vector<CacheKey> key2 = {{kBuildB, 0x20}};
  short_cache->PutBatch(key2, values);
  long long pttl = inspect.Integer({"PTTL", short_cache->KeyFor(key2[0])});
  EXPECT_GT(pttl, 0);
  EXPECT_LE(pttl, 200);
  std::this_thread::sleep_for(milliseconds(300));
  std::vector<LocationPtr> out(1);
  short_cache->GetBatch(key2, out);
  EXPECT_EQ(out[0], nullptr);  // expired
}

}  // namespace
}  // namespace flamestream::symbols::redis_test
