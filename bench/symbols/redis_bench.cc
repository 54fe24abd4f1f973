// Frames per second through the shared Redis tier (RedisSymbolCache), one instance, one
// connection, on the test corpus's real locations:
//   BM_RedisPath      Symbolizer::ResolveBatch with the in-process LRU disabled (lru_bytes = 0)
//                     and a warm Redis: every frame is one key of the batch's pipelined MGET,
//                     decoded into a Location (batches of 512)
//   BM_RedisGetBatch  RedisSymbolCache::GetBatch alone (no Symbolizer around it)
//   BM_RedisPutBatch  RedisSymbolCache::PutBatch (pipelined SET ... PX)
// Methodology: a private redis-server (libs/testing's fixture, loopback TCP, no persistence) is
// started by the benchmark; Redis is filled once from a DWARF resolution of the workload before
// timing; items/s is frames (keys) per second of wall time on this thread, including Redis's
// own CPU time on the same machine (so on a 2-core box client and server share the cores).
// Set FS_BENCH_REDIS=host:port to measure against another server instead.
// Run: build-*/bench/symbols_redis_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "flamestream/common/strings.h"
#include "flamestream/symbols/elf_file.h"
#include "flamestream/symbols/redis_cache.h"
#include "flamestream/symbols/symbolizer.h"
#include "flamestream/testing/redis_server.h"

