#include "flamestream/batch/filter.h"

#include <gtest/gtest.h>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"

namespace flamestream::batch {
namespace {

v1::SampleBatch MakeBatch(const std::vector<int64_t>& timestamps) {
  BatchBuilder b;
  b.SetHeader("agent", 1, "c", "n");
  b.mutable_batch().set_period_ns(10);
  v1::Location loc;
  loc.set_address(0x10);
  const uint32_t li = b.InternLocation(loc);
  const uint32_t stack = b.InternStack(std::vector<uint32_t>{li});
  uint32_t tid = 1;
  for (int64_t ts : timestamps) {
    b.AddSample({.stack_index = stack, .pid = 7, .tid = tid++, .timestamp_ns = ts});
  }
  return b.Finish();
}

TEST(KeepSamplesInRange, KeepsExactlyTheSamplesInsideInclusiveBounds) {
  // Out of order, as spooled batches are.
  v1::SampleBatch batch = MakeBatch({500, 100, 300, 299, 701, 700});
  size_t kept = 0;
  ASSERT_TRUE(KeepSamplesInRange(batch, 300, 700, &kept).ok());
  EXPECT_EQ(kept, 3u);
  ASSERT_TRUE(Validate(batch).ok());
  std::vector<std::pair<int64_t, uint32_t>> got;
  for (const SampleRow& r : DecodeSamples(batch)) got.emplace_back(r.timestamp_ns, r.tid);
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, uint32_t>>{{500, 1}, {300, 3}, {700, 6}}));
}

// Replay filters by time before symbolizing: a malformed record (columns of different
// lengths, a stack index past the table) must be refused, not decoded out of bounds.
TEST(KeepSamplesInRange, RefusesAMalformedBatchInsteadOfDecodingIt) {
  v1::SampleBatch short_column = MakeBatch({100, 200, 300});
  short_column.mutable_samples()->mutable_tid()->RemoveLast();
  v1::SampleBatch bad_stack = MakeBatch({100, 200});
  bad_stack.mutable_samples()->set_stack_index(1, 999);
  for (v1::SampleBatch* b : {&short_column, &bad_stack}) {
    const std::string before = b->SerializeAsString();
    size_t kept = 7;
    Status s = KeepSamplesInRange(*b, 0, 1000, &kept);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
    EXPECT_EQ(b->SerializeAsString(), before);
  }
}

TEST(KeepSamplesInRange, AllOrNothing) {
  v1::SampleBatch batch = MakeBatch({10, 20});
  size_t kept = 0;
  ASSERT_TRUE(KeepSamplesInRange(batch, 0, 100, &kept).ok());
  EXPECT_EQ(kept, 2u);
  EXPECT_EQ(DecodeSamples(batch).size(), 2u);
  ASSERT_TRUE(KeepSamplesInRange(batch, 50, 100, &kept).ok());
  EXPECT_EQ(kept, 0u);
  EXPECT_EQ(DecodeSamples(batch).size(), 0u);
}

TEST(KeepSamplesInRange, CompactBatchStaysCompact) {
  v1::SampleBatch plain = MakeBatch({500, 100, 300, 299, 701, 700});
  Result<BatchBuilder> b = BatchBuilder::FromBatch(plain);
  ASSERT_TRUE(b.ok());
  b->set_encoding({.compact = true, .timestamp_unit_ns = 1});
  v1::SampleBatch batch = b->Finish();
  size_t kept = 0;
  ASSERT_TRUE(KeepSamplesInRange(batch, 300, 700, &kept).ok());
  EXPECT_EQ(kept, 3u);
  ASSERT_TRUE(Validate(batch).ok()) << Validate(batch);
  EXPECT_EQ(batch.samples().timestamp_ticks_size(), 3);
  std::vector<std::pair<int64_t, uint32_t>> got;
  for (const SampleRow& r : DecodeSamples(batch)) got.emplace_back(r.timestamp_ns, r.tid);
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, uint32_t>>{{300, 3}, {500, 1}, {700, 6}}));
}

}  // namespace
}  // namespace flamestream::batch
