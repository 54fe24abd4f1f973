// Helpers shared by the RedisSymbolCache tests (redis_cache_test.cc: round trips, sharing,
// DropBuildId, negative entries and TTLs; redis_cache_outage_test.cc: a killed, hung or
// unreachable server): a direct Redis connection to inspect what the cache wrote, a cache that
// times its calls, and a tiny C program compiled here with `gcc -O2 -g` for the
// Symbolizer-level tests.
//
//   auto redis = RedisServer::Start();
//   auto cache = MakeCache(FastConfig(**redis));
//   std::vector<LocationPtr> got = MakeSymbolizer(cache.get())->ResolveBatch(Tiny().frames);
//   EXPECT_EQ(Inspector((*redis)->port()).Keys("*").size(), got.size());
#pragma once

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/strings.h"
#include "flamestream/symbols/elf_file.h"
#include "flamestream/symbols/redis_cache.h"
#include "flamestream/symbols/symbol_cache.h"
#include "flamestream/symbols/symbolizer.h"
#include "flamestream/testing/redis_server.h"

namespace flamestream::symbols::redis_test {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using flamestream::testing::RedisServer;

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

inline RedisCacheConfig FastConfig(const RedisServer& redis) {
  RedisCacheConfig c;
  c.address = redis.address();
  c.backoff_min = milliseconds(20);
  c.backoff_max = milliseconds(200);
  return c;
}

inline std::unique_ptr<RedisSymbolCache> MakeCache(const RedisCacheConfig& config) {
  auto cache = RedisSymbolCache::Create(config);
  EXPECT_TRUE(cache.ok()) << cache.error();
  return cache.ok() ? std::move(cache).value() : nullptr;
}

inline void ExpectSameLocation(const Location& a, const Location& b) {
  EXPECT_EQ(a.resolved, b.resolved);
  EXPECT_EQ(a.display_name, b.display_name);
  EXPECT_EQ(a.frames, b.frames);
}

inline LocationPtr MakeLocation(std::vector<SourceFrame> frames) {
  auto loc = std::make_shared<Location>();
  loc->resolved = !frames.empty();
  loc->display_name = frames.empty() ? "libfoo.so+0x10" : frames.front().function;
  loc->frames = std::move(frames);
  return loc;
}

inline constexpr std::string_view kBuildA = "4f1e0c0ffee0000000000000000000000000000a";
inline constexpr std::string_view kBuildB = "4f1e0c0ffee0000000000000000000000000000b";

// A tiny C program with an inlined chain, built with the system gcc.
inline constexpr const char* kTinySource = R"(
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

inline std::string RunShell(const std::string& cmd) {
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

inline const TinyBinary& Tiny() {
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

inline SymbolizerConfig TinyConfig() {
  SymbolizerConfig c;
  c.locator.debug_dirs = {};
  c.locator.debuginfod = false;
  return c;
}

inline std::unique_ptr<Symbolizer> MakeSymbolizer(SymbolCache* shared,
                                                  size_t lru_bytes = 64 << 20) {
  SymbolizerConfig c = TinyConfig();
  c.lru_bytes = lru_bytes;
  auto s = Symbolizer::Create(c, shared);
  EXPECT_TRUE(s.ok()) << s.error();
  return s.ok() ? std::move(s).value() : nullptr;
}

}  // namespace flamestream::symbols::redis_test
