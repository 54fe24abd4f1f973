#include "batch_assembly.h"

#include <gtest/gtest.h>

#include "flamestream/batch/batch.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::correlator {
namespace {

namespace v1 = ::flamestream::v1;

std::string Id(size_t n, char tag) {
  std::string id(n, '\0');
  id[0] = tag;
  return id;
}

// Three samples of pid 7; the second carries a span the agent saw without a name.
std::string SymbolizedBatch() {
  batch::BatchBuilder b;
  b.SetHeader("prod/node-a/agent", 1, "prod", "node-a");
  b.mutable_batch().set_stage(v1::STAGE_SYMBOLIZED);
  b.mutable_batch().set_period_ns(10'000'000);
  const std::vector<uint32_t> frames = {};
  const uint32_t stack = b.InternStack(frames);
  v1::SpanRef agent_span;
  agent_span.set_trace_id(Id(16, 'd'));
  agent_span.set_span_id(Id(8, 'd'));
  const uint32_t direct = b.InternSpan(agent_span);
  v1::Process proc;
  proc.set_host_pid(7);
  proc.set_comm("app");
  b.AddProcess(proc);
  b.AddSample({.stack_index = stack, .pid = 7, .tid = 7, .timestamp_ns = 3000});
  b.AddSample(
      {.stack_index = stack, .pid = 7, .tid = 8, .timestamp_ns = 1000, .span_index = direct});
  b.AddSample({.stack_index = stack, .pid = 7, .tid = 7, .timestamp_ns = 2000});
  return b.Finish().SerializeAsString();
}

TEST(BatchAssembly, DecodesTheRowsAndTheIdsTheAgentAlreadySet) {
  Result<JoinBatch> jb = DecodeForJoin(SymbolizedBatch());
  ASSERT_TRUE(jb.ok()) << jb.error();
  ASSERT_EQ(jb->rows.size(), 3u);
  EXPECT_EQ(jb->remaining, 3u);
  EXPECT_EQ(jb->min_time_ns, 1000);
  EXPECT_EQ(jb->direct[1].first, correlate::TraceId::FromBytes(Id(16, 'd')));
  EXPECT_EQ(jb->direct[0].first, correlate::TraceId());
  EXPECT_EQ(jb->span_index, (std::vector<uint32_t>{0, 1, 0}));
  EXPECT_FALSE(jb->builder.batch().has_samples());  // rebuilt by FinishBatch
}

TEST(BatchAssembly, RefusesWhatIsNotASymbolizedBatchWithTheReason) {
  Result<JoinBatch> garbage = DecodeForJoin("\xff\xff\xff");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error().message().find("not a flamestream.v1.SampleBatch"), std::string::npos);
  v1::SampleBatch raw;
  ASSERT_TRUE(raw.ParseFromString(SymbolizedBatch()));
  raw.set_stage(v1::STAGE_RAW);
  Result<JoinBatch> wrong = DecodeForJoin(raw.SerializeAsString());
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message().find("want STAGE_SYMBOLIZED"), std::string::npos);
}

