#include <gtest/gtest.h>

#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"

namespace flamestream::kafka {
namespace {

TEST(ProducerConfig, IsIdempotentWithMurmur2AndZstdByDefault) {
  ProducerConfig cfg;
  cfg.properties = {{"bootstrap.servers", "127.0.0.1:1"}, {"linger.ms", "50"}};
  Result<Properties> p = EffectiveProducerProperties(cfg);
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->at("enable.idempotence"), "true");
  EXPECT_EQ(p->at("acks"), "all");
  EXPECT_EQ(p->at("partitioner"), "murmur2_random");
  EXPECT_EQ(p->at("compression.type"), "zstd");
  EXPECT_EQ(p->at("linger.ms"), "50");  // pass-through wins over our default
  EXPECT_EQ(p->at("bootstrap.servers"), "127.0.0.1:1");
}

TEST(ProducerConfig, RejectsTurningIdempotenceOff) {
  for (const Properties& bad :
       {Properties{{"enable.idempotence", "false"}}, Properties{{"acks", "1"}}}) {
    SCOPED_TRACE(bad.begin()->first);
    ProducerConfig cfg;
    cfg.properties = bad;
    Result<Properties> p = EffectiveProducerProperties(cfg);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.error().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ProducerConfig, UnknownPropertyIsAnErrorNamingIt) {
  ProducerConfig cfg;
  cfg.properties = {{"no.such.property", "1"}};
  Result<std::unique_ptr<Producer>> p = Producer::Create(cfg);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p.error().message().find("no.such.property"), std::string::npos) << p.error();
}

TEST(ConsumerConfig, ManualCommitsAndAssignorChoice) {
  ConsumerConfig cfg;
  cfg.group_id = "g";
  Result<Properties> p = EffectiveConsumerProperties(cfg);
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->at("enable.auto.commit"), "false");
  EXPECT_EQ(p->at("enable.auto.offset.store"), "false");
  EXPECT_EQ(p->at("partition.assignment.strategy"), "range");
  // librdkafka hands every reset to Poll(), which applies the policy and counts the loss.
  EXPECT_EQ(p->at("auto.offset.reset"), "error");
  EXPECT_EQ(*EffectiveResetPolicy(cfg), "earliest");
  cfg.properties = {{"auto.offset.reset", "largest"}};
  EXPECT_EQ(*EffectiveResetPolicy(cfg), "latest");
  cfg.properties = {{"auto.offset.reset", "sometimes"}};
  EXPECT_FALSE(EffectiveConsumerProperties(cfg).ok());
  cfg.properties = {};
  cfg.assignor = Assignor::kCooperativeSticky;
  p = EffectiveConsumerProperties(cfg);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->at("partition.assignment.strategy"), "cooperative-sticky");
  // A user's librdkafka property wins over the default.
  cfg.assignor = Assignor::kRange;
  cfg.properties = {{"partition.assignment.strategy", "cooperative-sticky"}};
  p = EffectiveConsumerProperties(cfg);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->at("partition.assignment.strategy"), "cooperative-sticky");

  cfg.properties = {{"enable.auto.commit", "true"}};
  EXPECT_FALSE(EffectiveConsumerProperties(cfg).ok());
  cfg.properties = {};
  cfg.group_id = "";
  EXPECT_FALSE(EffectiveConsumerProperties(cfg).ok());
  cfg.whole_topics = true;  // a table reader has no group
  p = EffectiveConsumerProperties(cfg);
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->at("group.id").rfind("flamestream-table-", 0), 0u);  // never joined
}

TEST(OffsetReset, CountsWhatRetentionDeletedBeforeItWasRead) {
  // Log [1000, 5000); the group had committed 200: 800 records were deleted unread.
  EXPECT_EQ(PlanOffsetReset(200, 1000, 5000, /*earliest=*/true), (OffsetResetPlan{1000, 800}));
  // With auto.offset.reset=latest the rest of the log is skipped too.
  EXPECT_EQ(PlanOffsetReset(200, 1000, 5000, /*earliest=*/false), (OffsetResetPlan{5000, 4800}));
  // Past the end (topic recreated): reading restarts, nothing of this log was skipped.
  EXPECT_EQ(PlanOffsetReset(9000, 0, 40, true), (OffsetResetPlan{0, 0}));
  EXPECT_EQ(PlanOffsetReset(9000, 0, 40, false), (OffsetResetPlan{40, 0}));
  // Back in the log by the time we asked: read on from there.
  EXPECT_EQ(PlanOffsetReset(1200, 1000, 5000, true), (OffsetResetPlan{1200, 0}));
}

TEST(SeekToTimestamp, UsesTheAnswerWhenFoundElseTheEarliestOffset) {
  struct Case {
    int64_t answer;
    int64_t want;
  } cases[] = {
      {0, 0},
      {42, 42},
      {-1, kOffsetBeginning},     // no record at/after ts, or the dev broker's "unknown"
      {-1001, kOffsetBeginning},  // error answers
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.answer);
    EXPECT_EQ(OffsetForTimestampAnswer(c.answer), c.want);
  }
}

TEST(Topics, AllHasEveryPipelineTopicAndItsDlq) {
  std::vector<std::string> all = topics::All();
  EXPECT_EQ(all.size(), 16u);
  EXPECT_EQ(all[0], "flamestream.samples.raw.v1");
  EXPECT_NE(std::find(all.begin(), all.end(), "flamestream.samples.correlated.v1.replay.dlq"),
            all.end());
  EXPECT_NE(std::find(all.begin(), all.end(), "otlp_spans.dlq"), all.end());
  EXPECT_EQ(topics::Dlq("x"), "x.dlq");
}

TEST(PartitionList, RoundTrips) {
  TopicPartitions in = {{"a", 0, 5}, {"b", 3, kOffsetBeginning}};
  PartitionList l = ToPartitionList(in);
  EXPECT_EQ(FromPartitionList(l.get()), in);
}

}  // namespace
}  // namespace flamestream::kafka
