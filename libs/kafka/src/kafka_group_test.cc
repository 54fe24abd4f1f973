// Group consumers against the dev broker: no record lost when a member dies and the restart
// resumes after the commit, seeking by timestamp, an offset outside the log, pausing across
// rebalances, and range assignment of co-partitioned topics.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "flamestream/common/strings.h"
#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/testing/dev_broker.h"
#include "kafka_test_util.h"

namespace flamestream::kafka::broker_test {
namespace {

TEST(KafkaGroup, NoRecordLostWhenAConsumerDiesAndRestartResumesAfterCommit) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  const std::string topic(topics::kSamplesRaw);
  constexpr int kRecords = 4000;
  auto producer = MakeProducer(*broker);
  ASSERT_NO_FATAL_FAILURE(ProduceAll(*producer, topic, 0, kRecords));

  std::set<std::pair<int32_t, int64_t>> seen;  // (partition, offset) received by anyone
  std::set<int> values;
  struct Member {
    std::unique_ptr<Consumer> consumer;
    AckTracker acks;
    int received = 0;
  };
  auto make_member = [&](Member& m) {
    ConsumerConfig cfg = ConsumerCfg(*broker, "g-crash", {topic});
    cfg.on_revoked = [&m](const TopicPartitions& parts, bool lost) {
      if (!lost) {
        TopicPartitions offsets = m.acks.CommittableOffsets();
        if (m.consumer->Commit(offsets).ok()) m.acks.MarkCommitted(offsets);
      }
      m.acks.Forget(parts);
    };
    Result<std::unique_ptr<Consumer>> c = Consumer::Create(cfg);
    ASSERT_TRUE(c.ok()) << c.error();
    m.consumer = std::move(*c);
  };
  Member a;
  Member b;
  ASSERT_NO_FATAL_FAILURE(make_member(a));
  ASSERT_NO_FATAL_FAILURE(make_member(b));

  // A "processes" a record by acking it right away, except that after the crash point it
  // leaves records in flight (tracked, never acked), which must then be redelivered to B.
  const auto deadline = Clock::now() + 25s;
  bool a_dead = false;
  auto poll = [&](Member& m, bool hold) {
    Result<std::optional<Message>> msg = m.consumer->Poll(10ms);
    ASSERT_TRUE(msg.ok()) << msg.error();
    if (*msg) {
      const Message& r = **msg;
      seen.insert({r.partition(), r.offset()});
      values.insert(*common::ParseInt<int>(r.value()));
      m.received++;
      ASSERT_TRUE(m.acks.Track(std::string(r.topic()), r.partition(), r.offset(), hold ? 1 : 0));
    }
    TopicPartitions offsets = m.acks.CommittableOffsets();
    if (!offsets.empty() && m.consumer->Commit(offsets).ok()) m.acks.MarkCommitted(offsets);
  };
  while (static_cast<int>(values.size()) < kRecords && Clock::now() < deadline) {
    if (!a_dead) {
      ASSERT_NO_FATAL_FAILURE(poll(a, /*hold=*/a.received >= 300));
      if (a.received >= 400) {
        // Crash: no commit of the held records, no LeaveGroup.
        ASSERT_GT(a.acks.Pending(), 0u);
        a.consumer->Abandon();
        a_dead = true;
      }
    }
    ASSERT_NO_FATAL_FAILURE(poll(b, false));
  }
  ASSERT_TRUE(a_dead) << "consumer A never got 400 records";
  EXPECT_EQ(static_cast<int>(values.size()), kRecords) << "records lost";
  EXPECT_EQ(static_cast<int>(seen.size()), kRecords);
  EXPECT_GT(b.received, kRecords - 400) << "B must have taken over A's partitions";

  // B commits everything it acknowledged as it leaves.
  ASSERT_TRUE(b.consumer->Close().ok());