namespace flamestream::symbols {
namespace {

constexpr size_t kBatch = 512;

std::string CorpusDir() {
  const char* env = std::getenv("FS_SYMBOLS_CORPUS");
  return env != nullptr ? env : FS_SYMBOLS_CORPUS_DIR;
}

std::string RunShell(const std::string& cmd) {
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

struct Env {
  std::unique_ptr<testing::RedisServer> server;  // null with FS_BENCH_REDIS
  std::unique_ptr<RedisSymbolCache> cache;
  std::vector<std::string> build_ids;  // storage for the requests' views
  std::vector<std::string> paths;
  std::vector<FrameRequest> requests;
  std::vector<CacheKey> keys;
  std::vector<LocationPtr> values;
  std::string error;
};

SymbolizerConfig BenchConfig() {
  SymbolizerConfig config;
  config.locator.debug_dirs = {CorpusDir() + "/debugroot"};
  config.locator.debuginfod = false;
  return config;
}

// Every function start and every 5th byte inside each function of four corpus binaries (as in
// symbols_bench), resolved once from DWARF into a Redis that the benchmarks then read.
const Env& GetEnv() {
  static Env* env = [] {
    auto* e = new Env;
    RedisCacheConfig rc;
    if (const char* addr = std::getenv("FS_BENCH_REDIS"); addr != nullptr) {
      rc.address = addr;
    } else {
      auto server = testing::RedisServer::Start();
      if (!server.ok()) {
        e->error = server.error().ToString();
        return e;
      }
      e->server = std::move(server).value();
      rc.address = e->server->address();
    }
    rc.key_prefix = "fs:symbench:";
    auto cache = RedisSymbolCache::Create(rc);
    if (!cache.ok() || !(*cache)->Ping()) {
      e->error = "redis unavailable";
      return e;
    }
    e->cache = std::move(cache).value();
    e->build_ids.reserve(4);
    e->paths.reserve(4);
    for (const char* name : {"app_pie", "app_nopie", "calc_nopie", "libshapes.so"}) {
      std::string path = CorpusDir() + "/" + name;
      auto info = ReadElfInfo(path);
      if (!info.ok()) continue;
      e->build_ids.push_back(info->build_id);
      e->paths.push_back(path);
      std::istringstream nm(RunShell("nm -S --defined-only " + path));
      std::string line;
      while (std::getline(nm, line)) {
        auto p = common::SplitNonEmpty(line, ' ');
        if (p.size() != 4 || (p[2] != "t" && p[2] != "T" && p[2] != "W" && p[2] != "w")) continue;
        uint64_t addr = *common::ParseInt<uint64_t>(p[0], 16);
        uint64_t size = *common::ParseInt<uint64_t>(p[1], 16);
        for (uint64_t off = 0; off < size; off += 5) {
          for (const LoadSegment& s : info->segments) {
            if (addr + off >= s.vaddr && addr + off < s.vaddr + s.filesz) {
              e->requests.push_back({e->build_ids.back(), e->paths.back(),
                                     addr + off - s.vaddr + s.offset, false});
            }
          }
        }
      }
    }
    if (e->requests.empty()) {
      e->error = "no corpus at " + CorpusDir();
      return e;
    }
    auto sym = Symbolizer::Create(BenchConfig(), e->cache.get());  // fills Redis
    e->values = (*sym)->ResolveBatch(e->requests);
    for (const FrameRequest& r : e->requests) e->keys.push_back({r.build_id, r.file_offset});
    return e;
  }();
  return *env;
}

void BM_RedisPath(benchmark::State& state) {
  const Env& e = GetEnv();
  if (!e.error.empty()) {
    state.SkipWithError(e.error.c_str());
    return;
  }
  SymbolizerConfig config = BenchConfig();
  config.lru_bytes = 0;  // every frame goes to Redis
  auto sym = Symbolizer::Create(config, e.cache.get());
  size_t pos = 0;
  for (auto _ : state) {
    size_t n = std::min(kBatch, e.requests.size() - pos);
    auto out = (*sym)->ResolveBatch(std::span(e.requests).subspan(pos, n));
    benchmark::DoNotOptimize(out.data());
    pos = pos + n >= e.requests.size() ? 0 : pos + n;
    state.SetItemsProcessed(state.items_processed() + static_cast<int64_t>(n));
  }
  Symbolizer::Stats s = (*sym)->stats();
  state.counters["shared_hit_ratio"] =
      static_cast<double>(s.shared_hits) /
      static_cast<double>(std::max<uint64_t>(1, s.shared_hits + s.resolved + s.unresolved));
  state.counters["frames"] = static_cast<double>(e.requests.size());
}
BENCHMARK(BM_RedisPath)->UseRealTime();

void BM_RedisGetBatch(benchmark::State& state) {
  const Env& e = GetEnv();
  if (!e.error.empty()) {
    state.SkipWithError(e.error.c_str());
    return;
  }
  size_t pos = 0;
  uint64_t hits_before = e.cache->stats().hits;
  std::vector<LocationPtr> out(kBatch);
  for (auto _ : state) {
    size_t n = std::min(kBatch, e.keys.size() - pos);
    std::fill(out.begin(), out.end(), nullptr);
    e.cache->GetBatch(std::span(e.keys).subspan(pos, n), std::span(out).subspan(0, n));
    benchmark::DoNotOptimize(out.data());
    pos = pos + n >= e.keys.size() ? 0 : pos + n;
    state.SetItemsProcessed(state.items_processed() + static_cast<int64_t>(n));
  }
  state.counters["hit_ratio"] = static_cast<double>(e.cache->stats().hits - hits_before) /
                                static_cast<double>(std::max<int64_t>(1, state.items_processed()));
}
BENCHMARK(BM_RedisGetBatch)->UseRealTime();

void BM_RedisPutBatch(benchmark::State& state) {
  const Env& e = GetEnv();
  if (!e.error.empty()) {
    state.SkipWithError(e.error.c_str());
    return;
  }
  size_t pos = 0;
  for (auto _ : state) {
    size_t n = std::min(kBatch, e.keys.size() - pos);
    e.cache->PutBatch(std::span(e.keys).subspan(pos, n), std::span(e.values).subspan(pos, n));
    pos = pos + n >= e.keys.size() ? 0 : pos + n;
    state.SetItemsProcessed(state.items_processed() + static_cast<int64_t>(n));
  }
}
BENCHMARK(BM_RedisPutBatch)->UseRealTime();

}  // namespace
}  // namespace flamestream::symbols

BENCHMARK_MAIN();
