// The outage test, for the Pyroscope and OTLP/HTTP sinks: the endpoint answers 503 for 30 s
// of wall time (first with Retry-After, then without), then accepts. The stage runs on the dev
// broker while input keeps arriving. Nothing may be lost or counted twice, per window; input must
// pause during the outage (lag grows, nothing more is read or buffered); offsets must be committed
// only after acceptance, so a restart reads nothing twice.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "exporter_stage.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/profile/test_batches.h"
#include "flamestream/sinks/otlp_sink.h"
#include "flamestream/sinks/pyroscope_sink.h"
#include "flamestream/testing/dev_broker.h"
#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.pb.h"
#include "push_server.h"
#include "test_util.h"

namespace flamestream::exporter_test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kTopic = "flamestream.samples.correlated.v1";
constexpr int kPartitions = 2;
constexpr auto kOutage = seconds(30);
constexpr auto kRetryAfterPhase = seconds(15);  // 503 + Retry-After: 2, then plain 503
constexpr int64_t kWindowNs = 1'000'000'000;

// Committed offsets of a group without joining it (joining would take the stage's partitions):
// a table consumer (whole_topics) assigns the partitions to itself and never joins the group
// whose commits it reads.
class CommittedReader {
 public:
  CommittedReader(const std::string& bootstrap, const std::string& group) {
    kafka::ConsumerConfig cfg;
    cfg.properties = {{"bootstrap.servers", bootstrap}};
    cfg.group_id = group;
    cfg.topics = {std::string(kTopic)};
    cfg.whole_topics = true;
    Result<std::unique_ptr<kafka::Consumer>> c = kafka::Consumer::Create(std::move(cfg));
    EXPECT_TRUE(c.ok()) << c.error();
    if (c.ok()) consumer_ = std::move(*c);
  }
  // Sum over partitions of the committed offsets (= records committed); -1 on error.
  int64_t Total() {
    if (!consumer_) return -1;
    kafka::TopicPartitions partitions;
    for (int p = 0; p < kPartitions; ++p) partitions.push_back({std::string(kTopic), p});
    Result<kafka::TopicPartitions> committed = consumer_->Committed(partitions, seconds(5));
    if (!committed.ok()) return -1;
    int64_t total = 0;
    for (const kafka::TopicPartition& tp : *committed) total += std::max<int64_t>(0, tp.offset);
    return total;
  }

 private:
  std::unique_ptr<kafka::Consumer> consumer_;
};

// Input samples per window start, computed from the batches' own rows (not the aggregator).
std::map<int64_t, int64_t> SamplesPerWindow(const std::vector<v1::SampleBatch>& batches) {
  std::map<int64_t, int64_t> out;
  for (const v1::SampleBatch& b : batches) {
    batch::SampleCursor cursor(b);
    batch::SampleRow row;
    while (cursor.Next(&row)) out[row.timestamp_ns / kWindowNs * kWindowNs] += 1;
  }
  return out;
}

// The scripted outage: 503 + Retry-After: 2 for 15 s, plain 503 until 30 s, then accept.
PushServer::Answer Script(std::chrono::milliseconds since_first) {
  if (since_first < kRetryAfterPhase)
    return {.status = 503, .retry_after = "2", .body = "overloaded"};
  if (since_first < kOutage) return {.status = 503, .body = "overloaded"};
  return {};
}

// A backend speaking one sink's protocol, answering by Script().
class Backend {
 public:
  struct Hit {
    Clock::time_point at;
    int status;
    bool retry_after;
  };
  virtual ~Backend() = default;
  [[nodiscard]] virtual std::string sink() const = 0;
  [[nodiscard]] virtual std::unique_ptr<sinks::Sink> MakeSink() const = 0;
  [[nodiscard]] virtual std::vector<Hit> hits() const = 0;
  // The series of every accepted request, in order.
  [[nodiscard]] virtual std::vector<PushedSeries> accepted() const = 0;
};

class PyroscopeBackend final : public Backend {
 public:
  PyroscopeBackend() : server_([](const PushServer::Seen& s) { return Script(s.since_first); }) {}
  std::string sink() const override { return "pyroscope"; }
  std::unique_ptr<sinks::Sink> MakeSink() const override {
    return std::make_unique<sinks::PyroscopeSink>(
        sinks::PyroscopeConfig{.url = server_.url(), .max_series_per_request = 2});
  }
  std::vector<Hit> hits() const override {
    std::vector<Hit> out;
    for (const PushServer::Request& r : server_.log()) {
      out.push_back({r.at, r.answer.status, !r.answer.retry_after.empty()});
    }
    return out;
  }
  std::vector<PushedSeries> accepted() const override { return DecodePushes(server_.accepted()); }