  // A restarted member resumes after the committed offsets: only new records arrive.
  ASSERT_NO_FATAL_FAILURE(ProduceAll(*producer, topic, kRecords, 200));
  Member c;
  ASSERT_NO_FATAL_FAILURE(make_member(c));
  std::set<int> fresh;
  const auto deadline2 = Clock::now() + 15s;
  while (fresh.size() < 200 && Clock::now() < deadline2) {
    Result<std::optional<Message>> msg = c.consumer->Poll(50ms);
    ASSERT_TRUE(msg.ok()) << msg.error();
    if (*msg) {
      int v = *common::ParseInt<int>((*msg)->value());
      ASSERT_GE(v, kRecords) << "record before the committed offset was redelivered";
      fresh.insert(v);
    }
  }
  EXPECT_EQ(fresh.size(), 200u);
}

TEST(KafkaConsumer, SeekToTimestampFallsBackToEarliestOnTheDevBroker) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  const std::string topic = "seek-test";
  ASSERT_TRUE(broker->Command("topic create seek-test 1").ok());
  auto producer = MakeProducer(*broker);
  const int64_t t0 = 1'700'000'000'000;
  for (int i = 0; i < 10; ++i) {
    // Record timestamps one second apart.
    ASSERT_TRUE(
        producer->Produce(topic, "k", std::to_string(i), {}, nullptr, kAnyPartition, t0 + i * 1000)
            .ok());
  }
  ASSERT_TRUE(producer->Flush(10s).ok());

  Result<std::unique_ptr<Consumer>> c = Consumer::Create(ConsumerCfg(*broker, "g-seek", {topic}));
  ASSERT_TRUE(c.ok());
  std::vector<int64_t> offsets;
  auto drain = [&](size_t want) {
    const auto deadline = Clock::now() + 15s;
    while (offsets.size() < want && Clock::now() < deadline) {
      Result<std::optional<Message>> msg = (*c)->Poll(50ms);
      ASSERT_TRUE(msg.ok());
      if (*msg) offsets.push_back((*msg)->offset());
    }
  };
  ASSERT_NO_FATAL_FAILURE(drain(10));
  ASSERT_EQ(offsets.size(), 10u);
  EXPECT_EQ(offsets.front(), 0);
  // The consumer's position is the end now; lag is zero.
  Result<std::vector<PartitionLag>> lag = (*c)->Lag(5s);
  ASSERT_TRUE(lag.ok()) << lag.error();
  ASSERT_EQ(lag->size(), 1u);
  EXPECT_EQ((*lag)[0].high_watermark, 10);
  EXPECT_EQ((*lag)[0].position, 10);
  EXPECT_EQ((*lag)[0].lag, 0);

