// Producer, consumer, AckTracker and DLQ against the dev broker (librdkafka's mock cluster in
// a child process), including broker faults and kcat interop.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "flamestream/common/strings.h"
#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::kafka {
namespace {

using namespace std::chrono_literals;
using flamestream::testing::DevBroker;
using flamestream::testing::DevBrokerOptions;
using flamestream::testing::Subprocess;
using flamestream::testing::SubprocessOptions;
using Clock = std::chrono::steady_clock;

std::unique_ptr<DevBroker> StartBroker(DevBrokerOptions opts = {}) {
  Result<std::unique_ptr<DevBroker>> b = DevBroker::Start(std::move(opts));
  EXPECT_TRUE(b.ok()) << b.error();
  return b.ok() ? std::move(*b) : nullptr;
}

std::unique_ptr<Producer> MakeProducer(const DevBroker& broker) {
  ProducerConfig cfg;
  cfg.properties = {{"bootstrap.servers", broker.bootstrap()}};
  Result<std::unique_ptr<Producer>> p = Producer::Create(cfg);
  EXPECT_TRUE(p.ok()) << p.error();
  return p.ok() ? std::move(*p) : nullptr;
}

ConsumerConfig ConsumerCfg(const DevBroker& broker, std::string group,
                           std::vector<std::string> topics) {
  ConsumerConfig cfg;
  cfg.properties = {
      {"bootstrap.servers", broker.bootstrap()},
      // Short group timers: a crashed member is evicted within seconds, not 45 s.
      {"session.timeout.ms", "4000"},
      {"heartbeat.interval.ms", "300"},
      {"fetch.wait.max.ms", "50"},
  };
  cfg.group_id = std::move(group);
  cfg.topics = std::move(topics);
  return cfg;
}

std::string Key(int i) { return fmt::format("cluster/node-{}", i % 16); }

// Produces `n` records (value "<i>") and waits until every one is acknowledged.
void ProduceAll(Producer& p, const std::string& topic, int first, int n) {
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  for (int i = first; i < first + n; ++i) {
    ASSERT_TRUE(p.Produce(topic, Key(i), std::to_string(i), {}, [&](const DeliveryReport& r) {
                   (r.status.ok() ? ok : failed)++;
                 }).ok());
  }
  ASSERT_TRUE(p.Flush(20s).ok());
  ASSERT_EQ(failed.load(), 0);
  ASSERT_EQ(ok.load(), n);
}

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

TEST(KafkaDlq, PoisonRecordLandsInDlqWithAllHeaders) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  const std::string topic(topics::kSamplesSymbolized);
  auto producer = MakeProducer(*broker);
  ASSERT_TRUE(producer->Produce(topic, "c/n1", "good").ok());
  ASSERT_TRUE(producer->Produce(topic, "c/n1", "poison", {{"symbol-epoch", "7"}}).ok());
  ASSERT_TRUE(producer->Flush(10s).ok());

  Result<std::unique_ptr<Consumer>> c = Consumer::Create(ConsumerCfg(*broker, "g-stage", {topic}));
  ASSERT_TRUE(c.ok()) << c.error();
  AckTracker acks;
  DlqWriter dlq(*producer, "correlator");
  int64_t poison_offset = -1;
  int32_t poison_partition = -1;
  const auto deadline = Clock::now() + 15s;
  while (poison_offset < 0 && Clock::now() < deadline) {
    Result<std::optional<Message>> msg = (*c)->Poll(50ms);
    ASSERT_TRUE(msg.ok());
    if (!*msg) continue;
    const Message& m = **msg;
    if (m.value() == "poison") {
      poison_offset = m.offset();
      poison_partition = m.partition();
      ASSERT_TRUE(acks.Track(topic, m.partition(), m.offset(), 1));
      ASSERT_TRUE(
          dlq.Write(m, InvalidArgument("bad magic 0x{:x}", 0x70),
                    [&acks, topic, p = m.partition(), o = m.offset()](const DeliveryReport& r) {
                      if (r.status.ok()) (void)acks.Ack(topic, p, o);
                    })
              .ok());
    } else {
      ASSERT_TRUE(acks.Track(topic, m.partition(), m.offset(), 0));
    }
  }
  ASSERT_GE(poison_offset, 0);
  ASSERT_TRUE(producer->Flush(10s).ok());
  // The poison input is committable only now that its DLQ record is acknowledged.
  EXPECT_EQ(acks.CommittableOffsets(),
            (TopicPartitions{{topic, poison_partition, poison_offset + 1}}));

