// Samples joined per second per core with 1, 100 and 10,000 active spans per process, the
// engine next to a naive linear-scan join over the same spans and samples; and the memory an
// active span costs.
//
//   build/bench/correlate_bench --benchmark_counters_tabular=true
#include <malloc.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "flamestream/correlate/interval_set.h"
#include "flamestream/correlate/join_engine.h"

namespace flamestream::correlate {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kBase = 1'700'000'000 * kSec;
constexpr int64_t kWindow = 10 * kSec;  // all spans and samples fall in [kBase, kBase + kWindow)
constexpr size_t kBatch = 4096;         // samples per engine round (AddSample... then emit)
constexpr uint32_t kPid = 4242;
constexpr uint32_t kTids[] = {4242, 4243, 4244, 4245};

struct Data {
  std::vector<Span> spans;
  std::vector<std::string> names;
  std::vector<Sample> samples;
};

// `n` spans of one process, all active over the window: random starts, durations from 1 ms to
// half the window; half bound to one of the process's OS threads, half thread-agnostic.
// Samples: random times in the window on the four threads.
Data MakeData(size_t n, size_t samples, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Data d;
  d.names.reserve(n);
  for (size_t i = 0; i < n; ++i) d.names.push_back("GET /api/v1/items/{id} #" + std::to_string(i % 50));
  for (size_t i = 0; i < n; ++i) {
    const int64_t start = kBase + static_cast<int64_t>(rng() % kWindow);
    const int64_t len = 1'000'000 + static_cast<int64_t>(rng() % (kWindow / 2));
    d.spans.push_back(Span{.trace_id = TraceId{.hi = rng(), .lo = rng()}, .span_id = SpanId{rng() | 1},
                           .name = d.names[i], .service = "checkout", .start_ns = start,
                           .end_ns = start + len, .node_key = "prod/node-a", .pid = kPid,
                           .thread_id = (i % 2 == 0) ? kTids[rng() % 4] : 0});
  }
  for (size_t i = 0; i < samples; ++i) {
    d.samples.push_back(Sample{.node_key = "prod/node-a", .pid = kPid, .tid = kTids[rng() % 4],
                               .time_ns = kBase + static_cast<int64_t>(rng() % kWindow),
                               .cookie = i});
  }
  return d;
}

JoinConfig BenchConfig() {
  JoinConfig c;
  c.allowed_lateness = std::chrono::seconds(30);  // > kWindow: nothing expires mid-run
  c.max_spans = 10'000'000;
  return c;
}

// The engine's whole path: AddSample for a batch, then release and join every held sample.
void BM_EngineJoin(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Data d = MakeData(n, kBatch, 1);
  JoinEngine engine(BenchConfig(), [] { return kBase + kWindow; });
  for (uint32_t tid : kTids) engine.ObserveThread("prod/node-a", kPid, tid, kBase);
  for (const Span& s : d.spans) engine.AddSpan(s);
  uint64_t matched = 0;
  for (auto _ : state) {
    for (const Sample& s : d.samples) engine.AddSample(s);
    engine.Flush([&](const Emission& e) { matched += e.kind != MatchKind::kUnmatched; });
  }
  benchmark::DoNotOptimize(matched);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.counters["match_ratio"] =
      static_cast<double>(matched) / static_cast<double>(state.iterations() * kBatch);
}

// The same join, naively: every sample scans every span of its process.
void BM_NaiveJoin(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Data d = MakeData(n, kBatch, 1);
  uint64_t matched = 0;
  for (auto _ : state) {
    for (const Sample& s : d.samples) {
      const Span* best = nullptr;
      for (const Span& sp : d.spans) {
        if (sp.start_ns > s.time_ns || sp.end_ns < s.time_ns) continue;
        if (sp.thread_id != 0 && sp.thread_id != s.tid) continue;
        if (best == nullptr || sp.start_ns > best->start_ns ||
            (sp.start_ns == best->start_ns && sp.end_ns < best->end_ns)) {
          best = &sp;
        }
      }
      matched += best != nullptr;
    }
  }
  benchmark::DoNotOptimize(matched);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.counters["match_ratio"] =
      static_cast<double>(matched) / static_cast<double>(state.iterations() * kBatch);
}

// The interval structure alone (one set, no thread split).
void BM_IntervalSetQuery(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Data d = MakeData(n, kBatch, 1);
  IntervalSet set;
  for (size_t i = 0; i < d.spans.size(); ++i) {
    set.Insert({.start = d.spans[i].start_ns, .end = d.spans[i].end_ns,
                .span_id = d.spans[i].span_id, .ref = static_cast<uint32_t>(i)});
  }
  int64_t found = 0;
  for (auto _ : state) {
    for (const Sample& s : d.samples) found += set.FindInnermost(s.time_ns);
  }
  benchmark::DoNotOptimize(found);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}

// Adding spans in export order (by end), as the keyed topic delivers them.
void BM_EngineAddSpan(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  Data d = MakeData(n, 0, 2);
  std::sort(d.spans.begin(), d.spans.end(),
            [](const Span& a, const Span& b) { return a.end_ns < b.end_ns; });
  for (auto _ : state) {
    JoinEngine engine(BenchConfig(), [] { return kBase + kWindow; });
    for (const Span& s : d.spans) engine.AddSpan(s);
    benchmark::DoNotOptimize(engine.active_spans());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}

// Bytes per active span: the engine's own accounting and the allocator's (mallinfo2) view.
// 100 processes x range(0) spans each, distinct names per span (worst case for interning).
void BM_MemoryPerSpan(benchmark::State& state) {
  const size_t per_process = static_cast<size_t>(state.range(0));
  constexpr uint32_t kProcesses = 100;
  std::vector<Data> data;
  for (uint32_t p = 0; p < kProcesses; ++p) data.push_back(MakeData(per_process, 0, 10 + p));
  double engine_bytes = 0;
  double malloc_bytes = 0;
  for (auto _ : state) {
    // uordblks: small chunks in use; hblkhd: large (mmap'ed) ones.
    const size_t before = mallinfo2().uordblks + mallinfo2().hblkhd;
    auto engine = std::make_unique<JoinEngine>(BenchConfig(), [] { return kBase + kWindow; });
    for (uint32_t p = 0; p < kProcesses; ++p) {
      for (Span s : data[p].spans) {
        s.pid = 1000 + p;
        engine->AddSpan(s);
      }
    }
    const size_t after = mallinfo2().uordblks + mallinfo2().hblkhd;
    const double spans = static_cast<double>(engine->active_spans());
    engine_bytes = static_cast<double>(engine->MemoryBytes()) / spans;
    malloc_bytes = static_cast<double>(after - before) / spans;
  }
  state.counters["engine_bytes_per_span"] = engine_bytes;
  state.counters["malloc_bytes_per_span"] = malloc_bytes;
}

BENCHMARK(BM_EngineJoin)->Arg(1)->Arg(100)->Arg(10000);
BENCHMARK(BM_NaiveJoin)->Arg(1)->Arg(100)->Arg(10000);
BENCHMARK(BM_IntervalSetQuery)->Arg(1)->Arg(100)->Arg(10000);
BENCHMARK(BM_EngineAddSpan)->Arg(100)->Arg(10000);
BENCHMARK(BM_MemoryPerSpan)->Arg(100)->Arg(1000)->Iterations(1);

}  // namespace
}  // namespace flamestream::correlate

BENCHMARK_MAIN();
