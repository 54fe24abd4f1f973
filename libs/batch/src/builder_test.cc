#include "flamestream/batch/builder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/cursor.h"

namespace flamestream::batch {
namespace {

using ::testing::ElementsAre;

constexpr int64_t kPeriod = 10'101'010;  // 99 Hz
constexpr int64_t kT0 = 1'763'900'000'000'000'000;

v1::Mapping FileMapping(BatchBuilder& b, const char* path, std::string build_id) {
  v1::Mapping m;
  m.set_memory_start(0x7f0000000000);
  m.set_memory_limit(0x7f0000100000);
  m.set_file_offset(0x1000);
  m.set_path_strx(b.InternString(path));
  m.set_build_id(std::move(build_id));
  m.set_kind(v1::MAPPING_KIND_FILE);
  return m;
}

v1::Location Loc(uint32_t mapping_index, uint64_t address, bool is_return = true) {
  v1::Location loc;
  loc.set_mapping_index(mapping_index);
  loc.set_address(address);
  loc.set_is_return_address(is_return);
  return loc;
}

BatchBuilder NewBuilder() {
  BatchBuilder b;
  b.SetHeader("prod/node-1/abcd", 7, "prod", "node-1");
  b.mutable_batch().set_period_ns(kPeriod);
  b.mutable_batch().set_frequency_hz(99);
  return b;
}

TEST(StringInterner, EmptyStringIsZeroAndDuplicatesShareIndex) {
  google::protobuf::RepeatedPtrField<std::string> table;
  StringInterner interner(&table);
  EXPECT_EQ(interner.Intern(""), 0u);
  EXPECT_EQ(interner.Intern("main"), 1u);
  EXPECT_EQ(interner.Intern("libc"), 2u);
  EXPECT_EQ(interner.Intern("main"), 1u);
  EXPECT_THAT(table, ElementsAre("", "main", "libc"));
}

TEST(StringInterner, IndexesAnExistingTable) {
  google::protobuf::RepeatedPtrField<std::string> table;
  table.Add("");
  table.Add("a");
  table.Add("b");
  StringInterner interner(&table);
  EXPECT_EQ(interner.Intern("b"), 2u);
  EXPECT_EQ(interner.Intern("c"), 3u);
  EXPECT_EQ(table.size(), 4);
}

TEST(BatchBuilder, InternsMappingsLocationsAndStacks) {
  BatchBuilder b = NewBuilder();
  const uint32_t libc = b.InternMapping(FileMapping(b, "/lib/libc.so.6", std::string(20, 'L')));
  const uint32_t app = b.InternMapping(FileMapping(b, "/app", std::string(20, 'A')));
  EXPECT_EQ(libc, 1u);  // 1-based
  EXPECT_EQ(app, 2u);
  EXPECT_EQ(b.InternMapping(FileMapping(b, "/lib/libc.so.6", std::string(20, 'L'))), 1u);
  // Same build id and start but another offset is another mapping.
  v1::Mapping other = FileMapping(b, "/lib/libc.so.6", std::string(20, 'L'));
  other.set_file_offset(0x2000);
  EXPECT_EQ(b.InternMapping(other), 3u);

  const uint32_t l0 = b.InternLocation(Loc(libc, 0x29d90, false));
  const uint32_t l1 = b.InternLocation(Loc(app, 0x1234));
  EXPECT_EQ(l0, 0u);
  EXPECT_EQ(l1, 1u);
  EXPECT_EQ(b.InternLocation(Loc(app, 0x1234)), 1u);
  EXPECT_EQ(b.InternLocation(Loc(app, 0x1234, false)), 2u);  // leaf vs return address differ

  const std::vector<uint32_t> s0 = {l0, l1};
  const std::vector<uint32_t> s1 = {l1};
  EXPECT_EQ(b.InternStack(s0), 0u);
  EXPECT_EQ(b.InternStack(s1), 1u);
  EXPECT_EQ(b.InternStack(s0), 0u);

  v1::SampleBatch batch = b.Finish();
  EXPECT_EQ(batch.mappings_size(), 3);
  EXPECT_EQ(batch.locations_size(), 3);
  ASSERT_EQ(batch.stacks_size(), 2);
  EXPECT_THAT(batch.stacks(0).location_indices(), ElementsAre(0u, 1u));
  EXPECT_THAT(batch.strings(), ElementsAre("", "/lib/libc.so.6", "/app"));
  EXPECT_EQ(batch.stage(), v1::STAGE_RAW);
  EXPECT_TRUE(Validate(batch).ok()) << Validate(batch);
}

TEST(BatchBuilder, RoundTripsSamplesThroughSerialization) {
  BatchBuilder b = NewBuilder();
  const uint32_t m = b.InternMapping(FileMapping(b, "/app", "id"));
  const std::vector<uint32_t> frames = {b.InternLocation(Loc(m, 0x10, false)),
                                        b.InternLocation(Loc(m, 0x20))};
  const uint32_t stack = b.InternStack(frames);
  b.AddSample({.stack_index = stack, .pid = 100, .tid = 101, .cpu = 0, .timestamp_ns = kT0});
  b.AddSample(
      {.stack_index = stack, .pid = 200, .tid = 202, .cpu = 3, .timestamp_ns = kT0 + kPeriod});
  v1::Process p;
  p.set_host_pid(100);
  p.set_comm("app");
  b.AddProcess(p);
  p.set_comm("app2");
  b.AddProcess(p);  // replaces
  b.AddThread(100, 101, "worker");
  b.AddThread(100, 101, "worker-1");  // replaces
  b.mutable_batch().set_clock_offset_ns(12345);
  b.mutable_batch().set_symbol_epoch(2);
  ASSERT_EQ(b.sample_count(), 2u);

  v1::SampleBatch built = b.Finish();
  ASSERT_TRUE(Validate(built).ok()) << Validate(built);
  v1::SampleBatch parsed;
  ASSERT_TRUE(parsed.ParseFromString(built.SerializeAsString()));
  ASSERT_TRUE(Validate(parsed).ok());

  EXPECT_EQ(BatchIdString(parsed.id()), "prod/node-1/abcd/7");
  EXPECT_EQ(parsed.cluster(), "prod");
  EXPECT_EQ(parsed.node(), "node-1");
  EXPECT_EQ(parsed.clock_offset_ns(), 12345);
  EXPECT_EQ(parsed.symbol_epoch(), 2u);
  EXPECT_EQ(parsed.base_timestamp_ns(), kT0);
  EXPECT_EQ(parsed.samples().value_ns_size(), 0) << "all values equal period_ns: column omitted";
  EXPECT_EQ(parsed.samples().span_index_size(), 0);
  ASSERT_EQ(parsed.processes_size(), 1);
  EXPECT_EQ(parsed.processes(0).comm(), "app2");
  ASSERT_EQ(parsed.threads_size(), 1);
  EXPECT_EQ(parsed.threads(0).name(), "worker-1");

  EXPECT_THAT(DecodeSamples(parsed),
              ElementsAre(SampleRow{stack, 100, 101, 0, kT0, kPeriod, 0},
                          SampleRow{stack, 200, 202, 3, kT0 + kPeriod, kPeriod, 0}));
  // The builder is empty again after Finish().
  EXPECT_EQ(b.sample_count(), 0u);
  EXPECT_EQ(b.batch().strings_size(), 1);
  EXPECT_EQ(b.batch().stacks_size(), 0);
}

TEST(BatchBuilder, DeltaEncodesOutOfOrderTimestamps) {
  // Samples from several CPUs arrive out of time order; deltas go negative.
  const std::vector<int64_t> times = {
      kT0 + 500, kT0, kT0 + 2'000'000, kT0 + 1'999'999, kT0 - 3'000'000'000, kT0 + 10};
  BatchBuilder b = NewBuilder();
  const std::vector<uint32_t> frames = {b.InternLocation(Loc(0, 0xffffffff81000000, false))};
  const uint32_t stack = b.InternStack(frames);
  for (int64_t t : times)
    b.AddSample({.stack_index = stack, .pid = 1, .tid = 1, .timestamp_ns = t});
  v1::SampleBatch batch = b.Finish();
  ASSERT_TRUE(Validate(batch).ok()) << Validate(batch);
  EXPECT_EQ(batch.base_timestamp_ns(), kT0 + 500);
  EXPECT_THAT(batch.samples().timestamp_delta_ns(),
              ElementsAre(0, -500, 2'000'000, -1, -3'001'999'999, 3'000'000'010));
  std::vector<int64_t> decoded;
  SampleCursor cursor(batch);
  EXPECT_EQ(cursor.size(), static_cast<int>(times.size()));
  SampleRow row;
  while (cursor.Next(&row)) decoded.push_back(row.timestamp_ns);
  EXPECT_EQ(decoded, times);
  EXPECT_FALSE(cursor.Next(&row));
}

// Rows as the compact encoding stores them: by (cpu, time), times rounded down to `unit`.
std::vector<SampleRow> CompactOrder(std::vector<SampleRow> rows, int64_t unit) {
  for (SampleRow& r : rows) {
    r.timestamp_ns -= ((r.timestamp_ns % unit) + unit) % unit;
  }
  std::stable_sort(rows.begin(), rows.end(), [](const SampleRow& a, const SampleRow& b) {
    return a.cpu != b.cpu ? a.cpu < b.cpu : a.timestamp_ns < b.timestamp_ns;
  });
  return rows;
}

TEST(BatchBuilder, CompactEncodingRoundTripsEverySampleByCpuAndTime) {
  struct Case {
    const char* name;
    int64_t unit;
    std::vector<int64_t> times;  // sample i is on cpu i % 3
  };
  const std::vector<Case> cases = {
      {"exact, timer-like", 1,
       {kT0, kT0 + 17, kT0 + 3, kT0 + kPeriod + 25'000, kT0 + kPeriod - 9'000,
        kT0 + kPeriod + 1, kT0 + 2 * kPeriod, kT0 + 5 * kPeriod + 7, kT0 + 2 * kPeriod - 1}},
      {"microseconds", 1000,
       {kT0 + 999, kT0 + 1000, kT0 + 1001, kT0 + kPeriod + 25'123, kT0 + kPeriod - 9'876,
        kT0 + 3 * kPeriod + 500}},
      {"wild gaps, both ways", 1,
       {kT0, kT0 - 3'000'000'000, kT0 + 1, INT64_C(1), kT0 + 7'777'777'777, INT64_C(0),
        INT64_MAX - 5, INT64_MIN + 7, kT0}},
      {"wild gaps in microseconds", 1000,
       {kT0, kT0 - 3'000'000'000, INT64_MAX - 5, INT64_MIN + 7001, kT0 + 123'456}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    BatchBuilder b = NewBuilder();
    b.set_encoding({.compact = true, .timestamp_unit_ns = c.unit});
    const std::vector<uint32_t> frames = {b.InternLocation(Loc(0, 0x10, false))};
    const uint32_t stack = b.InternStack(frames);
    b.AddThread(100, 101, "worker");
    std::vector<SampleRow> want;
    for (size_t i = 0; i < c.times.size(); ++i) {
      const SampleRow row{stack,
                          static_cast<uint32_t>(100 + i % 2),
                          static_cast<uint32_t>(101 + i % 4),
                          static_cast<uint32_t>(i % 3),
                          c.times[i],
                          i == 2 ? 77 : kPeriod,
                          0};
      want.push_back(row);
      b.AddSample({.stack_index = row.stack_index, .pid = row.pid, .tid = row.tid,
                   .cpu = row.cpu, .timestamp_ns = row.timestamp_ns, .value_ns = row.value_ns});
    }
    v1::SampleBatch built = b.Finish();
    ASSERT_TRUE(Validate(built).ok()) << Validate(built);
    v1::SampleBatch parsed;
    ASSERT_TRUE(parsed.ParseFromString(built.SerializeAsString()));
    ASSERT_TRUE(Validate(parsed).ok()) << Validate(parsed);
    EXPECT_EQ(parsed.samples().pid_size(), 0);
    EXPECT_EQ(parsed.samples().tid_size(), 0);
    EXPECT_EQ(parsed.samples().timestamp_delta_ns_size(), 0);
    EXPECT_EQ(parsed.samples().thread_index_size(), static_cast<int>(c.times.size()));
    EXPECT_EQ(parsed.timestamp_unit_ns(), c.unit);
    EXPECT_EQ(parsed.timestamp_tick(), kPeriod / c.unit);
    EXPECT_EQ(parsed.threads(0).name(), "worker") << "named threads keep their entry";
    EXPECT_EQ(DecodeSamples(parsed), CompactOrder(want, c.unit));
    // The builder keeps its encoding for the next batch.
    EXPECT_TRUE(b.encoding().compact);
  }
}

TEST(BatchBuilder, CompactTimestampsOfOneBusyCpuAreOneTickEach) {
  BatchBuilder b = NewBuilder();
  b.set_encoding({.compact = true, .timestamp_unit_ns = 1000});
  const uint32_t stack = b.InternStack(std::vector<uint32_t>{b.InternLocation(Loc(0, 1, false))});
  const std::vector<int64_t> jitter_ns = {3'000, 25'000, 1'200, 9'999, 0, 14'000};
  for (size_t i = 0; i < jitter_ns.size(); ++i) {
    b.AddSample({.stack_index = stack, .pid = 1, .tid = 1, .cpu = 1,
                 .timestamp_ns = kT0 + static_cast<int64_t>(i) * kPeriod + jitter_ns[i]});
  }
  v1::SampleBatch batch = b.Finish();
  ASSERT_TRUE(Validate(batch).ok()) << Validate(batch);
  EXPECT_THAT(batch.samples().timestamp_ticks(), ElementsAre(0, 1, 1, 1, 1, 1));
  // Rest = jitter difference in us (the 10'101.01 us period predicts 10'101 us per tick).
  EXPECT_THAT(batch.samples().timestamp_rest(), ElementsAre(0, 22, -24, 9, -10, 14));
  EXPECT_THAT(batch.samples().thread_index(), ElementsAre(0, 0, 0, 0, 0, 0));
  ASSERT_EQ(batch.threads_size(), 1);
  EXPECT_EQ(batch.threads(0).name(), "") << "added for the sample, no name known";
}

TEST(BatchBuilder, FromBatchKeepsTheCompactEncoding) {
  BatchBuilder b = NewBuilder();
  b.set_encoding({.compact = true, .timestamp_unit_ns = 1000});
  const uint32_t stack = b.InternStack(std::vector<uint32_t>{b.InternLocation(Loc(0, 1, false))});
  b.AddSample({.stack_index = stack, .pid = 5, .tid = 6, .cpu = 1, .timestamp_ns = kT0 + 1500});
  b.AddSample({.stack_index = stack, .pid = 5, .tid = 7, .cpu = 0, .timestamp_ns = kT0 + 99});
  const v1::SampleBatch first = b.Finish();
  Result<BatchBuilder> again = BatchBuilder::FromBatch(first);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->encoding().compact);
  EXPECT_EQ(again->encoding().timestamp_unit_ns, 1000);
  v1::SpanRef span;
  span.set_trace_id(std::string(16, 't'));
  span.set_span_id(std::string(8, 's'));
  const uint32_t sp = again->InternSpan(span);
  again->AddSample({.stack_index = stack, .pid = 5, .tid = 6, .cpu = 1,
                    .timestamp_ns = kT0 + 2 * kPeriod, .span_index = sp});
  const v1::SampleBatch second = again->Finish();
  ASSERT_TRUE(Validate(second).ok()) << Validate(second);
  EXPECT_EQ(second.threads_size(), 2) << "existing thread entries are reused";
  EXPECT_THAT(DecodeSamples(second),
              ElementsAre(SampleRow{stack, 5, 7, 0, kT0, kPeriod, 0},
                          SampleRow{stack, 5, 6, 1, kT0 + 1000, kPeriod, 0},
                          SampleRow{stack, 5, 6, 1, kT0 + 2 * kPeriod / 1000 * 1000, kPeriod,
                                    sp}));
}

TEST(BatchBuilder, SortLocationsRenumbersStacksConsistently) {
  BatchBuilder b = NewBuilder();
  b.set_encoding({.compact = true, .timestamp_unit_ns = 1, .sort_locations = true});
  const uint32_t m1 = b.InternMapping(FileMapping(b, "/app", "id"));
  const uint32_t m2 = b.InternMapping(FileMapping(b, "/lib", "id2"));
  // Interned in call order; (mapping, address) order differs.
  const std::vector<std::pair<uint32_t, uint64_t>> s0 = {{m2, 0x50}, {m1, 0x30}, {m1, 0x10}};
  const std::vector<std::pair<uint32_t, uint64_t>> s1 = {{m1, 0x20}, {m1, 0x10}, {0, 0xffff}};
  std::vector<uint32_t> stacks;
  for (const auto* frames : {&s0, &s1}) {
    std::vector<uint32_t> ids;
    for (const auto& [m, a] : *frames) ids.push_back(b.InternLocation(Loc(m, a)));
    stacks.push_back(b.InternStack(ids));
  }
  b.AddSample({.stack_index = stacks[1], .pid = 1, .tid = 1, .timestamp_ns = kT0});
  b.AddSample({.stack_index = stacks[0], .pid = 1, .tid = 1, .timestamp_ns = kT0 + kPeriod});
  v1::SampleBatch batch = b.Finish();
  ASSERT_TRUE(Validate(batch).ok()) << Validate(batch);
  std::vector<std::pair<uint32_t, uint64_t>> table;
  for (const v1::Location& l : batch.locations()) {
    table.emplace_back(l.mapping_index(), l.address());
  }
  EXPECT_EQ(table, (std::vector<std::pair<uint32_t, uint64_t>>{
                       {0, 0xffff}, {m1, 0x10}, {m1, 0x20}, {m1, 0x30}, {m2, 0x50}}));
  auto frames_of = [&](uint32_t stack) {
    std::vector<std::pair<uint32_t, uint64_t>> out;
    for (uint32_t li : batch.stacks(static_cast<int>(stack)).location_indices()) {
      out.emplace_back(batch.locations(static_cast<int>(li)).mapping_index(),
                       batch.locations(static_cast<int>(li)).address());
    }
    return out;
  };
  const std::vector<SampleRow> rows = DecodeSamples(batch);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(frames_of(rows[0].stack_index), s1);
  EXPECT_EQ(frames_of(rows[1].stack_index), s0);
}

TEST(BatchBuilder, KeepsValueAndSpanColumnsOnlyWhenNeeded) {
  BatchBuilder b = NewBuilder();
  b.mutable_batch().set_stage(v1::STAGE_CORRELATED);
  const std::vector<uint32_t> frames = {b.InternLocation(Loc(0, 1, false))};
  const uint32_t stack = b.InternStack(frames);
  v1::SpanRef span;
  span.set_trace_id(std::string(16, '\x01'));
  span.set_span_id(std::string(8, '\x02'));
  span.set_name("GET /");
  const uint32_t si = b.InternSpan(span);
  EXPECT_EQ(si, 1u);
  EXPECT_EQ(b.InternSpan(span), 1u);
  b.AddSample({.stack_index = stack, .timestamp_ns = kT0});  // period
  b.AddSample({.stack_index = stack, .timestamp_ns = kT0, .value_ns = 5'000'000, .span_index = si});
  v1::SampleBatch batch = b.Finish();
  ASSERT_TRUE(Validate(batch).ok()) << Validate(batch);
  EXPECT_THAT(batch.samples().value_ns(), ElementsAre(kPeriod, 5'000'000));
  EXPECT_THAT(batch.samples().span_index(), ElementsAre(0u, 1u));
  std::vector<SampleRow> rows = DecodeSamples(batch);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].value_ns, 5'000'000);
  EXPECT_EQ(SpanOf(batch, rows[1].span_index)->name(), "GET /");
  EXPECT_EQ(SpanOf(batch, rows[0].span_index), nullptr);
}

TEST(BatchBuilder, FromBatchExtendsWithoutRenumbering) {
  BatchBuilder b = NewBuilder();
  const uint32_t m = b.InternMapping(FileMapping(b, "/app", "id"));
  const std::vector<uint32_t> frames = {b.InternLocation(Loc(m, 0x10, false))};
  const uint32_t stack = b.InternStack(frames);
  b.AddSample({.stack_index = stack, .pid = 9, .tid = 9, .timestamp_ns = kT0 + 7});
  b.AddSample({.stack_index = stack, .pid = 9, .tid = 9, .timestamp_ns = kT0});
  v1::SampleBatch raw = b.Finish();

  Result<BatchBuilder> ext = BatchBuilder::FromBatch(raw);
  ASSERT_TRUE(ext.ok()) << ext.error();
  EXPECT_EQ(ext->InternString("/app"), 1u);  // found, not appended
  EXPECT_EQ(ext->InternMapping(raw.mappings(0)), m);
  EXPECT_EQ(ext->InternLocation(raw.locations(0)), frames[0]);
  EXPECT_EQ(ext->InternStack(frames), stack);
  EXPECT_EQ(ext->InternString("main"), 2u);  // appended
  ext->mutable_batch().set_stage(v1::STAGE_SYMBOLIZED);
  v1::Line* line = ext->mutable_batch().mutable_locations(0)->add_lines();
  line->set_function_strx(2);
  ext->AddSample({.stack_index = stack, .pid = 9, .tid = 9, .timestamp_ns = kT0 + 1});
  v1::SampleBatch sym = ext->Finish();
  ASSERT_TRUE(Validate(sym).ok()) << Validate(sym);
  EXPECT_EQ(sym.stage(), v1::STAGE_SYMBOLIZED);
  EXPECT_EQ(BatchIdString(sym.id()), "prod/node-1/abcd/7");
  EXPECT_EQ(StringAt(sym, sym.locations(0).lines(0).function_strx()), "main");
  std::vector<int64_t> times;
  for (const SampleRow& r : DecodeSamples(sym)) times.push_back(r.timestamp_ns);
  EXPECT_THAT(times, ElementsAre(kT0 + 7, kT0, kT0 + 1));
}

TEST(BatchBuilder, FromBatchRejectsInvalidBatch) {
  v1::SampleBatch bad;
  Result<BatchBuilder> r = BatchBuilder::FromBatch(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
}

TEST(BatchBuilder, EmptyBatchIsValid) {
  BatchBuilder b = NewBuilder();
  v1::SampleBatch batch = b.Finish();
  EXPECT_TRUE(Validate(batch).ok()) << Validate(batch);
  EXPECT_EQ(SampleCount(batch), 0);
  EXPECT_EQ(batch.base_timestamp_ns(), 0);
}

TEST(BatchAccessors, MappingOfUsesOneBasedIndex) {
  BatchBuilder b = NewBuilder();
  const uint32_t m = b.InternMapping(FileMapping(b, "/app", "id"));
  v1::SampleBatch batch = b.Finish();
  EXPECT_EQ(MappingOf(batch, Loc(0, 1)), nullptr);
  ASSERT_NE(MappingOf(batch, Loc(m, 1)), nullptr);
  EXPECT_EQ(StringAt(batch, MappingOf(batch, Loc(m, 1))->path_strx()), "/app");
  EXPECT_EQ(MappingOf(batch, Loc(m + 1, 1)), nullptr);
  EXPECT_EQ(StringAt(batch, 99), "");
}

}  // namespace
}  // namespace flamestream::batch
