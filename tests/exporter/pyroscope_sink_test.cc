#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"
#include "flamestream/sinks/pyroscope_sink.h"
#include "push_server.h"
#include "test_util.h"

namespace flamestream::exporter_test {
namespace {

using profile::testing::ExpectedOf;

// A Pyroscope push endpoint: Connect unary, protobuf body. Fails the first `fail_first`
// requests with `fail_status`, then accepts and records everything.
class FakePyroscope {
 public:
  explicit FakePyroscope(int fail_first = 0, int fail_status = 503)
      : fail_first_(fail_first), fail_status_(fail_status) {
    server_.Post("/push.v1.PusherService/Push", [this](const httplib::Request& req,
                                                       httplib::Response& res) {
      std::lock_guard lock(mu_);
      ++requests_;
      if (requests_ <= fail_first_) {
        res.status = fail_status_;
        res.set_content(R"({"code":"unavailable","message":"try later"})", "application/json");
        return;
      }
      content_types_.push_back(req.get_header_value("Content-Type"));
      tenants_.push_back(req.get_header_value("X-Scope-OrgID"));
      auth_.push_back(req.get_header_value("Authorization"));
      push::v1::PushRequest push;
      if (!push.ParseFromString(req.body)) {
        res.status = 400;
        return;
      }
      pushes_.push_back(push);
      res.status = 200;
      res.set_content("", "application/proto");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakePyroscope() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<push::v1::PushRequest> pushes() {
    std::lock_guard lock(mu_);
    return pushes_;
  }
  int requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<std::string> content_types_, tenants_, auth_;

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  int fail_first_;
  int fail_status_;
  int requests_ = 0;
  std::vector<push::v1::PushRequest> pushes_;
};

struct Received {
  std::map<std::string, std::vector<profile::FoldedStack>> stacks;  // by service_name
  std::map<std::string, int64_t> count, nanos;
  std::set<std::string> label_keys;
  std::set<std::string> sample_label_keys;
  int series = 0;
};

Received Decode(const std::vector<push::v1::PushRequest>& pushes) {
  Received r;
  for (const push::v1::PushRequest& p : pushes) {
    for (const push::v1::RawProfileSeries& s : p.series()) {
      ++r.series;
      std::string service;
      for (const types::v1::LabelPair& l : s.labels()) {
        r.label_keys.insert(l.name());
        if (l.name() == "service_name") service = l.value();
      }
      for (const push::v1::RawSample& raw : s.samples()) {
        EXPECT_EQ(static_cast<uint8_t>(raw.raw_profile()[0]), 0x1f) << "raw_profile not gzip";
        Result<perftools::profiles::Profile> prof = profile::DecodePprof(raw.raw_profile());
        EXPECT_TRUE(prof.ok()) << prof.status();
        if (!prof.ok()) continue;
        for (const auto& smp : prof->sample()) {
          for (const auto& l : smp.label()) {
            r.sample_label_keys.insert(prof->string_table(static_cast<int>(l.key())));
          }
        }
        Result<std::vector<profile::FoldedStack>> f = profile::Fold(*prof);
        EXPECT_TRUE(f.ok());
        for (const auto& st : *f) {
          r.count[service] += st.count;
          r.nanos[service] += st.nanos;
        }
        r.stacks[service].insert(r.stacks[service].end(), f->begin(), f->end());
      }
    }
  }
  return r;
}

void CheckAgainstInput(const Received& got, const std::vector<v1::SampleBatch>& batches) {
  const profile::testing::Expected want = ExpectedOf(batches);
  ASSERT_EQ(got.stacks.size(), want.folded.size());
  for (const auto& [service, folded] : want.folded) {
    SCOPED_TRACE(service);
    EXPECT_EQ(profile::FoldedText(got.stacks.at(service)), folded);
    EXPECT_EQ(got.count.at(service), want.count.at(service));
    EXPECT_EQ(got.nanos.at(service), want.nanos.at(service));
  }
}

TEST(PyroscopeSink, PushesEverySeriesWithLabelsAndGzipPprof) {
  FakePyroscope server;
  sinks::PyroscopeSink sink({.url = server.url(),
                             .tenant = "team-a",
                             .bearer_token = "secret",
                             .labels = {{"env", "test"}},
                             .max_series_per_request = 2});
  const std::vector<v1::SampleBatch> batches = StandardBatches();
  for (auto& w : Aggregate(batches, {.labels = sink.labels(), .granularity = sink.granularity()})) {
    ASSERT_TRUE(sink.Export(*w).ok());
  }
  const std::vector<push::v1::PushRequest> pushes = server.pushes();
  // 3 series per window, at most 2 per request, 2 windows -> 4 requests.
  EXPECT_EQ(pushes.size(), 4u);
  for (size_t i = 0; i < pushes.size(); ++i) {
    EXPECT_EQ(server.content_types_[i], "application/proto");
    EXPECT_EQ(server.tenants_[i], "team-a");
    EXPECT_EQ(server.auth_[i], "Bearer secret");
  }
  Received got = Decode(pushes);
  EXPECT_EQ(got.series, 6);
  EXPECT_EQ(got.label_keys, (std::set<std::string>{"__delta__", "__name__", "cluster", "container_id",
                                                   "env", "k8s_pod_uid", "node", "service_name"}));
  // Only span_id: no trace_id and no thread labels (a series per trace otherwise).
  EXPECT_EQ(got.sample_label_keys, (std::set<std::string>{"span_id"}));
  CheckAgainstInput(got, batches);
}

TEST(PyroscopeSink, SpanNameLabelWhenEnabledAndBasicAuth) {
  FakePyroscope server;
  sinks::PyroscopeSink sink({.url = server.url() + "/", .basic_user = "u", .basic_password = "p",
                             .span_name = true});
  for (auto& w : Aggregate(StandardBatches(), {.labels = sink.labels()})) {
    ASSERT_TRUE(sink.Export(*w).ok());
  }
  Received got = Decode(server.pushes());
  EXPECT_EQ(got.sample_label_keys, (std::set<std::string>{"span_id", "span_name"}));
  EXPECT_EQ(server.auth_.at(0), "Basic dTpw");
  EXPECT_EQ(server.tenants_.at(0), "");
}

TEST(PyroscopeSink, OutageIsRetriedWithBackoffAndNothingIsLostOrCountedTwice) {
  FakePyroscope server(/*fail_first=*/5, /*fail_status=*/503);
  sinks::PyroscopeSink sink({.url = server.url(), .max_series_per_request = 1});
  sinks::DeliveryQueue queue(sink, {.initial = std::chrono::milliseconds(20),
                                    .max = std::chrono::milliseconds(200)});
  const std::vector<v1::SampleBatch> batches = StandardBatches();
  for (auto& w : Aggregate(batches, {.labels = sink.labels(), .granularity = sink.granularity()})) {
    queue.Push(std::move(w));
  }
  int delivered = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!queue.empty() && std::chrono::steady_clock::now() < deadline) {
    for (auto& d : queue.Pump(std::chrono::steady_clock::now())) {
      EXPECT_TRUE(d.status.ok()) << d.status;
      ++delivered;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(delivered, 2);
  EXPECT_EQ(queue.retries(), 5u);
  EXPECT_EQ(server.requests(), 5 + 6);  // 5 refused, then each of the 6 series once
  CheckAgainstInput(Decode(server.pushes()), batches);
}

TEST(PyroscopeSink, ClientErrorsAreNotRetried) {
  FakePyroscope server(/*fail_first=*/100, /*fail_status=*/400);
  sinks::PyroscopeSink sink({.url = server.url()});
  sinks::DeliveryQueue queue(sink, {});
  for (auto& w : Aggregate(StandardBatches(), {.labels = sink.labels()})) queue.Push(std::move(w));
  std::vector<sinks::DeliveryQueue::Done> done = queue.Pump(std::chrono::steady_clock::now());
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(done[0].status.message().find("HTTP 400"), std::string::npos) << done[0].status;
  EXPECT_FALSE(sinks::IsRetryable(done[0].status));
  // Per window: the refused push, then one push per series to find which series it refuses
  // (here all three, so the whole window fails).
  EXPECT_EQ(server.requests(), 8);
}

TEST(PyroscopeSink, ConnectionRefusedIsRetryable) {
  int port = 0;
  {
    httplib::Server s;
    port = s.bind_to_any_port("127.0.0.1");
  }
  sinks::PyroscopeSink sink({.url = "http://127.0.0.1:" + std::to_string(port),
                             .timeout = std::chrono::milliseconds(500)});
  auto windows = Aggregate(StandardBatches(), {.labels = sink.labels()});
  Status st = sink.Export(*windows[0]);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st;
}

TEST(HttpStatus, ClassifiesRetryableAnswers) {
  struct Case {
    int http;
    bool ok;
    bool retry;
  };
  for (const Case& c : {Case{200, true, false}, Case{204, true, false}, Case{400, false, false},
                        Case{401, false, false}, Case{404, false, false}, Case{408, false, true},
                        Case{429, false, true}, Case{500, false, true}, Case{503, false, true}}) {
    SCOPED_TRACE(c.http);
    Status st = sinks::HttpStatusToStatus(c.http, "body");
    EXPECT_EQ(st.ok(), c.ok);
    EXPECT_EQ(sinks::IsRetryable(st), c.retry);
  }
}

TEST(RetryAfter, ParsesSecondsAndHttpDates) {
  using std::chrono::milliseconds;
  const auto now = std::chrono::system_clock::from_time_t(1445412480);  // Wed, 21 Oct 2015 07:28:00 GMT
  struct Case {
    std::string value;
    std::optional<milliseconds> want;
  };
  for (const Case& c : {Case{"120", milliseconds(120'000)}, Case{" 0 ", milliseconds(0)},
                        Case{"Wed, 21 Oct 2015 07:28:30 GMT", milliseconds(30'000)},
                        Case{"Wed, 21 Oct 2015 07:27:00 GMT", milliseconds(0)},  // in the past
                        Case{"-5", std::nullopt}, Case{"soon", std::nullopt}, Case{"", std::nullopt},
                        Case{"Wed, 21 Oct 2015 07:28:30 GMT trailing", std::nullopt}}) {
    SCOPED_TRACE(c.value);
    EXPECT_EQ(sinks::ParseRetryAfter(c.value, now), c.want);
  }
  const RetryPolicy policy{.initial = milliseconds(100), .max = milliseconds(5000)};
  EXPECT_EQ(sinks::RetryAfterDelay(milliseconds(2000), policy), milliseconds(2000));
  EXPECT_EQ(sinks::RetryAfterDelay(milliseconds(600'000), policy), milliseconds(5000));  // capped by max
  EXPECT_EQ(sinks::RetryAfterDelay(milliseconds(0), policy), milliseconds(100));  // no busy loop
}

// 503 with Retry-After: the next attempt waits what the server asked (capped by retry max),
// not the (much shorter) backoff; the refusal's status and body are kept.
TEST(PyroscopeSink, RetryAfterIsHonouredAndCappedByRetryMax) {
  using std::chrono::milliseconds;
  PushServer server([](const PushServer::Seen& s) {
    if (s.index == 0) return PushServer::Answer{.status = 503, .retry_after = "1", .body = "later"};
    if (s.index == 1) return PushServer::Answer{.status = 429, .retry_after = "3600", .body = "slow down"};
    return PushServer::Answer{};
  });
  sinks::PyroscopeSink sink({.url = server.url(), .max_series_per_request = 64});
  sinks::DeliveryQueue queue(sink, {.initial = milliseconds(10), .max = milliseconds(1500)});
  auto windows = Aggregate(StandardBatches(), {.labels = sink.labels(), .granularity = sink.granularity()});
  queue.Push(std::move(windows[0]));
  EXPECT_TRUE(queue.Pump(std::chrono::steady_clock::now()).empty());
  EXPECT_EQ(sink.last_response().status, 503);
  EXPECT_EQ(sink.last_response().body, "later");
  EXPECT_EQ(sink.last_response().retry_after, std::chrono::seconds(1));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!queue.empty() && std::chrono::steady_clock::now() < deadline) {
    for (auto& d : queue.Pump(std::chrono::steady_clock::now())) EXPECT_TRUE(d.status.ok()) << d.status;
    std::this_thread::sleep_for(milliseconds(2));
  }
  const std::vector<PushServer::Request> log = server.log();
  ASSERT_EQ(log.size(), 3u);
  const auto gap1 = std::chrono::duration_cast<milliseconds>(log[1].at - log[0].at);
  const auto gap2 = std::chrono::duration_cast<milliseconds>(log[2].at - log[1].at);
  EXPECT_GE(gap1, milliseconds(1000));  // Retry-After: 1 (backoff alone: ~10 ms)
  EXPECT_LT(gap1, milliseconds(1400));
  EXPECT_GE(gap2, milliseconds(1500));  // Retry-After: 3600, capped by retry max 1.5 s
  EXPECT_LT(gap2, milliseconds(2000));
}

}  // namespace
}  // namespace flamestream::exporter_test
