// RedisSymbolCache against a real redis-server (libs/testing's RedisServer fixture), and a tiny
// C program compiled here with `gcc -O2 -g` for the Symbolizer-level tests.
#include "flamestream/symbols/redis_cache.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "flamestream/common/strings.h"
#include "flamestream/symbols/elf_file.h"
#include "flamestream/symbols/symbolizer.h"
#include "flamestream/testing/redis_server.h"

namespace flamestream::symbols {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using testing::RedisServer;

// ---------------------------------------------------------------------------------------------
// Helpers

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RawContext = std::unique_ptr<redisContext, ContextDeleter>;
using RawReply = std::unique_ptr<redisReply, ReplyDeleter>;

// A direct connection for inspecting what the cache wrote.
class Inspector {
 public:
  explicit Inspector(int port) : c_(redisConnect("127.0.0.1", port)) {}
  RawReply Command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return RawReply(static_cast<redisReply*>(
        redisCommandArgv(c_.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
  }
  std::set<std::string> Keys(const std::string& pattern) {
    std::set<std::string> keys;
    RawReply r = Command({"KEYS", pattern});
    for (size_t i = 0; r != nullptr && i < r->elements; ++i) {
      keys.emplace(r->element[i]->str, r->element[i]->len);
    }
    return keys;
  }
  long long Integer(const std::vector<std::string>& args) {
    RawReply r = Command(args);
    return r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
  }
  pid_t ServerPid() {
    RawReply r = Command({"INFO", "server"});
    if (r == nullptr || r->type != REDIS_REPLY_STRING) return -1;
    std::istringstream in(std::string(r->str, r->len));
    std::string line;
    while (std::getline(in, line)) {
      if (line.starts_with("process_id:")) return std::atoi(line.c_str() + 11);
    }
    return -1;
  }

 private:
  RawContext c_;
};

// Forwards to another cache and records the longest call, to check that the Symbolizer never
// waits on Redis for longer than the timeouts allow.
class TimingCache final : public SymbolCache {
 public:
  explicit TimingCache(SymbolCache* inner) : inner_(inner) {}
  void GetBatch(std::span<const CacheKey> keys, std::span<LocationPtr> out) override {
    auto start = Clock::now();
    inner_->GetBatch(keys, out);
    Record(Clock::now() - start);
  }
  void PutBatch(std::span<const CacheKey> keys, std::span<const LocationPtr> values) override {
    auto start = Clock::now();
    inner_->PutBatch(keys, values);
    Record(Clock::now() - start);
  }
  bool DropBuildId(std::string_view build_id) override { return inner_->DropBuildId(build_id); }
  [[nodiscard]] Clock::duration longest() const { return longest_; }
  void Reset() { longest_ = {}; }

 private:
  void Record(Clock::duration d) { longest_ = std::max(longest_, d); }
  SymbolCache* inner_;
  Clock::duration longest_{};
};

RedisCacheConfig FastConfig(const RedisServer& redis) {
  RedisCacheConfig c;
  c.address = redis.address();
  c.backoff_min = milliseconds(20);
  c.backoff_max = milliseconds(200);
  return c;
}

std::unique_ptr<RedisSymbolCache> MakeCache(const RedisCacheConfig& config) {
  auto cache = RedisSymbolCache::Create(config);
  EXPECT_TRUE(cache.ok()) << cache.error();
  return cache.ok() ? std::move(cache).value() : nullptr;
}

void ExpectSameLocation(const Location& a, const Location& b) {
  EXPECT_EQ(a.resolved, b.resolved);
  EXPECT_EQ(a.display_name, b.display_name);
  EXPECT_EQ(a.frames, b.frames);
}

LocationPtr MakeLocation(std::vector<SourceFrame> frames) {
  auto loc = std::make_shared<Location>();
  loc->resolved = !frames.empty();
  loc->display_name = frames.empty() ? "libfoo.so+0x10" : frames.front().function;
  loc->frames = std::move(frames);
  return loc;
}

constexpr std::string_view kBuildA = "4f1e0c0ffee0000000000000000000000000000a";
constexpr std::string_view kBuildB = "4f1e0c0ffee0000000000000000000000000000b";

// A tiny C program with an inlined chain, built with the system gcc.
constexpr const char* kTinySource = R"(
static inline __attribute__((always_inline)) int leaf(int x) { return x * 3 + (x >> 2); }
static inline __attribute__((always_inline)) int middle(int x) {
  int s = 0;
  for (int i = 0; i < x; i++) s += leaf(i ^ s);
  return s;
}
__attribute__((noinline)) int outer(int x) { return middle(x) + middle(x + 7); }
__attribute__((noinline)) int other(int x) { return outer(x) * outer(x + 1); }
int main(int argc, char** argv) { (void)argv; return other(argc) & 0x7f; }
)";

struct TinyBinary {
  std::string dir;
  std::string path;
  ElfInfo info;
  std::vector<FrameRequest> frames;  // every byte of outer/other/main, as file offsets
};

std::string RunShell(const std::string& cmd) {
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

const TinyBinary& Tiny() {
  static const TinyBinary* tiny = [] {
    auto* t = new TinyBinary;
    char tmpl[] = "/tmp/fs-redis-cache-test-XXXXXX";
    t->dir = ::mkdtemp(tmpl);
    t->path = t->dir + "/tiny";
    std::ofstream(t->dir + "/tiny.c") << kTinySource;
    std::string cmd = "gcc -O2 -g -Wl,--build-id -o " + t->path + " " + t->dir + "/tiny.c 2>&1";
    std::string out = RunShell(cmd);
    auto info = ReadElfInfo(t->path);
    if (!info.ok()) {
      ADD_FAILURE() << "gcc failed: " << out << " " << info.error();
      return t;
    }
    t->info = *info;
    std::istringstream nm(RunShell("nm -S --defined-only " + t->path));
    std::string line;
    while (std::getline(nm, line)) {
      auto p = common::SplitNonEmpty(line, ' ');
      if (p.size() != 4 || (p[3] != "outer" && p[3] != "other" && p[3] != "main")) continue;
      uint64_t addr = *common::ParseInt<uint64_t>(p[0], 16);
      uint64_t size = *common::ParseInt<uint64_t>(p[1], 16);
      for (uint64_t a = addr; a < addr + size; ++a) {
        for (const LoadSegment& s : t->info.segments) {
          if (a >= s.vaddr && a < s.vaddr + s.filesz) {
            t->frames.push_back({t->info.build_id, t->path, a - s.vaddr + s.offset, false});
          }
        }
      }
    }
    return t;
  }();
  return *tiny;
}

SymbolizerConfig TinyConfig() {
  SymbolizerConfig c;
  c.locator.debug_dirs = {};
  c.locator.debuginfod = false;
  return c;
}

std::unique_ptr<Symbolizer> MakeSymbolizer(SymbolCache* shared, size_t lru_bytes = 64 << 20) {
  SymbolizerConfig c = TinyConfig();
  c.lru_bytes = lru_bytes;
  auto s = Symbolizer::Create(c, shared);
  EXPECT_TRUE(s.ok()) << s.error();
  return s.ok() ? std::move(s).value() : nullptr;
}

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
// (3) Outages: killed, hung, restarted

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

// ---------------------------------------------------------------------------------------------
// (4) DropBuildId, negative entries

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
    EXPECT_EQ(out[i] != nullptr, keys[i].build_id == kBuildB) << i;
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
// (5) TTL

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
}  // namespace flamestream::symbols
