#include "commit_plan.h"

#include <gtest/gtest.h>

#include "span_rebuild.h"

namespace flamestream::correlator {
namespace {

const CommitTopics kTopics{"samples", "spans", /*commit_spans=*/true,
                           /*allowed_lateness_ns=*/100};
constexpr int64_t kNothingHeld = std::numeric_limits<int64_t>::max();

kafka::TopicPartition Tp(const std::string& topic, int32_t p, int64_t offset,
                         std::string metadata = {}) {
  return {topic, p, offset, std::move(metadata)};
}

TEST(CommitPlan, SamplesMetadataIsTheEarliestSpanEndTheUncommittedSamplesNeed) {
  RestartLog log;
  log.uncommitted_times = {{5, 1000}, {6, 900}, {7, 2000}};
  // Committing samples up to offset 6: batch 5 is done, 6 and 7 remain (900 - 100 lateness);
  // the engine needs spans from 850 on.
  auto plan = PlanCommit(kTopics, {Tp("samples", 0, 6)}, {{0, {&log, 850}}});
  EXPECT_EQ(plan, (kafka::TopicPartitions{Tp("samples", 0, 6, "fs-corr rf=800")}));
  // Nothing held, nothing uncommitted after offset 8.
  plan = PlanCommit(kTopics, {Tp("samples", 0, 8)}, {{0, {&log, kNothingHeld}}});
  EXPECT_EQ(plan[0].metadata, "fs-corr rf=" + std::to_string(kNothingHeld));
}

TEST(CommitPlan, SpansMetadataNamesTheFirstRecordARestartNeeds) {
  RestartLog log;
  log.span_records = {{10, 500}, {11, 300}, {12, 900}, {13, 1200}};
  // Spans needed from 800 on: record 12 is the first ending at or after it (11 is behind it
  // but before the first needed one, so it stays out).
  auto plan = PlanCommit(kTopics, {Tp("spans", 0, 14)}, {{0, {&log, 800}}});
  EXPECT_EQ(plan, (kafka::TopicPartitions{Tp("spans", 0, 14, "fs-corr from=12")}));
  // Nothing needed: the position itself.
  plan = PlanCommit(kTopics, {Tp("spans", 0, 14)}, {{0, {&log, kNothingHeld}}});
  EXPECT_EQ(plan[0].metadata, "fs-corr from=14");
}

TEST(CommitPlan, NoSpansCommitWhileRebuildingBelowTheCommittedPositionOrInReplayMode) {
  RestartLog log;
  log.spans_committed = 50;
  log.rebuilding = true;
  EXPECT_TRUE(PlanCommit(kTopics, {Tp("spans", 0, 49)}, {{0, {&log, 0}}}).empty());
  log.rebuilding = false;
  EXPECT_TRUE(PlanCommit(kTopics, {Tp("spans", 0, 49)}, {{0, {&log, 0}}}).empty());
  EXPECT_EQ(PlanCommit(kTopics, {Tp("spans", 0, 51)}, {{0, {&log, 0}}}).size(), 1u);
  CommitTopics replay = kTopics;
  replay.commit_spans = false;
  EXPECT_EQ(PlanCommit(replay, {Tp("spans", 0, 51), Tp("samples", 0, 3)}, {{0, {&log, 0}}}),
            (kafka::TopicPartitions{Tp("samples", 0, 3)}));  // rf=0 is not written
  // A partition the stage does not hold: its spans are not committed.
  EXPECT_TRUE(PlanCommit(kTopics, {Tp("spans", 1, 51)}, {{0, {&log, 0}}}).empty());
}

TEST(CommitPlan, AnUnmovedPositionIsCommittedAgainWhenItsRestartOffsetMoves) {
  RestartLog log;
  log.spans_commit_pos = 20;
  log.spans_commit_from = 12;
  log.span_records = {{12, 900}, {15, 1500}};
  // The watermark moved: spans from 1000 on are needed, so a restart starts at 15.
  auto plan = PlanCommit(kTopics, {}, {{0, {&log, 1000}}});
  EXPECT_EQ(plan, (kafka::TopicPartitions{Tp("spans", 0, 20, "fs-corr from=15")}));
  // Unchanged restart offset: nothing to commit.
  EXPECT_TRUE(PlanCommit(kTopics, {}, {{0, {&log, 800}}}).empty());
  // Committed and applied: the record before the restart offset is forgotten.
  ApplyCommitted(kTopics, plan, {{0, &log}});
  EXPECT_EQ(log.spans_commit_from, 15);
  EXPECT_EQ(log.spans_commit_pos, 20);
  ASSERT_EQ(log.span_records.size(), 1u);
  EXPECT_EQ(log.span_records.front().first, 15);
}

TEST(CommitPlan, AppliedSamplesCommitForgetsTheCommittedBatches) {
  RestartLog log;
  log.uncommitted_times = {{5, 1000}, {6, 900}, {7, 2000}};
  ApplyCommitted(kTopics, {Tp("samples", 0, 7, "fs-corr rf=800")}, {{0, &log}});
  EXPECT_EQ(log.uncommitted_times, (std::map<int64_t, int64_t>{{7, 2000}}));
}

TEST(CommitPlan, ParsesOnlyItsOwnMetadata) {
  EXPECT_EQ(ParseCommitMetadata("fs-corr from=42", kSpansMetadataPrefix), 42);
  EXPECT_EQ(ParseCommitMetadata("fs-corr rf=42", kSpansMetadataPrefix), std::nullopt);
  EXPECT_EQ(ParseCommitMetadata("fs-corr from=x", kSpansMetadataPrefix), std::nullopt);
  EXPECT_EQ(ParseCommitMetadata("", kSamplesMetadataPrefix), std::nullopt);
}

TEST(SpanRebuild, StartsAtTheCommittedRestartOffsetOrTheEarliestRecord) {
  // First start: everything retained.
  RebuildPlan plan = PlanRebuild({"spans", 0, kafka::kOffsetInvalid, ""}, {.low = 3, .high = 10});
  EXPECT_EQ(plan.start, 3);
  EXPECT_EQ(plan.until, 10);
  EXPECT_TRUE(plan.rebuild);
  EXPECT_FALSE(plan.seek_to.has_value());
  // A restart: from the committed metadata, seeking back from the committed position.
  plan = PlanRebuild({"spans", 0, 8, "fs-corr from=6"}, {.low = 3, .high = 10});
  EXPECT_EQ(plan.start, 6);
  EXPECT_EQ(plan.seek_to, 6);
  // The restart offset fell out of retention: from the earliest retained record.
  plan = PlanRebuild({"spans", 0, 8, "fs-corr from=1"}, {.low = 3, .high = 10});
  EXPECT_EQ(plan.start, 3);
  EXPECT_EQ(plan.seek_to, 3);
  // No metadata (another tool committed): from the committed position.
  plan = PlanRebuild({"spans", 0, 8, ""}, {.low = 3, .high = 10});
  EXPECT_EQ(plan.start, 8);
  EXPECT_FALSE(plan.seek_to.has_value());
  // Nothing to re-read.
  plan = PlanRebuild({"spans", 0, 10, "fs-corr from=10"}, {.low = 3, .high = 10});
  EXPECT_FALSE(plan.rebuild);
  EXPECT_FALSE(plan.seek_to.has_value());
}

}  // namespace
}  // namespace flamestream::correlator
