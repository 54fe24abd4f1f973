// Costs every stage pays per batch: build (agent), parse + validate + iterate (consumers).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"

namespace flamestream::batch {
namespace {

constexpr int kSamples = 10'000;
constexpr int kStacks = 200;
constexpr int kDepth = 24;

v1::SampleBatch Build() {
  BatchBuilder b;
  b.SetHeader("bench", 1, "c", "n");
  b.mutable_batch().set_period_ns(10'101'010);
  v1::Mapping m;
  m.set_path_strx(b.InternString("/app"));
  m.set_build_id(std::string(20, 'b'));
  const uint32_t mi = b.InternMapping(m);
  std::vector<uint32_t> stacks;
  std::vector<uint32_t> frames(kDepth);
  for (int s = 0; s < kStacks; ++s) {
    for (int d = 0; d < kDepth; ++d) {
      v1::Location loc;
      loc.set_mapping_index(mi);
      loc.set_address(0x1000 + static_cast<uint64_t>(d * 64 + (d > kDepth / 2 ? s : 0)));
      loc.set_is_return_address(d != 0);
      frames[static_cast<size_t>(d)] = b.InternLocation(loc);
    }
    stacks.push_back(b.InternStack(frames));
  }
  for (int i = 0; i < kSamples; ++i) {
    b.AddSample({.stack_index = stacks[static_cast<size_t>(i * 7 % kStacks)],
                 .pid = 1000,
                 .tid = 1000 + static_cast<uint32_t>(i % 8),
                 .cpu = static_cast<uint32_t>(i % 4),
                 .timestamp_ns = 1'763'900'000'000'000'000 + i * 2'525'252LL});
  }
  return b.Finish();
}

void BM_BuildBatch(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Build());
  state.SetItemsProcessed(state.iterations() * kSamples);
}
BENCHMARK(BM_BuildBatch);

void BM_ParseValidateIterate(benchmark::State& state) {
  const std::string bytes = Build().SerializeAsString();
  for (auto _ : state) {
    v1::SampleBatch batch;
    if (!batch.ParseFromString(bytes) || !Validate(batch).ok()) state.SkipWithError("bad batch");
    SampleCursor cursor(batch);
    SampleRow row;
    int64_t sum = 0;
    while (cursor.Next(&row)) sum += row.value_ns;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * kSamples);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_ParseValidateIterate);

}  // namespace
}  // namespace flamestream::batch

BENCHMARK_MAIN();
