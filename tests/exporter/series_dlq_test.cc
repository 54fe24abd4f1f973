// End to end on the dev broker: Pyroscope refuses one service (400); the stage delivers the
// other series of every window and dead-letters only the refused series' samples.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "exporter_stage.h"
#include "flamestream/batch/batch.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/sinks/pyroscope_sink.h"
#include "flamestream/testing/dev_broker.h"
#include "push_server.h"
#include "test_util.h"
#include "window_dlq.h"

namespace flamestream::exporter_test {
namespace {

constexpr std::string_view kTopic = "flamestream.samples.correlated.v1";
constexpr uint32_t kWorkerPid = 200;  // test_batches: process "worker"

TEST(ExporterStageSeries, RefusedSeriesAloneGoesToTheDlq) {
  Result<std::unique_ptr<testing::DevBroker>> broker = testing::DevBroker::Start({.brokers = 1, .partitions = 2});
  ASSERT_TRUE(broker.ok()) << broker.status();
  const kafka::Properties props = {{"bootstrap.servers", (*broker)->bootstrap()},
                                   {"session.timeout.ms", "6000"},
                                   {"heartbeat.interval.ms", "500"}};
  const std::vector<v1::SampleBatch> batches = StandardBatches();  // windows kT0 and kT0 + 10 s
  {
    Result<std::unique_ptr<kafka::Producer>> producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok()) << producer.status();
    for (const auto& b : batches) {
      ASSERT_TRUE((*producer)->Produce(kTopic, "test/node-1", b.SerializeAsString(), {}).ok());
    }
    ASSERT_TRUE((*producer)->Flush(std::chrono::seconds(10)).ok());
  }
  // Samples of the worker process, and of everything else, from the batches' own rows.
  int64_t want_worker = 0, want_others = 0;
  for (const auto& b : batches) {
    batch::SampleCursor c(b);
    batch::SampleRow row;
    while (c.Next(&row)) (row.pid == kWorkerPid ? want_worker : want_others) += 1;
  }
  ASSERT_GT(want_worker, 0);

  PushServer server([](const PushServer::Seen& s) {
    for (const auto& series : s.push->series()) {
      for (const auto& l : series.labels()) {
        if (l.name() == "service_name" && l.value() == "worker") {
          return PushServer::Answer{.status = 400, .body = "bad series"};
        }
      }
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

  Result<std::unique_ptr<kafka::Consumer>> dlq = kafka::Consumer::Create(
      {.properties = props, .group_id = "test-dlq-reader", .topics = {std::string(kTopic) + ".dlq"}});
  ASSERT_TRUE(dlq.ok()) << dlq.status();
  std::vector<exporter::InputRecord> records;
  int64_t dead_lettered = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && dead_lettered < want_worker) {
    Result<std::optional<kafka::Message>> m = (*dlq)->Poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(m.ok()) << m.status();
    if (!*m) continue;
    records.push_back(exporter::InputRecord::Of(**m));
    v1::SampleBatch b;
    ASSERT_TRUE(b.ParseFromString(records.back().value));
    dead_lettered += batch::SampleCount(b);
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // nothing more arrives; commits
  for (;;) {
    Result<std::optional<kafka::Message>> m = (*dlq)->Poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(m.ok());
    if (!*m) break;
    records.push_back(exporter::InputRecord::Of(**m));
  }
  stop.request_stop();
  runner.join();
  ASSERT_TRUE(result.ok()) << result;

  // The DLQ holds exactly the worker samples, one record per input record and window.
  int64_t worker = 0;
  std::set<int64_t> windows;
  for (const exporter::InputRecord& m : records) {
    v1::SampleBatch b;
    ASSERT_TRUE(b.ParseFromString(m.value));
    EXPECT_TRUE(batch::Validate(b).ok());
    batch::SampleCursor c(b);
    batch::SampleRow row;
    while (c.Next(&row)) {
      EXPECT_EQ(row.pid, kWorkerPid);
      ++worker;
    }
    std::map<std::string, std::string> h;
    for (const kafka::Header& x : m.headers) h[x.key] = x.value;
    EXPECT_EQ(h["series.service"], "worker");
    EXPECT_EQ(h["response.status"], "400");
    EXPECT_EQ(h["response.body"], "bad series");
    EXPECT_NE(h["reason"].find("refused series worker"), std::string::npos) << h["reason"];
    windows.insert(std::stoll(h["window.start_ns"]));
  }
  EXPECT_EQ(worker, want_worker);
  EXPECT_EQ(windows.size(), 2u);
  // Everything else was delivered.
  int64_t delivered = 0;
  for (const PushedSeries& s : DecodePushes(server.accepted())) {
    EXPECT_NE(s.service, "worker");
    delivered += s.count;
  }
  EXPECT_EQ(delivered, want_others);
  auto counter = [&](const std::string& name) {
    return metrics.Counter(name, "", {{"sink", "pyroscope"}}).value();
  };
  EXPECT_EQ(counter("fs_exporter_series_dead_lettered_total"), 2u);  // worker, in 2 windows
  EXPECT_EQ(counter("fs_exporter_windows_dead_lettered_total"), 0u);
  EXPECT_EQ(counter("fs_exporter_windows_delivered_total"), 2u);

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
}

}  // namespace
}  // namespace flamestream::exporter_test