 private:
  PushServer server_;
};

// OTLP/HTTP: POST /v1development/profiles, ExportProfilesServiceRequest.
class OtlpHttpBackend final : public Backend {
 public:
  OtlpHttpBackend() {
    server_.Post(
        "/v1development/profiles", [this](const httplib::Request& req, httplib::Response& res) {
          namespace collector = ::opentelemetry::proto::collector::profiles::v1development;
          std::lock_guard lock(mu_);
          const Clock::time_point now = Clock::now();
          const auto since = hits_.empty()
                                 ? milliseconds(0)
                                 : std::chrono::duration_cast<milliseconds>(now - hits_.front().at);
          collector::ExportProfilesServiceRequest r;
          PushServer::Answer a = r.ParseFromString(req.body)
                                     ? Script(since)
                                     : PushServer::Answer{.status = 400, .body = "undecodable"};
          hits_.push_back({now, a.status, !a.retry_after.empty()});
          res.status = a.status;
          if (!a.retry_after.empty()) res.set_header("Retry-After", a.retry_after);
          if (a.status != 200) {
            res.set_content(a.body, "text/plain");
            return;
          }
          for (const auto& rp : r.resource_profiles()) {
            std::string service;
            for (const auto& kv : rp.resource().attributes()) {
              if (kv.key() == "service.name") service = kv.value().string_value();
            }
            for (const auto& sp : rp.scope_profiles()) {
              for (const auto& prof : sp.profiles()) {
                PushedSeries ps{.window_start_ns = static_cast<int64_t>(prof.time_unix_nano()),
                                .service = service};
                for (const auto& smp : prof.samples()) ps.count += smp.values(0);
                accepted_.push_back(ps);
              }
            }
          }
          res.set_content(collector::ExportProfilesServiceResponse().SerializeAsString(),
                          "application/x-protobuf");
        });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(milliseconds(1));
  }
  ~OtlpHttpBackend() override {
    server_.stop();
    thread_.join();
  }
  std::string sink() const override { return "otlp"; }
  std::unique_ptr<sinks::Sink> MakeSink() const override {
    return std::make_unique<sinks::OtlpSink>(sinks::OtlpConfig{
        .protocol = "http", .endpoint = "http://127.0.0.1:" + std::to_string(port_)});
  }
  std::vector<Hit> hits() const override {
    std::lock_guard lock(mu_);
    return hits_;
  }
  std::vector<PushedSeries> accepted() const override {
    std::lock_guard lock(mu_);
    return accepted_;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::vector<Hit> hits_;
  std::vector<PushedSeries> accepted_;
};

struct Probe {
  Clock::time_point at;
  bool paused;
  double pending;
  uint64_t records_in;
  int64_t produced;
  int64_t committed;
};

class ExporterOutage : public ::testing::TestWithParam<std::string> {};

TEST_P(ExporterOutage,
       Sink503For30sThenRecoversNothingLostNothingTwicePausedAndCommittedAfterAcceptance) {
  Result<std::unique_ptr<testing::DevBroker>> broker =
      testing::DevBroker::Start({.brokers = 1, .partitions = kPartitions});
  ASSERT_TRUE(broker.ok()) << broker.status();
  // The mock cluster holds a departed member until its session times out: keep that short so
  // the restart below is assigned the partitions quickly.
  const kafka::Properties props = {{"bootstrap.servers", (*broker)->bootstrap()},
                                   {"session.timeout.ms", "6000"},
                                   {"heartbeat.interval.ms", "500"}};

  std::unique_ptr<Backend> backend;
  if (GetParam() == "pyroscope") {
    backend = std::make_unique<PyroscopeBackend>();
  } else {
    backend = std::make_unique<OtlpHttpBackend>();
  }

  // Input: a batch every 100 ms whose event time advances 200 ms, so 1 s windows keep closing.
  std::vector<v1::SampleBatch> batches;
  auto make_batch = [](int i) {
    return profile::testing::MakeCorrelatedBatch({.sequence = static_cast<uint64_t>(i + 1),
                                                  .samples = 200,
                                                  .start_ns = kT0 + int64_t{i} * 200'000'000,
                                                  .spread_ns = 400'000'000,
                                                  .seed = static_cast<uint32_t>(i + 1)});
  };
  Result<std::unique_ptr<kafka::Producer>> producer =
      kafka::Producer::Create({.properties = props});
  ASSERT_TRUE(producer.ok()) << producer.status();
  std::atomic<int64_t> produced{0};
  auto produce = [&](int i) {
    batches.push_back(make_batch(i));
    const std::string key = i % 2 == 0 ? "test/node-1" : "test/node-2";
    ASSERT_TRUE((*producer)->Produce(kTopic, key, batches.back().SerializeAsString()).ok());
    ASSERT_TRUE((*producer)->Flush(seconds(10)).ok());
    produced.fetch_add(1);
  };
  for (int i = 0; i < 20; ++i) produce(i);

  obs::Registry metrics;
  const obs::Labels labels = {{"sink", backend->sink()}};
  obs::Counter& records_in =
      metrics.Counter("fs_exporter_records_in_total", "records consumed", labels);
  obs::Gauge& paused = metrics.Gauge("fs_exporter_paused", "1 while input is paused", labels);
  obs::Gauge& pending =
      metrics.Gauge("fs_exporter_pending_windows", "closed windows waiting for the sink", labels);
  const exporter::StageConfig config{.kafka = props,
                                     .window = seconds(1),
                                     .lateness = seconds(1),
                                     .idle_flush = seconds(2),
                                     .max_pending_windows = 4,
                                     .retry = {.initial = milliseconds(100), .max = seconds(3)}};
  auto make_sink = [&] { return backend->MakeSink(); };
  auto stage = std::make_unique<exporter::ExporterStage>(config, make_sink(), metrics);
  std::stop_source stop;
  Status result;
  std::thread runner([&] { result = stage->Run(stop.get_token()); });

  // Keep producing through the outage, and probe the stage every 250 ms.
  CommittedReader committed((*broker)->bootstrap(), "flamestream-exporter-" + backend->sink());
  std::vector<Probe> probes;
  auto probe = [&] {
    probes.push_back({Clock::now(), paused.value() > 0, pending.value(), records_in.value(),
                      produced.load(), committed.Total()});
  };
  int next = 20;
  const auto start = Clock::now();
  while (Clock::now() - start < kOutage + seconds(3)) {
    produce(next++);
    if (next % 3 == 0) probe();
    std::this_thread::sleep_for(milliseconds(100));
  }
  const int64_t total_records = produced.load();
  const std::map<int64_t, int64_t> want = SamplesPerWindow(batches);
  int64_t want_total = 0;
  for (const auto& [w, n] : want) want_total += n;
  ASSERT_EQ(want_total, profile::testing::ExpectedOf(batches).total_count);

  // Recovery: wait until every window arrived, then let the last commit happen.
  auto received_total = [&] {
    int64_t n = 0;
    for (const PushedSeries& s : backend->accepted()) n += s.count;
    return n;
  };
  const auto deadline = Clock::now() + seconds(60);
  while (Clock::now() < deadline &&
         (received_total() < want_total || committed.Total() < total_records)) {
    probe();
    std::this_thread::sleep_for(milliseconds(250));
  }
  probe();
  stop.request_stop();
  runner.join();
  ASSERT_TRUE(result.ok()) << result;

  // 1. The outage happened as scripted and Retry-After was honoured.
  const std::vector<Backend::Hit> log = backend->hits();
  ASSERT_FALSE(log.empty());
  Clock::time_point first_ok{};
  int refused = 0, refused_with_retry_after = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].status == 503) {
      ++refused;
      if (log[i].retry_after) {
        ++refused_with_retry_after;
        ASSERT_LT(i + 1, log.size());
        EXPECT_GE(log[i + 1].at - log[i].at, milliseconds(1950))
            << "Retry-After: 2 not honoured, request " << i;
      } else if (i + 1 < log.size()) {
        // Plain 503: exponential backoff capped at retry.max (3 s) + 20 % jitter.
        EXPECT_LE(log[i + 1].at - log[i].at, milliseconds(3600 + 500)) << "request " << i;
      }
    } else if (first_ok == Clock::time_point{}) {
      first_ok = log[i].at;
      EXPECT_EQ(log[i].status, 200);
    }
  }
  EXPECT_GE(refused_with_retry_after, 5);
  EXPECT_GE(refused - refused_with_retry_after, 3);
  EXPECT_GE(first_ok - log.front().at, kOutage);

  // 2. Per window: samples out == samples in, and each (window, series) accepted exactly once.
  std::map<int64_t, int64_t> got;
  std::map<std::pair<int64_t, std::string>, int> deliveries;
  for (const PushedSeries& s : backend->accepted()) {
    got[s.window_start_ns] += s.count;
    ++deliveries[{s.window_start_ns, s.service}];
  }
  EXPECT_EQ(got, want);
  for (const auto& [key, n] : deliveries) {
    EXPECT_EQ(n, 1) << "window " << key.first << " service " << key.second << " accepted " << n
                    << " times";
  }
  int64_t got_total = 0;
  for (const auto& [w, n] : got) got_total += n;
  EXPECT_EQ(got_total, want_total);

  // 3. Input paused during the outage: once paused, nothing more was read while the topic
  // kept growing (lag grows), and the closed windows held stayed within max_pending_windows.
  std::optional<Clock::time_point> pause_start, pause_end;
  double max_pending = 0;
  for (const Probe& p : probes) {
    max_pending = std::max(max_pending, p.pending);
    if (p.paused && !pause_start) pause_start = p.at;
    if (!p.paused && pause_start && !pause_end) pause_end = p.at;
  }
  ASSERT_TRUE(pause_start.has_value()) << "input never paused";
  EXPECT_LE(max_pending, static_cast<double>(config.max_pending_windows));
  const Clock::time_point outage_end = log.front().at + kOutage;
  const Probe* first_paused = nullptr;
  const Probe* last_in_outage = nullptr;
  for (const Probe& p : probes) {
    if (p.at >= *pause_start + seconds(1) && p.at < outage_end - milliseconds(500)) {
      if (first_paused == nullptr) first_paused = &p;
      last_in_outage = &p;
      EXPECT_TRUE(p.paused);
      // 4. No window was accepted yet, so nothing may be committed.
      EXPECT_EQ(p.committed, 0);
    }
  }
  ASSERT_NE(first_paused, nullptr);
  EXPECT_EQ(last_in_outage->records_in, first_paused->records_in) << "records read while paused";
  const int64_t lag_start = first_paused->produced - static_cast<int64_t>(first_paused->records_in);
  const int64_t lag_end =
      last_in_outage->produced - static_cast<int64_t>(last_in_outage->records_in);
  EXPECT_GE(lag_end - lag_start, 200) << "lag did not grow during the outage";

  // After recovery everything is committed.
  EXPECT_EQ(committed.Total(), total_records);

  const double pause_s =
      std::chrono::duration<double>((pause_end ? *pause_end : Clock::now()) - *pause_start).count();
  std::printf(
      "[outage %s] records %lld, samples in %lld, samples out %lld, windows %zu, requests %zu "
      "(503: %d, with Retry-After: %d), paused %.1f s, lag %lld -> %lld records, max pending "
      "%.0f\n",
      backend->sink().c_str(), static_cast<long long>(total_records),
      static_cast<long long>(want_total), static_cast<long long>(got_total), want.size(),
      log.size(), refused, refused_with_retry_after, pause_s, static_cast<long long>(lag_start),
      static_cast<long long>(lag_end), max_pending);

  // 5. Restart on the same group after recovery: it reads only a record produced since, and
  // pushes only that record's samples.
  const size_t accepted_before = backend->accepted().size();
  produce(next++);
  const int64_t new_samples = profile::testing::ExpectedOf({batches.back()}).total_count;
  obs::Registry metrics2;
  obs::Counter& records_in2 =
      metrics2.Counter("fs_exporter_records_in_total", "records consumed", labels);
  stage = std::make_unique<exporter::ExporterStage>(config, make_sink(), metrics2);
  std::stop_source stop2;
  std::thread runner2([&] { result = stage->Run(stop2.get_token()); });
  const auto restart_deadline = Clock::now() + seconds(30);
  while (Clock::now() < restart_deadline && records_in2.value() == 0) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  std::this_thread::sleep_for(seconds(5));  // idle flush (2 s), push, and anything else it reads
  stop2.request_stop();
  runner2.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_EQ(records_in2.value(), 1u);
  const std::vector<PushedSeries> after = backend->accepted();
  int64_t pushed_again = 0;
  for (size_t i = accepted_before; i < after.size(); ++i) pushed_again += after[i].count;
  EXPECT_EQ(pushed_again, new_samples);
}

INSTANTIATE_TEST_SUITE_P(Sinks, ExporterOutage, ::testing::Values("pyroscope", "otlp_http"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace flamestream::exporter_test