  // The premise: the mock answers offsetsForTimes with -1 even where a record matches.
  PartitionList q = ToPartitionList({{topic, 0, t0 + 5000}});
  ASSERT_EQ(rd_kafka_offsets_for_times((*c)->handle(), q.get(), 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(q->elems[0].offset, -1) << "the dev broker now answers timestamps: update this test";

  // So the seek lands on the earliest offset (a real broker would answer 5).
  ASSERT_TRUE((*c)->SeekToTimestamp(t0 + 5000, 5s).ok());
  offsets.clear();
  ASSERT_NO_FATAL_FAILURE(drain(10));
  ASSERT_EQ(offsets.size(), 10u);
  EXPECT_EQ(offsets.front(), 0);
  EXPECT_EQ(offsets.back(), 9);
}

// A committed offset that is no longer in the log: librdkafka would reset it with one log line.
// The consumer instead hands the reset to Poll(), reports it (on_offset_reset, with the log's
// bounds and what was skipped; PlanOffsetReset's test covers the arithmetic of records that
// retention deleted) and resumes where auto.offset.reset says. librdkafka 2.0.2's mock cluster
// keeps every record here, so the offset is put past the end (as after a topic was recreated).
TEST(KafkaConsumer, OffsetOutsideTheLogIsReportedAndReadingResumes) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  const std::string topic = "reset-test";
  ASSERT_TRUE(broker->Command("topic create reset-test 1").ok());
  auto producer = MakeProducer(*broker);
  ASSERT_NO_FATAL_FAILURE(ProduceAll(*producer, topic, 0, 10));
  {
    Result<std::unique_ptr<Consumer>> c =
        Consumer::Create(ConsumerCfg(*broker, "g-reset", {topic}));
    ASSERT_TRUE(c.ok()) << c.error();
    const auto deadline = Clock::now() + 15s;
    Result<TopicPartitions> assigned = TopicPartitions{};
    while (assigned.ok() && assigned->empty() && Clock::now() < deadline) {
      ASSERT_TRUE((*c)->Poll(50ms).ok());
      assigned = (*c)->Assignment();
    }
    ASSERT_TRUE((*c)->Commit({{topic, 0, 500}}).ok());
    ASSERT_TRUE((*c)->Close().ok());
  }
  std::vector<OffsetReset> resets;
  ConsumerConfig cfg = ConsumerCfg(*broker, "g-reset", {topic});
  cfg.on_offset_reset = [&](const OffsetReset& r) { resets.push_back(r); };
  Result<std::unique_ptr<Consumer>> c = Consumer::Create(cfg);
  ASSERT_TRUE(c.ok()) << c.error();
  std::vector<int64_t> offsets;
  const auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline && offsets.size() < 10) {
    Result<std::optional<Message>> msg = (*c)->Poll(50ms);
    ASSERT_TRUE(msg.ok()) << msg.error();
    if (*msg) offsets.push_back((*msg)->offset());
  }
  ASSERT_EQ(resets.size(), 1u);
  EXPECT_EQ(resets[0].topic, topic);
  EXPECT_EQ(resets[0].requested, 500);
  EXPECT_EQ(resets[0].log_start, 0);
  EXPECT_EQ(resets[0].log_end, 10);
  EXPECT_EQ(resets[0].resumed_at, 0);
  EXPECT_EQ(resets[0].skipped, 0);
  EXPECT_EQ((*c)->records_skipped(), 0);
  ASSERT_EQ(offsets.size(), 10u);
  EXPECT_EQ(offsets.front(), 0);
  EXPECT_EQ(offsets.back(), 9);

  // auto.offset.reset=error: the same reset fails Poll() instead.
  ConsumerConfig strict = ConsumerCfg(*broker, "g-reset-strict", {topic});
  strict.auto_offset_reset = "error";
  Result<std::unique_ptr<Consumer>> s = Consumer::Create(strict);
  ASSERT_TRUE(s.ok());
  Status failed;
  const auto strict_deadline = Clock::now() + 15s;
  while (failed.ok() && Clock::now() < strict_deadline) {
    Result<std::optional<Message>> msg = (*s)->Poll(50ms);
    if (!msg.ok()) failed = msg.error();
  }
  EXPECT_NE(failed.message().find("no committed offset and auto.offset.reset=error"),
            std::string::npos)
      << failed;
}

TEST(KafkaConsumer, PauseStopsAPartitionAndResumeRestartsIt) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  ASSERT_TRUE(broker->Command("topic create pause-test 2").ok());
  auto producer = MakeProducer(*broker);
  Result<std::unique_ptr<Consumer>> c =
      Consumer::Create(ConsumerCfg(*broker, "g-pause", {"pause-test"}));
  ASSERT_TRUE(c.ok());
  // Wait for the assignment before pausing.
  const auto deadline = Clock::now() + 15s;
  TopicPartitions assigned;
  while (assigned.size() < 2 && Clock::now() < deadline) {
    ASSERT_TRUE((*c)->Poll(50ms).ok());
    assigned = *(*c)->Assignment();
  }
  ASSERT_EQ(assigned.size(), 2u);
  ASSERT_TRUE((*c)->Pause({{"pause-test", 0}}).ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(producer->Produce("pause-test", "", "p0", {}, nullptr, 0).ok());
    ASSERT_TRUE(producer->Produce("pause-test", "", "p1", {}, nullptr, 1).ok());
  }
  ASSERT_TRUE(producer->Flush(10s).ok());
  std::map<int32_t, int> got;
  auto drain = [&](int want_total) {
    const auto until = Clock::now() + 10s;
    while (got[0] + got[1] < want_total && Clock::now() < until) {
      Result<std::optional<Message>> msg = (*c)->Poll(50ms);
      ASSERT_TRUE(msg.ok());
      if (*msg) got[(*msg)->partition()]++;
    }
  };
  ASSERT_NO_FATAL_FAILURE(drain(5));
  EXPECT_EQ(got[1], 5);
  EXPECT_EQ(got[0], 0) << "paused partition delivered records";
  ASSERT_TRUE((*c)->Resume({{"pause-test", 0}}).ok());
  ASSERT_NO_FATAL_FAILURE(drain(10));
  EXPECT_EQ(got[0], 5);
}