TEST(BatchAssembly, EverySampleCarriesItsSpanAndTheProcessItsService) {
  Result<JoinBatch> jb = DecodeForJoin(SymbolizedBatch());
  ASSERT_TRUE(jb.ok()) << jb.error();
  correlate::Emission matched{.kind = correlate::MatchKind::kInterval,
                              .trace_id = correlate::TraceId::FromBytes(Id(16, 't')),
                              .span_id = correlate::SpanId::FromBytes(Id(8, 's')),
                              .span_name = "GET /cart",
                              .service_name = "shop"};
  correlate::Emission direct{.kind = correlate::MatchKind::kDirect,
                             .trace_id = correlate::TraceId::FromBytes(Id(16, 'd')),
                             .span_id = correlate::SpanId::FromBytes(Id(8, 'd')),
                             .span_name = "checkout",
                             .service_name = "api"};
  correlate::Emission unmatched{.kind = correlate::MatchKind::kUnmatched};
  EXPECT_FALSE(ApplyEmission(*jb, 0, matched));
  EXPECT_FALSE(ApplyEmission(*jb, 2, unmatched));
  EXPECT_TRUE(ApplyEmission(*jb, 1, direct));  // the last one
  v1::SampleBatch out;
  ASSERT_TRUE(out.ParseFromString(FinishBatch(std::move(*jb))));
  ASSERT_TRUE(batch::Validate(out).ok());
  EXPECT_EQ(out.stage(), v1::STAGE_CORRELATED);
  const std::vector<batch::SampleRow> rows = batch::DecodeSamples(out);
  ASSERT_EQ(rows.size(), 3u);
  const v1::SpanRef* first = batch::SpanOf(out, rows[0].span_index);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->name(), "GET /cart");
  const v1::SpanRef* second = batch::SpanOf(out, rows[1].span_index);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(rows[1].span_index, 1u);  // the agent's span, named now
  EXPECT_EQ(second->name(), "checkout");
  EXPECT_EQ(second->service_name(), "api");
  EXPECT_EQ(rows[2].span_index, 0u);
  ASSERT_EQ(out.processes_size(), 1);
  EXPECT_EQ(out.processes(0).comm(), "app");          // kept
  EXPECT_EQ(out.processes(0).service_name(), "api");  // the smallest name seen
}

// An off-CPU event (a thread blocked 42 ms in a span) joins its span like a CPU sample and
// keeps what it measures: a slow span that waits on a lock or I/O shows where.
TEST(BatchAssembly, OffCpuEventsJoinTheirSpanAndKeepTheirTypeAndTime) {
  batch::BatchBuilder b;
  b.SetHeader("prod/node-a/agent", 2, "prod", "node-a");
  b.mutable_batch().set_stage(v1::STAGE_SYMBOLIZED);
  b.mutable_batch().set_period_ns(10'000'000);
  const std::vector<uint32_t> frames = {};
  const uint32_t stack = b.InternStack(frames);
  v1::Process proc;
  proc.set_host_pid(7);
  b.AddProcess(proc);
  b.AddSample({.stack_index = stack, .pid = 7, .tid = 7, .timestamp_ns = 1000});
  b.AddSample({.stack_index = stack,
               .pid = 7,
               .tid = 7,
               .timestamp_ns = 2000,
               .value_ns = 42'000'000,
               .profile_type = v1::PROFILE_TYPE_OFF_CPU});
  Result<JoinBatch> jb = DecodeForJoin(b.Finish().SerializeAsString());
  ASSERT_TRUE(jb.ok()) << jb.error();
  const correlate::Emission span{.kind = correlate::MatchKind::kInterval,
                                 .trace_id = correlate::TraceId::FromBytes(Id(16, 't')),
                                 .span_id = correlate::SpanId::FromBytes(Id(8, 's')),
                                 .span_name = "SELECT orders",
                                 .service_name = "shop"};
  EXPECT_FALSE(ApplyEmission(*jb, 0, span));
  EXPECT_TRUE(ApplyEmission(*jb, 1, span));
  v1::SampleBatch out;
  ASSERT_TRUE(out.ParseFromString(FinishBatch(std::move(*jb))));
  ASSERT_TRUE(batch::Validate(out).ok());
  const std::vector<batch::SampleRow> rows = batch::DecodeSamples(out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].profile_type, uint32_t{v1::PROFILE_TYPE_CPU});
  EXPECT_EQ(rows[0].value_ns, 10'000'000);
  EXPECT_EQ(rows[1].profile_type, uint32_t{v1::PROFILE_TYPE_OFF_CPU});
  EXPECT_EQ(rows[1].value_ns, 42'000'000);
  const v1::SpanRef* off = batch::SpanOf(out, rows[1].span_index);
  ASSERT_NE(off, nullptr);
  EXPECT_EQ(off->name(), "SELECT orders");
}

}  // namespace
}  // namespace flamestream::correlator