  const std::string dlq_topic = topics::Dlq(topic);
  Result<std::unique_ptr<Consumer>> reader =
      Consumer::Create(ConsumerCfg(*broker, "g-dlq-reader", {dlq_topic}));
  ASSERT_TRUE(reader.ok());
  std::optional<Message> got;
  const auto deadline2 = Clock::now() + 15s;
  while (!got && Clock::now() < deadline2) {
    Result<std::optional<Message>> msg = (*reader)->Poll(50ms);
    ASSERT_TRUE(msg.ok());
    if (*msg) got = std::move(*msg);
  }
  ASSERT_TRUE(got) << "nothing in " << dlq_topic;
  EXPECT_EQ(got->topic(), dlq_topic);
  EXPECT_EQ(got->key(), "c/n1");
  EXPECT_EQ(got->value(), "poison");
  EXPECT_EQ(got->header("error"), "INVALID_ARGUMENT: bad magic 0x70");
  EXPECT_EQ(got->header("stage"), "correlator");
  EXPECT_EQ(got->header("source.topic"), topic);
  EXPECT_EQ(got->header("source.partition"), std::to_string(poison_partition));
  EXPECT_EQ(got->header("source.offset"), std::to_string(poison_offset));
  EXPECT_EQ(got->header("symbol-epoch"), "7");  // original headers are kept
}

