#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"

namespace flamestream::batch {
namespace {

// A valid correlated batch using every table: 2 strings + "", 1 mapping, 2 locations (one with
// a line), 2 stacks, 1 span, 3 samples with value and span columns.
v1::SampleBatch ValidBatch() {
  BatchBuilder b;
  b.SetHeader("agent", 1, "c", "n");
  b.mutable_batch().set_stage(v1::STAGE_CORRELATED);
  b.mutable_batch().set_period_ns(1000);
  v1::Mapping m;
  m.set_path_strx(b.InternString("/app"));
  m.set_build_id("bid");
  const uint32_t mi = b.InternMapping(m);
  v1::Location l0;
  l0.set_mapping_index(mi);
  l0.set_address(0x10);
  v1::Line* line = l0.add_lines();
  line->set_function_strx(b.InternString("main"));
  line->set_file_strx(b.InternString("main.cc"));
  const uint32_t a = b.InternLocation(l0);
  v1::Location l1;
  l1.set_address(0xffffffff81000000);
  l1.set_symbol_strx(b.InternString("do_syscall_64"));
  const uint32_t k = b.InternLocation(l1);
  const std::vector<uint32_t> s0 = {k, a};
  const std::vector<uint32_t> s1 = {a};
  const uint32_t st0 = b.InternStack(s0);
  const uint32_t st1 = b.InternStack(s1);
  v1::SpanRef span;
  span.set_trace_id(std::string(16, 't'));
  span.set_span_id(std::string(8, 's'));
  const uint32_t sp = b.InternSpan(span);
  b.AddSample({.stack_index = st0, .pid = 1, .tid = 1, .cpu = 0, .timestamp_ns = 100});
  b.AddSample({.stack_index = st1,
               .pid = 1,
               .tid = 2,
               .cpu = 1,
               .timestamp_ns = 90,
               .value_ns = 500,
               .span_index = sp});
  b.AddSample({.stack_index = st1, .pid = 1, .tid = 2, .cpu = 1, .timestamp_ns = 95});
  return b.Finish();
}

TEST(Validate, AcceptsValidBatch) {
  const v1::SampleBatch batch = ValidBatch();
  EXPECT_EQ(Validate(batch), OkStatus());
  EXPECT_EQ(batch.strings_size(), 5);
  EXPECT_EQ(batch.samples().value_ns_size(), 3);
  EXPECT_EQ(batch.samples().span_index_size(), 3);
}

struct BadCase {
  const char* name;
  std::function<void(v1::SampleBatch&)> corrupt;
  StatusCode code;
  std::string message;
};

TEST(Validate, RejectsEveryKindOfCorruption) {
  const std::vector<BadCase> cases = {
      {"no agent id", [](v1::SampleBatch& b) { b.mutable_id()->clear_agent_id(); },
       StatusCode::kInvalidArgument, "id.agent_id is empty"},
      {"stage unspecified", [](v1::SampleBatch& b) { b.set_stage(v1::STAGE_UNSPECIFIED); },
       StatusCode::kInvalidArgument, "stage is STAGE_UNSPECIFIED"},
      {"no strings", [](v1::SampleBatch& b) { b.clear_strings(); }, StatusCode::kDataLoss,
       "strings is empty (strings[0] must be \"\")"},
      {"strings[0] not empty", [](v1::SampleBatch& b) { b.set_strings(0, "x"); },
       StatusCode::kDataLoss, "strings[0] is \"x\", must be \"\""},
      {"mapping path_strx", [](v1::SampleBatch& b) { b.mutable_mappings(0)->set_path_strx(5); },
       StatusCode::kDataLoss, "mappings[0].path_strx 5 >= 5 strings"},
      {"location mapping_index",
       [](v1::SampleBatch& b) { b.mutable_locations(1)->set_mapping_index(2); },
       StatusCode::kDataLoss, "locations[1].mapping_index 2 > 1 mappings"},
      {"location symbol_strx",
       [](v1::SampleBatch& b) { b.mutable_locations(1)->set_symbol_strx(9); },
       StatusCode::kDataLoss, "locations[1].symbol_strx 9 >= 5 strings"},
      {"line function_strx",
       [](v1::SampleBatch& b) { b.mutable_locations(0)->mutable_lines(0)->set_function_strx(7); },
       StatusCode::kDataLoss, "locations[0].lines[0].function_strx 7 >= 5 strings"},
      {"line system_name_strx",
       [](v1::SampleBatch& b) {
         b.mutable_locations(0)->mutable_lines(0)->set_system_name_strx(5);
       },
       StatusCode::kDataLoss, "locations[0].lines[0].system_name_strx 5 >= 5 strings"},
      {"line file_strx",
       [](v1::SampleBatch& b) { b.mutable_locations(0)->mutable_lines(0)->set_file_strx(6); },
       StatusCode::kDataLoss, "locations[0].lines[0].file_strx 6 >= 5 strings"},
      {"stack location index",
       [](v1::SampleBatch& b) { b.mutable_stacks(0)->set_location_indices(1, 2); },
       StatusCode::kDataLoss, "stacks[0].location_indices[1] 2 >= 2 locations"},
      {"span trace_id size", [](v1::SampleBatch& b) { b.mutable_spans(0)->set_trace_id("short"); },
       StatusCode::kDataLoss, "spans[0].trace_id has 5 bytes, want 16"},
      {"span span_id size",
       [](v1::SampleBatch& b) { b.mutable_spans(0)->set_span_id(std::string(16, 's')); },
       StatusCode::kDataLoss, "spans[0].span_id has 16 bytes, want 8"},
      {"pid column short",
       [](v1::SampleBatch& b) { b.mutable_samples()->mutable_pid()->RemoveLast(); },
       StatusCode::kDataLoss, "samples.pid has 2 entries, stack_index has 3"},
      {"tid column long", [](v1::SampleBatch& b) { b.mutable_samples()->add_tid(1); },
       StatusCode::kDataLoss, "samples.tid has 4 entries, stack_index has 3"},
      {"cpu column missing", [](v1::SampleBatch& b) { b.mutable_samples()->clear_cpu(); },
       StatusCode::kDataLoss, "samples.cpu has 0 entries, stack_index has 3"},
      {"timestamp column short",
       [](v1::SampleBatch& b) { b.mutable_samples()->mutable_timestamp_delta_ns()->RemoveLast(); },
       StatusCode::kDataLoss, "samples.timestamp_delta_ns has 2 entries, stack_index has 3"},
      {"stack_index column short",
       [](v1::SampleBatch& b) { b.mutable_samples()->mutable_stack_index()->RemoveLast(); },
       StatusCode::kDataLoss, "samples.pid has 3 entries, stack_index has 2"},
      {"value column partial",
       [](v1::SampleBatch& b) { b.mutable_samples()->mutable_value_ns()->RemoveLast(); },
       StatusCode::kDataLoss,
       "samples.value_ns has 2 entries, stack_index has 3 (must be equal or empty)"},
      {"span column partial",
       [](v1::SampleBatch& b) { b.mutable_samples()->mutable_span_index()->RemoveLast(); },
       StatusCode::kDataLoss,
       "samples.span_index has 2 entries, stack_index has 3 (must be equal or empty)"},
      {"stack_index out of range",
       [](v1::SampleBatch& b) { b.mutable_samples()->set_stack_index(2, 2); },
       StatusCode::kDataLoss, "samples.stack_index[2] 2 >= 2 stacks"},
      {"span_index out of range",
       [](v1::SampleBatch& b) { b.mutable_samples()->set_span_index(0, 2); }, StatusCode::kDataLoss,
       "samples.span_index[0] 2 > 1 spans"},
      {"no values and no period",
       [](v1::SampleBatch& b) {
         b.mutable_samples()->clear_value_ns();
         b.set_period_ns(0);
       },
       StatusCode::kInvalidArgument, "samples.value_ns is empty and period_ns is 0 (must be > 0)"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    v1::SampleBatch batch = ValidBatch();
    c.corrupt(batch);
    const Status s = Validate(batch);
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_EQ(s.message(), c.message);
  }
}

TEST(Validate, AllowsEmptyOptionalColumnsAndNoMapping) {
  v1::SampleBatch batch = ValidBatch();
  batch.mutable_samples()->clear_value_ns();
  batch.mutable_samples()->clear_span_index();
  batch.mutable_locations(0)->set_mapping_index(0);
  EXPECT_EQ(Validate(batch), OkStatus());
}

v1::SampleBatch ValidCompactBatch() {
  Result<BatchBuilder> b = BatchBuilder::FromBatch(ValidBatch());
  EXPECT_TRUE(b.ok());
  b->set_encoding({.compact = true, .timestamp_unit_ns = 10});
  b->AddSample({.stack_index = 0, .pid = 1, .tid = 3, .cpu = 0, .timestamp_ns = 120});
  return b->Finish();
}

TEST(Validate, CompactEncodingAcceptedAndItsCorruptionRejected) {
  ASSERT_TRUE(Validate(ValidCompactBatch()).ok()) << Validate(ValidCompactBatch());
  const std::vector<BadCase> cases = {
      {"thread_index out of range",
       [](v1::SampleBatch& b) { b.mutable_samples()->set_thread_index(1, 3); },
       StatusCode::kDataLoss, "samples.thread_index[1] 3 >= 3 threads"},
      {"thread_index short",
       [](v1::SampleBatch& b) { b.mutable_samples()->mutable_thread_index()->RemoveLast(); },
       StatusCode::kDataLoss,
       "samples.thread_index has 3 entries, stack_index has 4 (must be equal or empty)"},
      {"both thread encodings", [](v1::SampleBatch& b) {
         for (int i = 0; i < 4; ++i) b.mutable_samples()->add_pid(1);
         for (int i = 0; i < 4; ++i) b.mutable_samples()->add_tid(1);
       },
       StatusCode::kDataLoss, "samples has both thread_index and pid/tid columns"},
      {"ticks without rest",
       [](v1::SampleBatch& b) { b.mutable_samples()->clear_timestamp_rest(); },
       StatusCode::kDataLoss, "samples.timestamp_rest has 0 entries, stack_index has 4"},
      {"both timestamp encodings", [](v1::SampleBatch& b) {
         for (int i = 0; i < 4; ++i) b.mutable_samples()->add_timestamp_delta_ns(1);
       },
       StatusCode::kDataLoss,
       "samples has both timestamp_ticks/rest and timestamp_delta_ns columns"},
      {"no unit", [](v1::SampleBatch& b) { b.set_timestamp_unit_ns(0); }, StatusCode::kDataLoss,
       "timestamp_unit_ns is 0 with compact timestamps (must be > 0)"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    v1::SampleBatch batch = ValidCompactBatch();
    c.corrupt(batch);
    const Status s = Validate(batch);
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_EQ(s.message(), c.message);
  }
}

TEST(BatchIdString, JoinsAgentAndSequence) {
  v1::BatchId id;
  id.set_agent_id("prod/node-1/4f2a");
  id.set_sequence(18446744073709551615ull);
  EXPECT_EQ(BatchIdString(id), "prod/node-1/4f2a/18446744073709551615");
  EXPECT_EQ(BatchIdString(v1::BatchId()), "/0");
}

}  // namespace
}  // namespace flamestream::batch
