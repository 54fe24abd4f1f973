// Helpers shared by the libs/kafka tests against the dev broker (librdkafka's mock cluster in a
// child process): kafka_integration_test.cc, kafka_group_test.cc, admin_test.cc.
//
//   auto broker = StartBroker();                 // every Flamestream topic, 8 partitions
//   auto producer = MakeProducer(*broker);
//   ASSERT_NO_FATAL_FAILURE(ProduceAll(*producer, topic, 0, 100));   // values "0".."99"
//   auto c = Consumer::Create(ConsumerCfg(*broker, "g-test", {topic}));
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/testing/dev_broker.h"

namespace flamestream::kafka::broker_test {

using namespace std::chrono_literals;
using flamestream::testing::DevBroker;
using flamestream::testing::DevBrokerOptions;
using Clock = std::chrono::steady_clock;

inline std::unique_ptr<DevBroker> StartBroker(DevBrokerOptions opts = {}) {
  Result<std::unique_ptr<DevBroker>> b = DevBroker::Start(std::move(opts));
  EXPECT_TRUE(b.ok()) << b.error();
  return b.ok() ? std::move(*b) : nullptr;
}

inline std::unique_ptr<Producer> MakeProducer(const DevBroker& broker) {
  ProducerConfig cfg;
  cfg.properties = {{"bootstrap.servers", broker.bootstrap()}};
  Result<std::unique_ptr<Producer>> p = Producer::Create(cfg);
  EXPECT_TRUE(p.ok()) << p.error();
  return p.ok() ? std::move(*p) : nullptr;
}

inline ConsumerConfig ConsumerCfg(const DevBroker& broker, std::string group,
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

inline std::string Key(int i) { return fmt::format("cluster/node-{}", i % 16); }

// Produces `n` records (value "<i>") and waits until every one is acknowledged.
inline void ProduceAll(Producer& p, const std::string& topic, int first, int n) {
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

}  // namespace flamestream::kafka::broker_test