// A consumer that paused its input (the exporter while its sink is down, a stage under
// backpressure) stays paused when a rebalance takes partitions away and hands them back: new
// assignments come in paused until ResumeAll().
TEST(KafkaConsumer, PauseAllHoldsAcrossARebalance) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  const std::string topic = "pause-all";
  ASSERT_TRUE(broker->Command("topic create pause-all 4").ok());
  auto producer = MakeProducer(*broker);
  ASSERT_NO_FATAL_FAILURE(ProduceAll(*producer, topic, 0, 40));

  Result<std::unique_ptr<Consumer>> a = Consumer::Create(ConsumerCfg(*broker, "g-pause", {topic}));
  ASSERT_TRUE(a.ok());
  auto assigned_count = [](Consumer& c) {
    Result<TopicPartitions> parts = c.Assignment();
    return parts.ok() ? parts->size() : 0u;
  };
  int a_read = 0;
  auto poll_a = [&] {
    Result<std::optional<Message>> m = (*a)->Poll(20ms);
    ASSERT_TRUE(m.ok());
    a_read += m->has_value() ? 1 : 0;
  };
  auto deadline = Clock::now() + 20s;
  while (assigned_count(**a) < 4 && Clock::now() < deadline) ASSERT_NO_FATAL_FAILURE(poll_a());
  ASSERT_EQ(assigned_count(**a), 4u);
  ASSERT_TRUE((*a)->PauseAll().ok());
  const int before = a_read;  // what it read before pausing (likely some)

  // B joins (A keeps 2 partitions), takes its share, and leaves (A gets all 4 back).
  int b_read = 0;
  {
    Result<std::unique_ptr<Consumer>> b =
        Consumer::Create(ConsumerCfg(*broker, "g-pause", {topic}));
    ASSERT_TRUE(b.ok());
    deadline = Clock::now() + 30s;
    while (assigned_count(**b) == 0 && Clock::now() < deadline) {
      ASSERT_NO_FATAL_FAILURE(poll_a());
      Result<std::optional<Message>> m = (*b)->Poll(20ms);
      ASSERT_TRUE(m.ok());
    }
    ASSERT_GT(assigned_count(**b), 0u);
    for (int i = 0; i < 50; ++i) {
      ASSERT_NO_FATAL_FAILURE(poll_a());
      Result<std::optional<Message>> m = (*b)->Poll(20ms);
      ASSERT_TRUE(m.ok());
      b_read += m->has_value() ? 1 : 0;
    }
    ASSERT_TRUE((*b)->Close().ok());  // no commits: its records stay for A
  }
  deadline = Clock::now() + 30s;
  while (assigned_count(**a) < 4 && Clock::now() < deadline) ASSERT_NO_FATAL_FAILURE(poll_a());
  ASSERT_EQ(assigned_count(**a), 4u);
  for (int i = 0; i < 50; ++i) ASSERT_NO_FATAL_FAILURE(poll_a());
  EXPECT_EQ(a_read, before) << "records arrived while paused, through the rebalance";
  EXPECT_GT(b_read, 0);

  ASSERT_TRUE((*a)->ResumeAll().ok());
  deadline = Clock::now() + 20s;
  while (a_read < 40 && Clock::now() < deadline) ASSERT_NO_FATAL_FAILURE(poll_a());
  EXPECT_EQ(a_read, 40);  // nothing was committed, so A reads all of it again in the end
}

