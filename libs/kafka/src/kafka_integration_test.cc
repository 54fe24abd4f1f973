// Producer, consumer and DLQ against the dev broker (librdkafka's mock cluster in a child
// process), including broker faults and kcat interop. Group commits, offsets, pause and
// rebalances are in kafka_group_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
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
#include "kafka_test_util.h"

namespace flamestream::kafka::broker_test {
namespace {

using flamestream::testing::Subprocess;
using flamestream::testing::SubprocessOptions;

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

  // Which of the next third will be stuck: keys whose partition the victim broker leads. The
  // mock cluster does not promise which broker leads what, so the victim is the leader of the
  // first key's partition (never the only broker: the cluster has three).
  const rd_kafka_metadata_t* md = nullptr;
  ASSERT_EQ(rd_kafka_metadata(producer->handle(), 1, nullptr, &md, 5000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  std::map<int32_t, int32_t> leader_of;  // partition -> leader broker id
  for (int t = 0; t < md->topic_cnt; ++t) {
    if (topic != md->topics[t].topic) continue;
    for (int p = 0; p < md->topics[t].partition_cnt; ++p) {
      leader_of[md->topics[t].partitions[p].id] = md->topics[t].partitions[p].leader;
    }
  }
  rd_kafka_metadata_destroy(md);
  ASSERT_TRUE(leader_of.contains(partition_of_key.at(Key(kThird))));
  const int32_t victim = leader_of.at(partition_of_key.at(Key(kThird)));
  std::set<int32_t> on_victim;
  for (const auto& [p, leader] : leader_of) {
    if (leader == victim) on_victim.insert(p);
  }
  ASSERT_LT(on_victim.size(), leader_of.size()) << "one broker leads every partition";
  int stuck = 0;
  for (int i = kThird; i < 2 * kThird; ++i) {
    stuck += on_victim.count(partition_of_key.at(Key(i))) > 0 ? 1 : 0;
  }
  ASSERT_GT(stuck, 0);

  ASSERT_TRUE(broker->Command("broker " + std::to_string(victim) + " down").ok());
  ASSERT_TRUE(broker->Command("error Produce 3 NOT_ENOUGH_REPLICAS").ok());
  for (int i = kThird; i < 2 * kThird; ++i) ASSERT_NO_FATAL_FAILURE(produce(i));
  // Everything not led by the victim goes through; its records wait, retrying.
  const auto wait_until = Clock::now() + 15s;
  while (ok.load() < 2 * kThird - stuck && Clock::now() < wait_until) producer->Poll(10ms);
  ASSERT_EQ(ok.load(), 2 * kThird - stuck);
  EXPECT_EQ(producer->OutstandingCount(), stuck);
  ASSERT_TRUE(broker->Command("broker " + std::to_string(victim) + " up").ok());
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
  want.reserve(5);
  for (int i = 0; i < 5; ++i) want.push_back(fmt::format("{}|proc-{}|h=x", Key(i), i));
  EXPECT_EQ(lines, want);
}

}  // namespace
}  // namespace flamestream::kafka::broker_test
