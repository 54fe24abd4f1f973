#include "flamestream/batch/split.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"

namespace flamestream::batch {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kPeriod = 1'000'000'000 / 99;
constexpr int64_t kT0 = 1'763'900'000'000'000'000;

struct Workload {
  int samples = 20'000;
  int stacks = 2'000;
  SampleEncoding encoding;  // plain by default
};

// A correlated batch shaped like a real one: stacks share root frames and library frames,
// every location is symbolized (one or two Lines with long C++ names), about a fifth end in
// kernel frames (symbol_strx), samples pick stacks near a "program phase" that drifts with
// time (so consecutive samples share stacks, as they do), a third of the samples are in
// spans, some have values other than the period, some processes and threads are not
// sampled at all.
v1::SampleBatch BuildBatch(const Workload& w) {
  std::mt19937 rng(7);
  BatchBuilder b;
  b.set_encoding(w.encoding);
  b.SetHeader("prod/node-3/77aa", 42, "prod", "node-3");
  b.mutable_batch().set_stage(v1::STAGE_CORRELATED);
  b.mutable_batch().set_period_ns(kPeriod);
  b.mutable_batch().set_frequency_hz(99);
  b.mutable_batch().set_clock_offset_ns(1'763'000'000'123'456'789);
  b.mutable_batch().set_symbol_epoch(3);

  std::vector<uint32_t> mappings;
  for (int i = 0; i < 6; ++i) {
    v1::Mapping m;
    m.set_memory_start(0x7f0000000000 + 0x10000000ull * static_cast<uint64_t>(i));
    m.set_memory_limit(m.memory_start() + 0x800000);
    m.set_file_offset(0x1000);
    m.set_path_strx(b.InternString(fmt::format("/usr/lib/x86_64-linux-gnu/libservice{}.so", i)));
    m.set_build_id(std::string(20, static_cast<char>('a' + i)));
    m.set_kind(v1::MAPPING_KIND_FILE);
    mappings.push_back(b.InternMapping(m));
  }
  v1::Mapping kernel;
  kernel.set_path_strx(b.InternString("[kernel]"));
  kernel.set_kind(v1::MAPPING_KIND_KERNEL);
  const uint32_t kernel_mapping = b.InternMapping(kernel);

  auto user_location = [&](int n) {
    v1::Location loc;
    loc.set_mapping_index(mappings[static_cast<size_t>(n) % mappings.size()]);
    loc.set_address(0x1000 + 0x40 * static_cast<uint64_t>(n));
    loc.set_is_return_address(true);
    loc.set_symbol_status(v1::SYMBOL_STATUS_RESOLVED);
    const int lines = 1 + n % 2;
    for (int j = 0; j < lines; ++j) {
      v1::Line* line = loc.add_lines();
      line->set_function_strx(b.InternString(fmt::format(
          "checkout::internal::PricingEngine<std::basic_string<char>>::Stage{}_{}(Request const&)",
          n, j)));
      line->set_system_name_strx(
          b.InternString(fmt::format("_ZN8checkout8internal13PricingEngine5Stage{}_{}E", n, j)));
      line->set_file_strx(b.InternString(fmt::format("src/pricing/stage_{}.cc", n / 16)));
      line->set_line(static_cast<uint32_t>(10 + n % 500));
      line->set_column(static_cast<uint32_t>(1 + j));
    }
    return b.InternLocation(loc);
  };
  auto kernel_location = [&](int n) {
    v1::Location loc;
    loc.set_mapping_index(kernel_mapping);
    loc.set_address(0xffffffff81000000ull + 0x100 * static_cast<uint64_t>(n));
    loc.set_symbol_strx(b.InternString(fmt::format("__x64_sys_call_{}", n)));
    loc.set_symbol_offset(static_cast<uint64_t>(n % 64));
    loc.set_symbol_status(v1::SYMBOL_STATUS_RESOLVED);
    v1::Line* line = loc.add_lines();
    line->set_function_strx(loc.symbol_strx());
    return b.InternLocation(loc);
  };

  std::vector<uint32_t> roots;  // shared by every stack: _start, main, the worker loop...
  for (int i = 0; i < 5; ++i) roots.push_back(user_location(1'000'000 + i));
  std::vector<uint32_t> stacks;
  for (int s = 0; s < w.stacks; ++s) {
    std::vector<uint32_t> frames;
    if (s % 5 == 0) {
      for (int k = 0; k < 3; ++k) frames.push_back(kernel_location(s / 5 * 3 + k));
    }
    const int depth = 5 + static_cast<int>(rng() % 11);
    for (int k = 0; k < depth; ++k) frames.push_back(user_location(s * 3 + k));  // neighbours share
    frames.insert(frames.end(), roots.begin(), roots.end());
    stacks.push_back(b.InternStack(frames));
  }

  std::vector<uint32_t> spans;
  for (int i = 0; i < 50; ++i) {
    v1::SpanRef span;
    span.set_trace_id(fmt::format("trace-{:010d}", i));
    span.set_span_id(fmt::format("sp{:06d}", i));
    span.set_name(fmt::format("POST /checkout/{}", i));
    span.set_service_name("checkout");
    spans.push_back(b.InternSpan(span));
  }
  for (uint32_t pid = 1000; pid < 1040; ++pid) {
    v1::Process p;
    p.set_host_pid(pid);
    p.set_ns_pid(pid - 999);
    p.set_comm(fmt::format("worker-{}", pid));
    p.set_exe("/usr/bin/checkout-service");
    p.set_container_id(std::string(64, 'c'));
    p.set_service_name("checkout");
    b.AddProcess(p);
    for (uint32_t tid = pid; tid < pid + 4; ++tid) b.AddThread(pid, tid, fmt::format("t{}", tid));
  }
  v1::Process idle;  // no samples: in no piece
  idle.set_host_pid(9999);
  idle.set_comm("idle");
  b.AddProcess(idle);
  b.AddThread(9999, 9999, "idle");

  std::vector<int64_t> cpu_time(4, kT0);
  for (int i = 0; i < w.samples; ++i) {
    const uint32_t cpu = static_cast<uint32_t>(rng() % 4);
    cpu_time[cpu] += kPeriod + static_cast<int64_t>(rng() % 200'000);
    const int phase = static_cast<int>(static_cast<int64_t>(i) * w.stacks / w.samples);
    const uint32_t pid = 1000 + static_cast<uint32_t>(rng() % 40);
    b.AddSample({.stack_index =
                     stacks[static_cast<size_t>((phase + static_cast<int>(rng() % 8)) % w.stacks)],
                 .pid = pid,
                 .tid = pid + static_cast<uint32_t>(rng() % 4),
                 .cpu = cpu,
                 .timestamp_ns = cpu_time[cpu],
                 .value_ns = rng() % 10 == 0 ? 2 * kPeriod : 0,
                 .span_index = rng() % 3 == 0 ? spans[rng() % spans.size()] : 0});
  }
  return b.Finish();
}

// One sample with everything it refers to resolved to values, so samples of different
// batches compare equal exactly when they mean the same.
std::string ResolvedSample(const v1::SampleBatch& b, const SampleRow& r) {
  std::string out = fmt::format("pid={} tid={} cpu={} t={} v={}", r.pid, r.tid, r.cpu,
                                r.timestamp_ns, r.value_ns);
  if (const v1::SpanRef* span = SpanOf(b, r.span_index)) {
    out += fmt::format(" span={}/{}/{}/{}", span->trace_id(), span->span_id(), span->name(),
                       span->service_name());
  }
  for (uint32_t li : b.stacks(static_cast<int>(r.stack_index)).location_indices()) {
    const v1::Location& loc = b.locations(static_cast<int>(li));
    out += fmt::format("\n  {:#x} ret={} sym={}+{} status={}", loc.address(),
                       loc.is_return_address(), StringAt(b, loc.symbol_strx()), loc.symbol_offset(),
                       static_cast<int>(loc.symbol_status()));
    if (const v1::Mapping* m = MappingOf(b, loc)) {
      out += fmt::format(" map=[{:#x},{:#x})@{:#x} {} {} {}", m->memory_start(), m->memory_limit(),
                         m->file_offset(), StringAt(b, m->path_strx()), m->build_id(),
                         static_cast<int>(m->kind()));
    }
    for (const v1::Line& line : loc.lines()) {
      out += fmt::format(" | {} ({}) {}:{}:{}", StringAt(b, line.function_strx()),
                         StringAt(b, line.system_name_strx()), StringAt(b, line.file_strx()),
                         line.line(), line.column());
    }
  }
  return out;
}

std::vector<std::string> ResolvedSamples(const v1::SampleBatch& b) {
  std::vector<std::string> out;
  for (const SampleRow& r : DecodeSamples(b)) out.push_back(ResolvedSample(b, r));
  return out;
}

// Header fields every piece copies.
void ExpectSameHeader(const v1::SampleBatch& piece, const v1::SampleBatch& batch) {
  EXPECT_EQ(piece.id().agent_id(), batch.id().agent_id());
  EXPECT_EQ(piece.id().sequence(), batch.id().sequence());
  EXPECT_EQ(piece.stage(), batch.stage());
  EXPECT_EQ(piece.cluster(), batch.cluster());
  EXPECT_EQ(piece.node(), batch.node());
  EXPECT_EQ(piece.clock_offset_ns(), batch.clock_offset_ns());
  EXPECT_EQ(piece.period_ns(), batch.period_ns());
  EXPECT_EQ(piece.frequency_hz(), batch.frequency_hz());
  EXPECT_EQ(piece.symbol_epoch(), batch.symbol_epoch());
  EXPECT_EQ(piece.timestamp_unit_ns(), batch.timestamp_unit_ns());
  EXPECT_EQ(piece.timestamp_tick(), batch.timestamp_tick());
  EXPECT_EQ(EncodingOf(piece).compact, EncodingOf(batch).compact);
}

TEST(SplitBatch, BatchThatFitsIsReturnedUnchanged) {
  const v1::SampleBatch batch = BuildBatch({.samples = 200, .stacks = 20});
  const std::string bytes = batch.SerializeAsString();
  Result<std::vector<v1::SampleBatch>> pieces = SplitBatch(batch, bytes.size());
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  ASSERT_EQ(pieces->size(), 1u);
  EXPECT_EQ((*pieces)[0].SerializeAsString(), bytes);
  EXPECT_EQ(BatchIdString((*pieces)[0].id()), "prod/node-3/77aa/42");

  Result<std::vector<std::string>> serialized = SplitSerializedBatch(bytes, 1'000'000);
  ASSERT_TRUE(serialized.ok()) << serialized.status();
  EXPECT_THAT(*serialized, ElementsAre(bytes));
}

class SplitLargeBatch : public ::testing::TestWithParam<bool> {};  // compact?

TEST_P(SplitLargeBatch, PiecesFitValidateAndHoldExactlyTheSamples) {
  constexpr size_t kMax = 200'000;
  const SampleEncoding encoding =
      GetParam() ? SampleEncoding{.compact = true, .timestamp_unit_ns = 1000} : SampleEncoding{};
  const v1::SampleBatch batch = BuildBatch({.encoding = encoding});
  ASSERT_EQ(Validate(batch), OkStatus());
  ASSERT_EQ(EncodingOf(batch).compact, GetParam());
  const size_t size = batch.ByteSizeLong();
  ASSERT_GT(size, 3 * kMax) << "the workload must need several pieces";

  const auto start = std::chrono::steady_clock::now();
  Result<std::vector<v1::SampleBatch>> pieces = SplitBatch(batch, kMax);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(pieces.ok()) << pieces.status();

  size_t total = 0;
  size_t smallest = SIZE_MAX;
  size_t largest = 0;
  std::set<std::string> ids;
  std::vector<std::string> got;
  for (size_t i = 0; i < pieces->size(); ++i) {
    const v1::SampleBatch& piece = (*pieces)[i];
    SCOPED_TRACE(BatchIdString(piece.id()));
    const size_t piece_size = piece.ByteSizeLong();
    total += piece_size;
    smallest = std::min(smallest, piece_size);
    largest = std::max(largest, piece_size);
    EXPECT_LE(piece_size, kMax);
    ASSERT_EQ(Validate(piece), OkStatus());
    ExpectSameHeader(piece, batch);
    EXPECT_THAT(piece.id().part(), ElementsAre(static_cast<uint32_t>(i + 1)));
    ids.insert(BatchIdString(piece.id()));
    for (std::string& s : ResolvedSamples(piece)) got.push_back(std::move(s));

    // Processes and threads: exactly those of the piece's samples, with their metadata.
    std::set<uint32_t> pids;
    std::set<std::pair<uint32_t, uint32_t>> threads;
    for (const SampleRow& r : DecodeSamples(piece)) {
      pids.insert(r.pid);
      threads.insert({r.pid, r.tid});
    }
    std::set<uint32_t> piece_pids;
    for (const v1::Process& p : piece.processes()) {
      piece_pids.insert(p.host_pid());
      EXPECT_EQ(p.comm(), fmt::format("worker-{}", p.host_pid()));
      EXPECT_EQ(p.container_id(), std::string(64, 'c'));
    }
    EXPECT_EQ(piece_pids, pids);
    std::set<std::pair<uint32_t, uint32_t>> piece_threads;
    for (const v1::Thread& t : piece.threads()) {
      piece_threads.insert({t.pid(), t.tid()});
      EXPECT_EQ(t.name(), fmt::format("t{}", t.tid()));
    }
    EXPECT_EQ(piece_threads, threads);
    // Every string is used: the string table is pruned too.
    EXPECT_LT(piece.strings_size(), batch.strings_size());
  }
  std::vector<std::string> want = ResolvedSamples(batch);
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_TRUE(want == got) << "the pieces' samples differ from the batch's (" << got.size()
                           << " vs " << want.size() << " samples)";
  EXPECT_EQ(ids.size(), pieces->size()) << "piece ids must be distinct";
  EXPECT_EQ(ids.count(BatchIdString(batch.id())), 0u);
  // Each piece carries the tables it needs, not the batch's.
  EXPECT_LT(total, 3 * size);
  std::printf(
      "[split] %s: %d samples, %zu B -> %zu pieces of %zu..%zu B, %zu B in all (%.2fx), %.1f ms\n",
      GetParam() ? "compact" : "plain", SampleCount(batch), size, pieces->size(), smallest, largest,
      total, static_cast<double>(total) / static_cast<double>(size), seconds * 1e3);

  // Deterministic: the same batch splits into byte-identical pieces, serialized or not.
  Result<std::vector<v1::SampleBatch>> again = SplitBatch(batch, kMax);
  ASSERT_TRUE(again.ok());
  Result<std::vector<std::string>> serialized =
      SplitSerializedBatch(batch.SerializeAsString(), kMax);
  ASSERT_TRUE(serialized.ok()) << serialized.status();
  ASSERT_EQ(again->size(), pieces->size());
  ASSERT_EQ(serialized->size(), pieces->size());
  for (size_t i = 0; i < pieces->size(); ++i) {
    EXPECT_EQ((*again)[i].SerializeAsString(), (*pieces)[i].SerializeAsString());
    EXPECT_EQ((*serialized)[i], (*pieces)[i].SerializeAsString());
    EXPECT_LE((*serialized)[i].size(), kMax);
  }
}

INSTANTIATE_TEST_SUITE_P(Encodings, SplitLargeBatch, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Compact" : "Plain";
                         });

TEST(SplitBatch, PieceSplitAgainGetsALongerDistinctId) {
  const v1::SampleBatch batch = BuildBatch({.samples = 4'000, .stacks = 400});
  Result<std::vector<v1::SampleBatch>> pieces = SplitBatch(batch, batch.ByteSizeLong() / 2);
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  ASSERT_GE(pieces->size(), 2u);
  const v1::SampleBatch& second = (*pieces)[1];
  EXPECT_EQ(BatchIdString(second.id()), "prod/node-3/77aa/42#2");

  Result<std::vector<v1::SampleBatch>> sub = SplitBatch(second, second.ByteSizeLong() / 2);
  ASSERT_TRUE(sub.ok()) << sub.status();
  ASSERT_GE(sub->size(), 2u);
  std::set<std::string> ids;
  for (const v1::SampleBatch& p : *pieces) ids.insert(BatchIdString(p.id()));
  std::vector<std::string> got;
  for (size_t i = 0; i < sub->size(); ++i) {
    const v1::SampleBatch& p = (*sub)[i];
    EXPECT_EQ(BatchIdString(p.id()), fmt::format("prod/node-3/77aa/42#2.{}", i + 1));
    EXPECT_TRUE(ids.insert(BatchIdString(p.id())).second) << BatchIdString(p.id());
    ASSERT_EQ(Validate(p), OkStatus());
    for (std::string& s : ResolvedSamples(p)) got.push_back(std::move(s));
  }
  std::vector<std::string> want = ResolvedSamples(second);
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_TRUE(want == got);
}

TEST(SplitBatch, HundredThousandSamplesSplitQuickly) {
  const v1::SampleBatch batch =
      BuildBatch({.samples = 100'000,
                  .stacks = 2'000,
                  .encoding = {.compact = true, .timestamp_unit_ns = 1000}});
  const auto start = std::chrono::steady_clock::now();
  Result<std::vector<v1::SampleBatch>> pieces = SplitBatch(batch, 1'000'000);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  size_t samples = 0;
  for (const v1::SampleBatch& p : *pieces) {
    EXPECT_LE(p.ByteSizeLong(), 1'000'000u);
    samples += static_cast<size_t>(SampleCount(p));
  }
  EXPECT_EQ(samples, 100'000u);
  std::printf("[split] compact: 100000 samples, %zu B -> %zu pieces at 1 MB, %.1f ms\n",
              batch.ByteSizeLong(), pieces->size(), seconds * 1e3);
}

TEST(SplitBatch, CompactTimesOffTheUnitStayExact) {
  // Another writer's compact batch whose base is not a multiple of timestamp_unit_ns: every
  // sample time is off the unit, and re-encoding with that unit would round them down.
  v1::SampleBatch batch = BuildBatch(
      {.samples = 2'000, .stacks = 200, .encoding = {.compact = true, .timestamp_unit_ns = 1000}});
  batch.set_base_timestamp_ns(batch.base_timestamp_ns() + 7);
  ASSERT_EQ(Validate(batch), OkStatus());
  Result<std::vector<v1::SampleBatch>> pieces = SplitBatch(batch, batch.ByteSizeLong() / 3);
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  ASSERT_GE(pieces->size(), 3u);
  std::vector<std::string> got;
  for (const v1::SampleBatch& p : *pieces) {
    ASSERT_EQ(Validate(p), OkStatus());
    EXPECT_TRUE(EncodingOf(p).compact);
    EXPECT_EQ(p.timestamp_unit_ns(), 1) << "exact unit instead of rounding";
    for (std::string& s : ResolvedSamples(p)) got.push_back(std::move(s));
  }
  std::vector<std::string> want = ResolvedSamples(batch);
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_TRUE(want == got);
}

// One sample whose stack alone is larger than max_bytes.
v1::SampleBatch BatchWithHugeSample(int small_samples) {
  BatchBuilder b;
  b.SetHeader("agent", 9, "c", "n");
  b.mutable_batch().set_period_ns(kPeriod);
  std::vector<uint32_t> frames;
  for (int i = 0; i < 1024; ++i) {
    v1::Location loc;
    loc.set_address(0x1000 + static_cast<uint64_t>(i));
    loc.add_lines()->set_function_strx(b.InternString(std::string(500, 'f') + std::to_string(i)));
    frames.push_back(b.InternLocation(loc));
  }
  const uint32_t huge = b.InternStack(frames);
  const uint32_t small = b.InternStack(std::vector<uint32_t>{frames[0]});
  for (int i = 0; i < small_samples; ++i) {
    b.AddSample({.stack_index = small, .pid = 1, .tid = 1, .timestamp_ns = kT0 + i});
  }
  b.AddSample({.stack_index = huge, .pid = 1, .tid = 2, .timestamp_ns = kT0 + small_samples});
  return b.Finish();
}

TEST(SplitBatch, SampleThatCannotFitIsOutOfRange) {
  for (int small : {0, 3}) {
    SCOPED_TRACE(small);
    const v1::SampleBatch batch = BatchWithHugeSample(small);
    ASSERT_EQ(Validate(batch), OkStatus());
    ASSERT_GT(batch.ByteSizeLong(), 500'000u);
    Result<std::vector<v1::SampleBatch>> pieces = SplitBatch(batch, 10'000);
    ASSERT_FALSE(pieces.ok());
    EXPECT_EQ(pieces.status().code(), StatusCode::kOutOfRange) << pieces.status();
    EXPECT_THAT(pieces.status().message(), HasSubstr("stack of 1024 frames"));
    EXPECT_THAT(pieces.status().message(), HasSubstr("cannot be split further"));
    EXPECT_THAT(pieces.status().message(), HasSubstr("agent/9"));

    Result<std::vector<std::string>> serialized =
        SplitSerializedBatch(batch.SerializeAsString(), 10'000);
    EXPECT_EQ(serialized.status().code(), StatusCode::kOutOfRange) << serialized.status();
  }
}

TEST(SplitBatch, BatchWithoutSamplesThatDoesNotFitIsOutOfRange) {
  v1::SampleBatch batch = BatchWithHugeSample(0);
  batch.clear_samples();
  ASSERT_EQ(Validate(batch), OkStatus());
  Result<std::vector<v1::SampleBatch>> pieces = SplitBatch(batch, 10'000);
  EXPECT_EQ(pieces.status().code(), StatusCode::kOutOfRange) << pieces.status();
  EXPECT_THAT(pieces.status().message(), HasSubstr("no samples"));
}

TEST(SplitBatch, InvalidBatchIsRejected) {
  v1::SampleBatch batch = BatchWithHugeSample(1);
  batch.mutable_samples()->set_stack_index(0, 99);
  EXPECT_EQ(SplitBatch(batch, 10'000).status().code(), StatusCode::kDataLoss);
  const Status s = SplitSerializedBatch(batch.SerializeAsString(), 10'000).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("agent/9: samples.stack_index"));
}

TEST(SplitSerializedBatch, GarbageIsDataLoss) {
  const Status s = SplitSerializedBatch("not a protobuf \xff\xff\xff", 1'000).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("not a flamestream.v1.SampleBatch"));
}

TEST(BatchIdString, AppendsThePartPathOfSplitBatches) {
  v1::BatchId id;
  id.set_agent_id("agent");
  id.set_sequence(42);
  EXPECT_EQ(BatchIdString(id), "agent/42");  // unsplit: as before
  id.add_part(2);
  EXPECT_EQ(BatchIdString(id), "agent/42#2");
  id.add_part(1);
  EXPECT_EQ(BatchIdString(id), "agent/42#2.1");
  id.add_part(10);
  EXPECT_EQ(BatchIdString(id), "agent/42#2.1.10");
}

}  // namespace
}  // namespace flamestream::batch
