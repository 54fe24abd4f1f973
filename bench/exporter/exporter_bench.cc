// Aggregation (samples/s on one core) and pprof encoding (bytes/s) of the exporter.
//   build/bench/exporter_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include "flamestream/profile/aggregator.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"

namespace flamestream::profile {
namespace {

constexpr int64_t kT0 = 1'700'000'000LL * 1'000'000'000LL;

std::vector<v1::SampleBatch> Batches(int n, int samples) {
  std::vector<v1::SampleBatch> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(testing::MakeCorrelatedBatch({.sequence = static_cast<uint64_t>(i + 1),
                                                .samples = samples,
                                                .start_ns = kT0 + i * 50'000'000LL,
                                                .spread_ns = 1'000'000'000}));
  }
  return out;
}

// Batches as agents send them (~2000 samples), aggregated with the file sink's full labels.
void BM_Aggregate(benchmark::State& state) {
  const std::vector<v1::SampleBatch> batches = Batches(64, static_cast<int>(state.range(0)));
  int64_t samples = 0;
  const bool full = state.range(1) != 0;
  for (auto _ : state) {
    Aggregator agg({.labels = full ? LabelPolicy::Full() : LabelPolicy::Pyroscope(false)});
    for (const auto& b : batches) samples += agg.Add(b).added;
    benchmark::DoNotOptimize(agg.open_windows());
  }
  state.SetItemsProcessed(samples);
  state.SetLabel(full ? "labels=full" : "labels=pyroscope");
}
BENCHMARK(BM_Aggregate)->Args({2000, 1})->Args({2000, 0})->Args({500, 1})->Unit(benchmark::kMillisecond);

void BM_EncodePprofGzip(benchmark::State& state) {
  Aggregator agg({});
  for (const auto& b : Batches(64, 2000)) (void)agg.Add(b);
  std::vector<std::unique_ptr<Window>> windows = agg.TakeAll();
  const Window& w = *windows[0];
  const std::vector<uint32_t> all = w.SeriesOf("");
  int64_t bytes = 0;
  for (auto _ : state) {
    perftools::profiles::Profile p = EncodePprof(w, all);
    std::string raw = p.SerializeAsString();
    bytes += static_cast<int64_t>(raw.size());
    if (state.range(0) != 0) benchmark::DoNotOptimize(GzipPprof(p));
  }
  state.SetBytesProcessed(bytes);
  state.SetLabel(state.range(0) != 0 ? "encode+gzip" : "encode");
}
BENCHMARK(BM_EncodePprofGzip)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flamestream::profile

BENCHMARK_MAIN();
