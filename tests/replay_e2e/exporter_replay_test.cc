// The exporter's replay mode on the dev broker: it reads the .replay topic with its own group,
// stops by itself once caught up, and has delivered every window (none closed by idle time:
// idle_flush is longer than the test) and committed every record before it returns.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "exporter_stage.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/profile/test_batches.h"
#include "flamestream/sinks/file_sink.h"
#include "flamestream/testing/dev_broker.h"

namespace flamestream {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ExporterReplay, StopsWhenCaughtUpWithEveryWindowDeliveredAndCommitted) {
  auto broker = testing::DevBroker::Start({.brokers = 1, .partitions = 2});
  ASSERT_TRUE(broker.ok()) << broker.error();
  const kafka::Properties props = {{"bootstrap.servers", (*broker)->bootstrap()}};
  const std::string topic = kafka::topics::Replay(kafka::topics::kSamplesCorrelated);
  constexpr uint64_t kEpoch = 1'763'000'000'000;

  std::vector<v1::SampleBatch> batches;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    batches.push_back(profile::testing::MakeCorrelatedBatch(
        {.sequence = seq, .samples = 600, .start_ns = 1'700'000'008'000'000'000LL,
         .spread_ns = 4'000'000'000LL, .symbol_epoch = kEpoch}));
  }
  {
    auto producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok()) << producer.error();
    for (const auto& b : batches) {
      ASSERT_TRUE((*producer)->Produce(topic, "test/node-1", b.SerializeAsString()).ok());
    }
    // Something on the live topic, which a replay must not read.
    ASSERT_TRUE((*producer)
                    ->Produce(std::string(kafka::topics::kSamplesCorrelated), "test/node-1",
                              profile::testing::MakeCorrelatedBatch({.sequence = 9})
                                  .SerializeAsString())
                    .ok());
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }

  const fs::path dir = fs::temp_directory_path() / ("fs-exporter-replay-" + std::to_string(getpid()));
  fs::remove_all(dir);
  obs::Registry metrics;
  exporter::ExporterStage stage(
      {.kafka = props,
       .topic = topic,
       .group_prefix = "flamestream-exporter-replay-",
       .idle_flush = std::chrono::minutes(10),  // only the caught-up drain may close windows
       .stop_when_caught_up = true,
       .caught_up_idle = 1s},
      std::make_unique<sinks::FileSink>(sinks::FileSinkConfig{.out_dir = dir.string()}), metrics);
  std::stop_source stop;  // never requested unless the stage hangs
  std::future<Status> result =
      std::async(std::launch::async, [&] { return stage.Run(stop.get_token()); });
  if (result.wait_for(90s) != std::future_status::ready) {
    stop.request_stop();
    ADD_FAILURE() << "the replay exporter did not stop by itself within 90s";
  }
  const Status st = result.get();
  EXPECT_TRUE(st.ok()) << st;

  const profile::testing::Expected want = profile::testing::ExpectedOf(batches);
  for (const auto& [service, folded] : want.folded) {
    SCOPED_TRACE(service);
    EXPECT_EQ(Slurp(dir / (sinks::SafeFileName(service) + ".folded")), folded);
  }
  EXPECT_EQ(metrics.Counter("fs_exporter_samples_aggregated_total", "", {{"sink", "file"}}).value(),
            static_cast<uint64_t>(want.total_count));

  // All three records committed by the replay group, none by the live one.
  auto check = kafka::Consumer::Create({.properties = props,
                                        .group_id = "flamestream-exporter-replay-file",
                                        .topics = {topic}});
  ASSERT_TRUE(check.ok()) << check.error();
  auto committed = (*check)->Committed({{topic, 0}, {topic, 1}}, 10s);
  ASSERT_TRUE(committed.ok()) << committed.error();
  int64_t total = 0;
  for (const auto& tp : *committed) total += std::max<int64_t>(0, tp.offset);
  EXPECT_EQ(total, 3);
  (*check)->Abandon();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace flamestream
