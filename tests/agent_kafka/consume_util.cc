#include "consume_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>

#include "flamestream/batch/batch.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/topics.h"

namespace flamestream::testing_agent_kafka {

Published ConsumeUntil(const std::string& bootstrap,
                       const std::function<bool(const Published&)>& done,
                       std::chrono::milliseconds timeout) {
  static std::atomic<int> group{0};
  kafka::ConsumerConfig cfg;
  cfg.properties = {{"bootstrap.servers", bootstrap}};
  cfg.group_id = fmt::format("agent-kafka-test-{}-{}", ::getpid(), group++);
  cfg.topics = {std::string(kafka::topics::kSamplesRaw), std::string(kafka::topics::kProcesses)};
  Published out;
  Result<std::unique_ptr<kafka::Consumer>> consumer = kafka::Consumer::Create(cfg);
  EXPECT_TRUE(consumer.ok()) << consumer.status();
  if (!consumer.ok()) return out;
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!done(out) && std::chrono::steady_clock::now() < end) {
    Result<std::optional<kafka::Message>> msg = (*consumer)->Poll(std::chrono::milliseconds(200));
    EXPECT_TRUE(msg.ok()) << msg.status();
    if (!msg.ok()) break;
    if (!*msg) continue;
    const kafka::Message& m = **msg;
    if (m.topic() == kafka::topics::kSamplesRaw) {
      RawRecord r{std::string(m.key()), m.partition(), m.offset(), {}};
      if (!r.batch.ParseFromString(std::string(m.value())) || !batch::Validate(r.batch).ok()) {
        ++out.undecodable;
        continue;
      }
      out.batches.push_back(std::move(r));
    } else if (m.topic() == kafka::topics::kProcesses) {
      if (m.value().data() == nullptr) {  // tombstone: the process exited
        out.processes.erase(std::string(m.key()));
        out.process_history[std::string(m.key())].push_back(false);
        continue;
      }
      out.process_history[std::string(m.key())].push_back(true);
      v1::ProcessRecord p;
      if (!p.ParseFromString(std::string(m.value()))) {
        ++out.undecodable;
        continue;
      }
      out.processes[std::string(m.key())] = std::move(p);
    }
  }
  (void)(*consumer)->Close();
  return out;
}

std::vector<uint64_t> Sequences(const Published& p) {
  std::vector<uint64_t> out;
  for (const RawRecord& r : p.batches) out.push_back(r.batch.id().sequence());
  return out;
}

}  // namespace flamestream::testing_agent_kafka