// librdkafka keeps a partition's pause across an unassign: a partition paused by PauseAll,
// moved to another member, and assigned back after ResumeAll ran must not stay paused.
TEST(KafkaConsumer, ResumeAllAlsoResumesPartitionsThatMovedAwayWhilePaused) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  const std::string topic = "pause-moved";
  ASSERT_TRUE(broker->Command("topic create pause-moved 2").ok());
  auto producer = MakeProducer(*broker);
  ASSERT_NO_FATAL_FAILURE(ProduceAll(*producer, topic, 0, 40));

  Result<std::unique_ptr<Consumer>> a = Consumer::Create(ConsumerCfg(*broker, "g-moved", {topic}));
  ASSERT_TRUE(a.ok());
  auto assigned_count = [](Consumer& c) {
    Result<TopicPartitions> parts = c.Assignment();
    return parts.ok() ? parts->size() : 0u;
  };
  std::set<std::string> a_values;
  auto poll_a = [&] {
    Result<std::optional<Message>> m = (*a)->Poll(20ms);
    ASSERT_TRUE(m.ok());
    if (m->has_value()) a_values.insert(std::string((*m)->value()));
  };
  auto deadline = Clock::now() + 20s;
  while (assigned_count(**a) < 2 && Clock::now() < deadline) ASSERT_NO_FATAL_FAILURE(poll_a());
  ASSERT_EQ(assigned_count(**a), 2u);
  ASSERT_TRUE((*a)->PauseAll().ok());
  {
    // B takes one partition; A resumes while it holds only the other; B leaves uncommitted.
    Result<std::unique_ptr<Consumer>> b =
        Consumer::Create(ConsumerCfg(*broker, "g-moved", {topic}));
    ASSERT_TRUE(b.ok());
    deadline = Clock::now() + 30s;
    while ((assigned_count(**b) == 0 || assigned_count(**a) != 1) && Clock::now() < deadline) {
      ASSERT_NO_FATAL_FAILURE(poll_a());
      ASSERT_TRUE((*b)->Poll(20ms).ok());
    }
    ASSERT_EQ(assigned_count(**a), 1u);
    ASSERT_TRUE((*a)->ResumeAll().ok());
    ASSERT_TRUE((*b)->Close().ok());
  }
  deadline = Clock::now() + 30s;
  while (a_values.size() < 40 && Clock::now() < deadline) ASSERT_NO_FATAL_FAILURE(poll_a());
  EXPECT_EQ(assigned_count(**a), 2u);
  EXPECT_EQ(a_values.size(), 40u) << "a partition assigned back stayed paused";
}

// Range assignment keeps co-partitioned topics together: each member owns partition p of both
// topics or of neither (the correlator's contract for samples and keyed spans).
TEST(KafkaGroup, RangeAssignmentCoLocatesPartitionsOfTwoTopics) {
  auto broker = StartBroker({.partitions = 4});
  ASSERT_TRUE(broker);
  const std::vector<std::string> both = {std::string(topics::kSamplesSymbolized),
                                         std::string(topics::kSpansKeyed)};
  std::vector<std::unique_ptr<Consumer>> members;
  for (int i = 0; i < 2; ++i) {
    ConsumerConfig cfg = ConsumerCfg(*broker, "g-range", both);
    cfg.assignor = Assignor::kRange;
    Result<std::unique_ptr<Consumer>> c = Consumer::Create(cfg);
    ASSERT_TRUE(c.ok()) << c.error();
    members.push_back(std::move(*c));
  }
  // Poll both until the 8 partitions are split over the two members.
  std::vector<TopicPartitions> owned(2);
  const auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline) {
    for (size_t i = 0; i < 2; ++i) {
      ASSERT_TRUE(members[i]->Poll(10ms).ok());
      owned[i] = *members[i]->Assignment();
    }
    if (!owned[0].empty() && !owned[1].empty() && owned[0].size() + owned[1].size() == 8) break;
  }
  ASSERT_EQ(owned[0].size() + owned[1].size(), 8u);
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    std::map<std::string, std::set<int32_t>> by_topic;
    for (const TopicPartition& tp : owned[i]) by_topic[tp.topic].insert(tp.partition);
    ASSERT_EQ(by_topic.size(), 2u);
    EXPECT_EQ(by_topic[both[0]], by_topic[both[1]]);
    EXPECT_EQ(by_topic[both[0]].size(), 2u);
  }
}

}  // namespace
}  // namespace flamestream::kafka::broker_test
