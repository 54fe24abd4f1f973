// An exporter window's worth of profile: `n` samples, each a distinct 20-frame stack over a
// pool of functions (so locations and functions grow with n, as in a real window).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <string>
#include <vector>

#include "flamestream/pprofutil/builder.h"
#include "flamestream/pprofutil/stacks.h"

namespace {

using flamestream::pprofutil::ProfileBuilder;

perftools::profiles::Profile Window(int n) {
  ProfileBuilder b("cpu", "nanoseconds");
  for (int i = 0; i < n; ++i) {
    std::vector<std::vector<std::string>> locations;
    for (int d = 0; d < 20; ++d) {
      locations.push_back({fmt::format("fn_{}_{}", d, (i * 7 + d * 13) % (n / 4 + 1))});
    }
    b.Add(locations, 10'000'000);
  }
  return b.Build();
}

// Baseline: decoding the serialized profile.
void BM_ParseProfile(benchmark::State& state) {
  const std::string bytes = Window(static_cast<int>(state.range(0))).SerializeAsString();
  for (auto _ : state) {
    perftools::profiles::Profile p;
    benchmark::DoNotOptimize(p.ParseFromString(bytes));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ParseProfile)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

// What top/diff/folded do with a parsed profile.
void BM_AddProfile(benchmark::State& state) {
  const perftools::profiles::Profile p = Window(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    flamestream::pprofutil::StackSet set;
    benchmark::DoNotOptimize(flamestream::pprofutil::AddProfile(p, {}, set).ok());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_AddProfile)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
