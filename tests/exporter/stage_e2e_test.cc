// End to end: correlated batches on the dev broker -> ExporterStage -> file sink.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "exporter_stage.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/profile/test_batches.h"
#include "flamestream/sinks/file_sink.h"
#include "flamestream/testing/dev_broker.h"
#include "test_util.h"

namespace flamestream::exporter_test {
namespace {

constexpr std::string_view kTopic = "flamestream.samples.correlated.v1";

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ExporterStage, ConsumesCorrelatedTopicIntoFileSinkExactlyOnceAndCommits) {
  Result<std::unique_ptr<testing::DevBroker>> broker = testing::DevBroker::Start({.brokers = 1, .partitions = 2});
  ASSERT_TRUE(broker.ok()) << broker.status();
  const kafka::Properties props = {{"bootstrap.servers", (*broker)->bootstrap()}};

  const std::vector<v1::SampleBatch> batches = StandardBatches();
  {
    Result<std::unique_ptr<kafka::Producer>> producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok()) << producer.status();
    for (const auto& b : batches) {
      ASSERT_TRUE((*producer)->Produce(kTopic, "test/node-1", b.SerializeAsString()).ok());
    }
    // A duplicate delivery and an undecodable record.
    ASSERT_TRUE((*producer)->Produce(kTopic, "test/node-1", batches[1].SerializeAsString()).ok());
    ASSERT_TRUE((*producer)->Produce(kTopic, "test/node-1", "not a batch").ok());
    ASSERT_TRUE((*producer)->Flush(std::chrono::seconds(10)).ok());
  }

  TempDir dir;
  obs::Registry metrics;
  exporter::ExporterStage stage(
      {.kafka = props, .idle_flush = std::chrono::seconds(1)},
      std::make_unique<sinks::FileSink>(sinks::FileSinkConfig{.out_dir = dir.path()}), metrics);
  std::stop_source stop;
  Status result;
  std::thread runner([&] { result = stage.Run(stop.get_token()); });

  const profile::testing::Expected want = profile::testing::ExpectedOf(batches);
  const std::string folded_path = dir.path() + "/checkout-svc.folded";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline &&
         Slurp(folded_path) != want.folded.at("checkout-svc")) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  // Let the last commit happen, then stop (drain).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop.request_stop();
  runner.join();
  EXPECT_TRUE(result.ok()) << result;
  for (const auto& [service, folded] : want.folded) {
    SCOPED_TRACE(service);
    EXPECT_EQ(Slurp(dir.path() + "/" + sinks::SafeFileName(service) + ".folded"), folded);
  }

  // Every record committed by the sink's own group.
  Result<std::unique_ptr<kafka::Consumer>> check =
      kafka::Consumer::Create({.properties = props, .group_id = "flamestream-exporter-file",
                               .topics = {std::string(kTopic)}});
  ASSERT_TRUE(check.ok());
  Result<kafka::TopicPartitions> committed = (*check)->Committed(
      {{std::string(kTopic), 0}, {std::string(kTopic), 1}}, std::chrono::seconds(10));
  ASSERT_TRUE(committed.ok()) << committed.status();
  int64_t total = 0;
  for (const auto& tp : *committed) total += std::max<int64_t>(0, tp.offset);
  EXPECT_EQ(total, 5);
  (*check)->Abandon();
}

}  // namespace
}  // namespace flamestream::exporter_test