TEST(KafkaProducer, BrokerDownThenUpDeliversEveryRecordOnceInOrder) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  const std::string topic(topics::kSpansKeyed);
  auto producer = MakeProducer(*broker);
  constexpr int kRecords = 3000;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::mutex mu;
  std::map<std::string, int32_t> partition_of_key;
  auto produce = [&](int i) {
    ASSERT_TRUE(producer
                    ->Produce(topic, Key(i), std::to_string(i), {},
                              [&, key = Key(i)](const DeliveryReport& r) {
                                (r.status.ok() ? ok : failed)++;
                                std::lock_guard<std::mutex> lock(mu);
                                partition_of_key[key] = r.partition;
                              })
                    .ok());
  };
  constexpr int kThird = kRecords / 3;
  for (int i = 0; i < kThird; ++i) ASSERT_NO_FATAL_FAILURE(produce(i));
  ASSERT_TRUE(producer->Flush(10s).ok());
  ASSERT_EQ(ok.load(), kThird);

  // Which of the next third will be stuck: keys whose partition broker 2 leads.
  const rd_kafka_metadata_t* md = nullptr;
  ASSERT_EQ(rd_kafka_metadata(producer->handle(), 1, nullptr, &md, 5000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  std::set<int32_t> on_broker2;
  for (int t = 0; t < md->topic_cnt; ++t) {
    if (topic != md->topics[t].topic) continue;
    for (int p = 0; p < md->topics[t].partition_cnt; ++p) {
      if (md->topics[t].partitions[p].leader == 2)
        on_broker2.insert(md->topics[t].partitions[p].id);
    }
  }
  rd_kafka_metadata_destroy(md);
  ASSERT_FALSE(on_broker2.empty());
  int stuck = 0;
  for (int i = kThird; i < 2 * kThird; ++i) {
    stuck += on_broker2.count(partition_of_key.at(Key(i))) > 0 ? 1 : 0;
  }
  ASSERT_GT(stuck, 0);

  ASSERT_TRUE(broker->Command("broker 2 down").ok());
  ASSERT_TRUE(broker->Command("error Produce 3 NOT_ENOUGH_REPLICAS").ok());
  for (int i = kThird; i < 2 * kThird; ++i) ASSERT_NO_FATAL_FAILURE(produce(i));
  // Everything not led by broker 2 goes through; broker 2's records wait, retrying.
  const auto wait_until = Clock::now() + 15s;
  while (ok.load() < 2 * kThird - stuck && Clock::now() < wait_until) producer->Poll(10ms);
  ASSERT_EQ(ok.load(), 2 * kThird - stuck);
  EXPECT_EQ(producer->OutstandingCount(), stuck);
  ASSERT_TRUE(broker->Command("broker 2 up").ok());
  for (int i = 2 * kThird; i < kRecords; ++i) ASSERT_NO_FATAL_FAILURE(produce(i));
  ASSERT_TRUE(producer->Flush(25s).ok());
  ASSERT_EQ(failed.load(), 0);
  ASSERT_EQ(ok.load(), kRecords);
  EXPECT_TRUE(producer->FatalError().ok());

  // Read everything back: every value exactly once, and per key in production order.
  Result<std::unique_ptr<Consumer>> c = Consumer::Create(ConsumerCfg(*broker, "g-verify", {topic}));
  ASSERT_TRUE(c.ok());
  std::map<std::string, std::vector<int>> by_key;
  int total = 0;
  const auto deadline = Clock::now() + 20s;
  while (total < kRecords && Clock::now() < deadline) {
    Result<std::optional<Message>> msg = (*c)->Poll(50ms);
    ASSERT_TRUE(msg.ok());
    if (!*msg) continue;
    by_key[std::string((*msg)->key())].push_back(*common::ParseInt<int>((*msg)->value()));
    ++total;
  }
  // Nothing more (no duplicates) arrives after the last one.
  for (int i = 0; i < 10; ++i) {
    Result<std::optional<Message>> msg = (*c)->Poll(50ms);
    ASSERT_TRUE(msg.ok());
    EXPECT_FALSE(*msg) << "duplicate or extra record " << (*msg)->value();
  }
  EXPECT_EQ(total, kRecords);
  ASSERT_EQ(by_key.size(), 16u);
  for (const auto& [key, values] : by_key) {
    SCOPED_TRACE(key);
    int k = *common::ParseInt<int>(key.substr(key.rfind('-') + 1));
    std::vector<int> want;
    for (int i = k; i < kRecords; i += 16) want.push_back(i);
    EXPECT_EQ(values, want);
  }
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

// Replicas of a service that each need a whole compacted table (the span router's processes
// table) read every partition without a group, so no replica sees only a share of it.
TEST(KafkaConsumer, WholeTopicConsumersEachReadEveryPartition) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  const std::string topic(topics::kProcesses);
  auto producer = MakeProducer(*broker);
  ASSERT_NO_FATAL_FAILURE(ProduceAll(*producer, topic, 0, 200));
  auto table_reader = [&]() -> std::unique_ptr<Consumer> {
    ConsumerConfig cfg = ConsumerCfg(*broker, "", {topic});
    cfg.whole_topics = true;
    Result<std::unique_ptr<Consumer>> c = Consumer::Create(cfg);
    EXPECT_TRUE(c.ok()) << c.error();
    if (!c.ok()) return nullptr;
    Result<TopicPartitions> assigned = (*c)->Assignment();
    EXPECT_TRUE(assigned.ok());
    EXPECT_EQ(assigned.ok() ? assigned->size() : 0u, 8u);
    return std::move(*c);
  };
  std::set<int> a_values;
  std::set<int> b_values;
  std::unique_ptr<Consumer> a = table_reader();
  std::unique_ptr<Consumer> b = table_reader();
  ASSERT_TRUE(a && b);
  const auto deadline = Clock::now() + 20s;
  while ((a_values.size() < 200 || b_values.size() < 200) && Clock::now() < deadline) {
    for (auto [c, values] : {std::pair{a.get(), &a_values}, std::pair{b.get(), &b_values}}) {
      Result<std::optional<Message>> msg = c->Poll(20ms);
      ASSERT_TRUE(msg.ok()) << msg.error();
      if (*msg) values->insert(*common::ParseInt<int>((*msg)->value()));
    }
  }
  EXPECT_EQ(a_values.size(), 200u);
  EXPECT_EQ(b_values.size(), 200u);
  EXPECT_FALSE(a->Commit({{topic, 0, 1}}).ok());  // no group to commit to
  EXPECT_TRUE(a->Close().ok());
  EXPECT_TRUE(b->Close().ok());
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

// Range assignment keeps co-partitioned topics together: each member owns partition p of both
// topics or of neither (the correlator's contract for samples and keyed spans).
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

// kcat is a second, independent client: metadata, and records both ways.
TEST(KafkaInterop, KcatSeesTopicsAndExchangesRecordsWithUs) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  auto run = [](std::vector<std::string> argv,
                const std::string& input) -> std::vector<std::string> {
    SubprocessOptions o;
    o.argv = std::move(argv);
    o.pipe_stdin = !input.empty();
    auto p = Subprocess::Start(o);
    EXPECT_TRUE(p.ok()) << p.error();
    if (!p.ok()) return {};
    if (!input.empty()) {
      EXPECT_TRUE((*p)->WriteStdin(input).ok());
      (*p)->CloseStdin();
    }
    std::vector<std::string> out;
    while (true) {
      Result<std::string> line = (*p)->ReadLine(20s);
      if (!line.ok()) break;
      out.push_back(*line);
    }
    Result<testing::ExitStatus> st = (*p)->Wait(10s);
    EXPECT_TRUE(st.ok() && st->exited && st->code == 0) << o.argv[0] << " failed";
    return out;
  };

  std::vector<std::string> meta = run({"kcat", "-b", broker->bootstrap(), "-L"}, "");
  std::string all = common::Join(meta, "\n");
  for (const std::string& t : topics::All()) {
    EXPECT_NE(all.find(fmt::format("topic \"{}\" with 8 partitions", t)), std::string::npos) << t;
  }
  EXPECT_NE(all.find(" 3 brokers:"), std::string::npos) << all;

  // kcat -> us.
  const std::string in_topic(topics::kOtlpSpans);
  run({"kcat", "-b", broker->bootstrap(), "-P", "-t", in_topic, "-K", ":"},
      "k1:v1\nk2:v2\nk3:v3\n");
  Result<std::unique_ptr<Consumer>> c =
      Consumer::Create(ConsumerCfg(*broker, "g-kcat", {in_topic}));
  ASSERT_TRUE(c.ok());
  std::map<std::string, std::string> got;
  const auto deadline = Clock::now() + 15s;
  while (got.size() < 3 && Clock::now() < deadline) {
    Result<std::optional<Message>> msg = (*c)->Poll(50ms);
    ASSERT_TRUE(msg.ok());
    if (*msg) got[std::string((*msg)->key())] = std::string((*msg)->value());
  }
  EXPECT_EQ(got, (std::map<std::string, std::string>{{"k1", "v1"}, {"k2", "v2"}, {"k3", "v3"}}));

  // us -> kcat (with a header).
  const std::string out_topic(topics::kProcesses);
  auto producer = MakeProducer(*broker);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        producer->Produce(out_topic, Key(i), "proc-" + std::to_string(i), {{"h", "x"}}).ok());
  }
  ASSERT_TRUE(producer->Flush(10s).ok());
  std::vector<std::string> lines = run(
      {"kcat", "-b", broker->bootstrap(), "-C", "-t", out_topic, "-e", "-q", "-f", "%k|%s|%h\n"},
      "");
  std::sort(lines.begin(), lines.end());
  std::vector<std::string> want;
  for (int i = 0; i < 5; ++i) want.push_back(fmt::format("{}|proc-{}|h=x", Key(i), i));
  EXPECT_EQ(lines, want);
}

}  // namespace
}  // namespace flamestream::kafka
