#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "flamestream/common/strings.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"
#include "flamestream/sinks/otlp_sink.h"
#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.grpc.pb.h"
#include "rpc/status.pb.h"
#include "test_util.h"

namespace flamestream::exporter_test {
namespace {

namespace collector = ::opentelemetry::proto::collector::profiles::v1development;
namespace otlp = ::opentelemetry::proto::profiles::v1development;
using profile::testing::ExpectedOf;

class RecordingService final : public collector::ProfilesService::Service {
 public:
  grpc::Status Export(grpc::ServerContext* ctx, const collector::ExportProfilesServiceRequest* req,
                      collector::ExportProfilesServiceResponse* /*resp*/) override {
    std::lock_guard lock(mu);
    if (fail_first > 0) {
      --fail_first;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "busy");
    }
    auto it = ctx->client_metadata().find("x-tenant");
    if (it != ctx->client_metadata().end()) tenant = std::string(it->second.data(), it->second.size());
    requests.push_back(*req);
    return grpc::Status::OK;
  }
  std::mutex mu;
  int fail_first = 0;
  std::string tenant;
  std::vector<collector::ExportProfilesServiceRequest> requests;
};

struct Received {
  std::map<std::string, std::map<std::string, int64_t>> folded;  // service -> stack -> count
  std::map<std::string, int64_t> count;
  std::set<std::string> resource_keys;
  int64_t linked = 0;  // samples with a trace link
  std::map<std::string, int64_t> span_names;
};

std::string AttrString(const otlp::ProfilesDictionary& d, int32_t i, std::string* key) {
  const otlp::KeyValueAndUnit& kv = d.attribute_table(i);
  *key = d.string_table(kv.key_strindex());
  return kv.value().string_value();
}

// Decodes requests as a receiver would, checking the dictionary rules on the way.
Received Decode(const std::vector<collector::ExportProfilesServiceRequest>& reqs) {
  Received r;
  for (const auto& req : reqs) {
    const otlp::ProfilesDictionary& d = req.dictionary();
    EXPECT_EQ(d.string_table(0), "");
    EXPECT_EQ(d.mapping_table(0).ByteSizeLong(), 0u);
    EXPECT_EQ(d.location_table(0).ByteSizeLong(), 0u);
    EXPECT_EQ(d.function_table(0).ByteSizeLong(), 0u);
    EXPECT_EQ(d.stack_table(0).ByteSizeLong(), 0u);
    EXPECT_EQ(d.attribute_table(0).ByteSizeLong(), 0u);
    EXPECT_EQ(d.link_table(0).trace_id(), std::string(16, '\0'));
    bool has_build_id = false;
    for (int i = 1; i < d.mapping_table_size(); ++i) {
      for (int32_t a : d.mapping_table(i).attribute_indices()) {
        std::string key;
        AttrString(d, a, &key);
        has_build_id |= key == "process.executable.build_id.gnu";
      }
    }
    EXPECT_TRUE(has_build_id);
    for (const auto& rp : req.resource_profiles()) {
      std::string service;
      for (const auto& kv : rp.resource().attributes()) {
        r.resource_keys.insert(kv.key());
        if (kv.key() == "service.name") service = kv.value().string_value();
      }
      for (const auto& sp : rp.scope_profiles()) {
        for (const otlp::Profile& p : sp.profiles()) {
          EXPECT_EQ(d.string_table(p.sample_type().type_strindex()), "samples");
          EXPECT_EQ(d.string_table(p.sample_type().unit_strindex()), "count");
          EXPECT_EQ(d.string_table(p.period_type().type_strindex()), "cpu");
          EXPECT_EQ(d.string_table(p.period_type().unit_strindex()), "nanoseconds");
          EXPECT_EQ(p.period(), 1'000'000'000 / 99);
          EXPECT_EQ(p.duration_nano(), 10'000'000'000u);
          for (const otlp::Sample& s : p.samples()) {
            std::vector<std::string> frames;  // root first
            const otlp::Stack& st = d.stack_table(s.stack_index());
            for (int i = st.location_indices_size() - 1; i >= 0; --i) {
              const otlp::Location& loc = d.location_table(st.location_indices(i));
              for (int j = loc.lines_size() - 1; j >= 0; --j) {
                frames.push_back(
                    d.string_table(d.function_table(loc.lines(j).function_index()).name_strindex()));
              }
            }
            r.folded[service][common::Join(frames, ";")] += s.values(0);
            r.count[service] += s.values(0);
            if (s.link_index() != 0) {
              r.linked += s.values(0);
              EXPECT_EQ(d.link_table(s.link_index()).span_id().size(), 8u);
            }
            for (int32_t a : s.attribute_indices()) {
              std::string key;
              const std::string v = AttrString(d, a, &key);
              if (key == "span_name") r.span_names[v] += s.values(0);
            }
          }
        }
      }
    }
  }
  return r;
}

void CheckAgainstInput(const Received& got, const std::vector<v1::SampleBatch>& batches) {
  const profile::testing::Expected want = ExpectedOf(batches);
  for (const auto& [service, folded] : want.folded) {
    SCOPED_TRACE(service);
    std::string text;
    for (const auto& [stack, n] : got.folded.at(service)) text += stack + " " + std::to_string(n) + "\n";
    EXPECT_EQ(text, folded);
    EXPECT_EQ(got.count.at(service), want.count.at(service));
  }
  int64_t in_spans = 0;
  for (const auto& [name, n] : want.span_count) in_spans += n;
  EXPECT_EQ(got.linked, in_spans);
  EXPECT_EQ(got.span_names, want.span_count);
}

TEST(OtlpSink, GrpcExportCarriesEverySampleWithLinksAndResources) {
  RecordingService service;
  service.fail_first = 2;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_GT(port, 0);

  sinks::OtlpSink sink({.protocol = "grpc", .endpoint = "127.0.0.1:" + std::to_string(port),
                        .headers = {{"X-Tenant", "t1"}},
                        .resource_attributes = {{"deployment.environment", "test"}}});
  sinks::DeliveryQueue queue(sink, {.initial = std::chrono::milliseconds(10)});
  const std::vector<v1::SampleBatch> batches = StandardBatches();
  for (auto& w : Aggregate(batches, {.labels = sink.labels(), .granularity = sink.granularity()})) {
    queue.Push(std::move(w));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!queue.empty() && std::chrono::steady_clock::now() < deadline) {
    for (auto& d : queue.Pump(std::chrono::steady_clock::now())) EXPECT_TRUE(d.status.ok()) << d.status;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.retries(), 2u);
  server->Shutdown();
  std::lock_guard lock(service.mu);
  EXPECT_EQ(service.requests.size(), 2u);  // one per window
  EXPECT_EQ(service.tenant, "t1");
  Received got = Decode(service.requests);
  for (const char* key : {"service.name", "host.name", "k8s.cluster.name", "container.id", "k8s.pod.uid",
                          "process.executable.name", "deployment.environment"}) {
    EXPECT_TRUE(got.resource_keys.count(key)) << key;
  }
  CheckAgainstInput(got, batches);
}

// Answers each Export with the next scripted status (then OK) and notes when it came.
class ScriptedService final : public collector::ProfilesService::Service {
 public:
  explicit ScriptedService(std::vector<grpc::Status> script) : script_(std::move(script)) {}
  grpc::Status Export(grpc::ServerContext*, const collector::ExportProfilesServiceRequest*,
                      collector::ExportProfilesServiceResponse*) override {
    std::lock_guard lock(mu);
    at.push_back(std::chrono::steady_clock::now());
    return at.size() <= script_.size() ? script_[at.size() - 1] : grpc::Status::OK;
  }
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> at;

 private:
  std::vector<grpc::Status> script_;
};

// A status carrying google.rpc.RetryInfo{retry_delay} in its rich details, as OTLP receivers
// (the Collector, Grafana Cloud) send when throttling.
grpc::Status WithRetryInfo(grpc::StatusCode code, std::chrono::milliseconds delay) {
  rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(delay.count() / 1000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>(delay.count() % 1000 * 1'000'000));
  rpc::Status status;
  status.set_code(static_cast<int32_t>(code));
  status.set_message("throttled");
  rpc::Any* any = status.add_details();
  any->set_type_url("type.googleapis.com/google.rpc.RetryInfo");
  any->set_value(info.SerializeAsString());
  return grpc::Status(code, "throttled", status.SerializeAsString());
}

struct GrpcReceiver {
  explicit GrpcReceiver(std::vector<grpc::Status> script) : service(std::move(script)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
  }
  ~GrpcReceiver() { server->Shutdown(); }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port); }
  ScriptedService service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

TEST(OtlpSink, GrpcRetryInfoSetsTheRetryDelayAndMakesResourceExhaustedRetryable) {
  using std::chrono::milliseconds;
  GrpcReceiver receiver({WithRetryInfo(grpc::StatusCode::RESOURCE_EXHAUSTED, milliseconds(1200)),
                         WithRetryInfo(grpc::StatusCode::UNAVAILABLE, milliseconds(700))});
  ASSERT_GT(receiver.port, 0);
  sinks::OtlpSink sink({.protocol = "grpc", .endpoint = receiver.endpoint()});
  // Backoff alone would retry after ~10 ms.
  sinks::DeliveryQueue queue(sink, {.initial = milliseconds(10), .max = milliseconds(5000)});
  auto windows = Aggregate(StandardBatches(), {.labels = sink.labels(), .granularity = sink.granularity()});
  queue.Push(std::move(windows[0]));
  EXPECT_TRUE(queue.Pump(std::chrono::steady_clock::now()).empty());
  EXPECT_EQ(sink.last_response().status, static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_EQ(sink.last_response().retry_after, milliseconds(1200));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int delivered = 0;
  while (!queue.empty() && std::chrono::steady_clock::now() < deadline) {
    for (auto& d : queue.Pump(std::chrono::steady_clock::now())) {
      EXPECT_TRUE(d.status.ok()) << d.status;
      EXPECT_EQ(d.attempts, 3);
      ++delivered;
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
  EXPECT_EQ(delivered, 1);
  EXPECT_EQ(queue.retries(), 2u);
  std::lock_guard lock(receiver.service.mu);
  ASSERT_EQ(receiver.service.at.size(), 3u);
  // Each retry waited at least what the server asked for (lower bounds only: a loaded machine
  // may be later, never earlier).
  EXPECT_GE(receiver.service.at[1] - receiver.service.at[0], milliseconds(1200));
  EXPECT_GE(receiver.service.at[2] - receiver.service.at[1], milliseconds(700));
}

TEST(OtlpSink, GrpcResourceExhaustedWithoutRetryInfoIsPermanent) {
  GrpcReceiver receiver({grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "quota gone")});
  ASSERT_GT(receiver.port, 0);
  sinks::OtlpSink sink({.protocol = "grpc", .endpoint = receiver.endpoint()});
  sinks::DeliveryQueue queue(sink, {.initial = std::chrono::milliseconds(10)});
  auto windows = Aggregate(StandardBatches(), {.labels = sink.labels(), .granularity = sink.granularity()});
  queue.Push(std::move(windows[0]));
  std::vector<sinks::DeliveryQueue::Done> done = queue.Pump(std::chrono::steady_clock::now());
  ASSERT_EQ(done.size(), 1u);
  EXPECT_FALSE(done[0].status.ok());
  EXPECT_NE(done[0].status.message().find("quota gone"), std::string::npos) << done[0].status;
  EXPECT_EQ(done[0].attempts, 1);
  EXPECT_EQ(done[0].response.status, static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_FALSE(done[0].response.retry_after.has_value());
  EXPECT_EQ(queue.retries(), 0u);
  std::lock_guard lock(receiver.service.mu);
  EXPECT_EQ(receiver.service.at.size(), 1u);
}

TEST(OtlpSink, HttpExportPostsProtobufToV1developmentPath) {
  httplib::Server server;
  std::mutex mu;
  std::vector<collector::ExportProfilesServiceRequest> requests;
  std::vector<std::string> types, encodings;
  server.Post("/v1development/profiles", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    types.push_back(req.get_header_value("Content-Type"));
    encodings.push_back(req.get_header_value("Content-Encoding"));
    // httplib inflates gzip request bodies itself (CPPHTTPLIB_ZLIB_SUPPORT).
    collector::ExportProfilesServiceRequest r;
    if (!r.ParseFromString(req.body)) {
      res.status = 400;
      return;
    }
    requests.push_back(r);
    collector::ExportProfilesServiceResponse resp;
    res.set_content(resp.SerializeAsString(), "application/x-protobuf");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread t([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip);
    {
      std::lock_guard lock(mu);
      requests.clear();
    }
    sinks::OtlpSink sink({.protocol = "http", .endpoint = "http://127.0.0.1:" + std::to_string(port),
                          .gzip = gzip});
    const std::vector<v1::SampleBatch> batches = StandardBatches();
    for (auto& w : Aggregate(batches, {.labels = sink.labels(), .granularity = sink.granularity()})) {
      ASSERT_TRUE(sink.Export(*w).ok());
    }
    std::lock_guard lock(mu);
    EXPECT_EQ(requests.size(), 2u);
    EXPECT_EQ(types.back(), "application/x-protobuf");
    EXPECT_EQ(encodings.back(), gzip ? "gzip" : "");
    CheckAgainstInput(Decode(requests), batches);
  }
  server.stop();
  t.join();
}

}  // namespace
}  // namespace flamestream::exporter_test
