// End to end: correlated batches on the dev broker -> ExporterStage -> file sink.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "exporter_stage.h"
#include "flamestream/batch/batch.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"
#include "flamestream/sinks/file_sink.h"
#include "flamestream/sinks/pyroscope_sink.h"
#include "flamestream/testing/dev_broker.h"
#include "push_server.h"
#include "test_util.h"
#include "window_dlq.h"

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
  // The lag gauge refreshes every second: wait until it reads 0 with every record counted, the
  // signal `flamestream up` drains on (fs_consumer_lag and fs_records_in_total, as every stage).
  std::string text;
  while (std::chrono::steady_clock::now() < deadline) {
    text = metrics.Render();
    if (text.find("fs_records_in_total{stage=\"exporter-file\"} 5\n") != std::string::npos &&
        text.find("fs_consumer_lag{stage=\"exporter-file\"") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_NE(text.find("fs_records_in_total{stage=\"exporter-file\"} 5\n"), std::string::npos)
      << text;
  for (const std::string& line : common::Split(text, '\n')) {
    if (line.starts_with("fs_consumer_lag{stage=\"exporter-file\"")) {
      EXPECT_TRUE(line.ends_with(" 0")) << line;
    }
  }
  // Let the last commit happen, then stop (drain).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop.request_stop();
  runner.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_NE(text.find("fs_consumer_lag{stage=\"exporter-file\""), std::string::npos) << text;
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

// A window the sink refuses for good (400) goes to the DLQ as the input records that made it,
// cut to that window, with the reason and the response in headers; the stage keeps going
// (the next window is delivered) and commits everything.
TEST(ExporterStage, RefusedWindowDeadLettersItsInputRecordsAndKeepsGoing) {
  Result<std::unique_ptr<testing::DevBroker>> broker = testing::DevBroker::Start({.brokers = 1, .partitions = 2});
  ASSERT_TRUE(broker.ok()) << broker.status();
  // Short sessions: the mock cluster holds a departed member until its session times out, and
  // the re-drive below rejoins the group.
  const kafka::Properties props = {{"bootstrap.servers", (*broker)->bootstrap()},
                                   {"session.timeout.ms", "6000"},
                                   {"heartbeat.interval.ms", "500"}};
  const std::vector<v1::SampleBatch> batches = StandardBatches();  // windows kT0 and kT0 + 10 s
  {
    Result<std::unique_ptr<kafka::Producer>> producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok()) << producer.status();
    for (const auto& b : batches) {
      ASSERT_TRUE((*producer)->Produce(kTopic, "test/node-1", b.SerializeAsString(), {{"symbol-epoch", "0"}}).ok());
    }
    ASSERT_TRUE((*producer)->Flush(std::chrono::seconds(10)).ok());
  }
  // Samples per window, from the batches' own rows.
  std::map<int64_t, int64_t> want;
  for (const auto& b : batches) {
    batch::SampleCursor c(b);
    batch::SampleRow row;
    while (c.Next(&row)) want[row.timestamp_ns / 10'000'000'000 * 10'000'000'000] += 1;
  }
  ASSERT_EQ(want.size(), 2u);
  const int64_t refused_window = want.begin()->first;

  std::atomic<bool> accept_all{false};  // once the cause is "fixed", for the re-drive
  PushServer server([refused_window, &accept_all](const PushServer::Seen& s) {
    if (accept_all) return PushServer::Answer{};
    const std::vector<PushedSeries> series = DecodePushes({*s.push});
    if (!series.empty() && series.front().window_start_ns == refused_window) {
      return PushServer::Answer{.status = 400, .body = R"({"code":"invalid_argument","message":"bad profile"})"};
    }
    return PushServer::Answer{};
  });
  obs::Registry metrics;
  exporter::ExporterStage stage({.kafka = props, .idle_flush = std::chrono::seconds(1)},
                                std::make_unique<sinks::PyroscopeSink>(sinks::PyroscopeConfig{.url = server.url()}),
                                metrics);
  std::stop_source stop;
  Status result;
  std::thread runner([&] { result = stage.Run(stop.get_token()); });

  // Read the DLQ.
  Result<std::unique_ptr<kafka::Consumer>> dlq = kafka::Consumer::Create(
      {.properties = props, .group_id = "test-dlq-reader", .topics = {std::string(kTopic) + ".dlq"}});
  ASSERT_TRUE(dlq.ok()) << dlq.status();
  // Copies: a live kafka::Message pins its consumer, whose destruction would wait for it.
  std::vector<exporter::InputRecord> records;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && (records.size() < batches.size() || server.accepted().empty())) {
    Result<std::optional<kafka::Message>> m = (*dlq)->Poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(m.ok()) << m.status();
    if (*m) records.push_back(exporter::InputRecord::Of(**m));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the commit after the DLQ acks
  stop.request_stop();
  runner.join();
  ASSERT_TRUE(result.ok()) << result;

  ASSERT_EQ(records.size(), batches.size());
  int64_t dead_lettered = 0;
  std::set<std::string> ids;
  for (const exporter::InputRecord& m : records) {
    v1::SampleBatch b;
    ASSERT_TRUE(b.ParseFromString(m.value));
    EXPECT_TRUE(batch::Validate(b).ok());
    EXPECT_EQ(b.stage(), v1::STAGE_CORRELATED);
    ids.insert(batch::BatchIdString(b.id()));
    batch::SampleCursor c(b);
    batch::SampleRow row;
    while (c.Next(&row)) {
      EXPECT_GE(row.timestamp_ns, refused_window);
      EXPECT_LT(row.timestamp_ns, refused_window + 10'000'000'000);
      ++dead_lettered;
    }
    EXPECT_EQ(m.key, "test/node-1");
    auto header = [&](std::string_view k) {
      std::string v = "<missing>";
      for (const kafka::Header& h : m.headers) {
        if (h.key == k) v = h.value;
      }
      return v;
    };
    EXPECT_EQ(header("sink"), "pyroscope");
    EXPECT_EQ(header("stage"), "exporter-pyroscope");
    EXPECT_EQ(header("window.start_ns"), std::to_string(refused_window));
    EXPECT_EQ(header("window.end_ns"), std::to_string(refused_window + 10'000'000'000));
    EXPECT_EQ(header("response.status"), "400");
    EXPECT_EQ(header("response.body"), R"({"code":"invalid_argument","message":"bad profile"})");
    EXPECT_NE(header("reason").find("refused"), std::string::npos) << header("reason");
    EXPECT_NE(header("error").find("HTTP 400"), std::string::npos) << header("error");
    EXPECT_EQ(header("source.topic"), kTopic);
    EXPECT_EQ(header("symbol-epoch"), "0");  // original headers kept
  }
  std::set<std::string> want_ids;
  for (const auto& b : batches) want_ids.insert(batch::BatchIdString(b.id()));
  EXPECT_EQ(ids, want_ids);
  EXPECT_EQ(dead_lettered, want.at(refused_window));

  // The next window was delivered, whole.
  int64_t delivered = 0;
  for (const PushedSeries& s : DecodePushes(server.accepted())) {
    EXPECT_NE(s.window_start_ns, refused_window);
    delivered += s.count;
  }
  EXPECT_EQ(delivered, want.rbegin()->second);
  EXPECT_EQ(metrics.Counter("fs_exporter_windows_dead_lettered_total", "windows refused permanently (to the DLQ)",
                            {{"sink", "pyroscope"}}).value(), 1u);

  // Everything committed.
  Result<std::unique_ptr<kafka::Consumer>> check = kafka::Consumer::Create(
      {.properties = props, .group_id = "flamestream-exporter-pyroscope", .topics = {std::string(kTopic)}});
  ASSERT_TRUE(check.ok());
  Result<kafka::TopicPartitions> committed = (*check)->Committed(
      {{std::string(kTopic), 0}, {std::string(kTopic), 1}}, std::chrono::seconds(10));
  ASSERT_TRUE(committed.ok()) << committed.status();
  int64_t total = 0;
  for (const auto& tp : *committed) total += std::max<int64_t>(0, tp.offset);
  EXPECT_EQ(total, static_cast<int64_t>(batches.size()));
  (*check)->Abandon();
  (*dlq)->Abandon();

  // Re-drive: the DLQ records' values go back into the topic; the same group reads only them
  // and delivers exactly the refused window's samples.
  accept_all = true;
  const size_t accepted_before = server.accepted().size();
  {
    Result<std::unique_ptr<kafka::Producer>> producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok()) << producer.status();
    for (const exporter::InputRecord& r : records) ASSERT_TRUE((*producer)->Produce(kTopic, r.key, r.value).ok());
    ASSERT_TRUE((*producer)->Flush(std::chrono::seconds(10)).ok());
  }
  obs::Registry metrics2;
  exporter::ExporterStage again({.kafka = props, .idle_flush = std::chrono::seconds(1)},
                                std::make_unique<sinks::PyroscopeSink>(sinks::PyroscopeConfig{.url = server.url()}),
                                metrics2);
  std::stop_source stop2;
  std::thread runner2([&] { result = again.Run(stop2.get_token()); });
  auto redriven = [&] {
    const std::vector<push::v1::PushRequest> all = server.accepted();
    return DecodePushes({all.begin() + static_cast<std::ptrdiff_t>(accepted_before), all.end()});
  };
  const auto redrive_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < redrive_deadline && redriven().empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // anything else it would (wrongly) push
  stop2.request_stop();
  runner2.join();
  EXPECT_TRUE(result.ok()) << result;
  int64_t redelivered = 0;
  for (const PushedSeries& s : redriven()) {
    EXPECT_EQ(s.window_start_ns, refused_window);
    redelivered += s.count;
  }
  EXPECT_EQ(redelivered, want.at(refused_window));
  EXPECT_EQ(metrics2.Counter("fs_exporter_records_in_total", "records consumed", {{"sink", "pyroscope"}}).value(),
            batches.size());
}

}  // namespace
}  // namespace flamestream::exporter_test
