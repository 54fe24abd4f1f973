// The real OpenTelemetry JS SDK (tests/spans/otel-app) exports nested spans over OTLP/gRPC and
// OTLP/HTTP protobuf (gzip, chunked) to our receivers; names, ids, nesting, pid and host.name
// must arrive intact and be keyed by the app's host.
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "flamestream/common/strings.h"
#include "flamestream/spans/receivers.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::spans {
namespace {

class CapturingSink : public SpanWriter {
 public:
  void Write(const std::string& key, v1::SpanBatch batch, Done done) override {
    {
      std::lock_guard lock(mu_);
      for (const auto& s : batch.spans()) spans_.emplace_back(key, s);
    }
    done(OkStatus());
  }
  std::vector<std::pair<std::string, v1::KeyedSpan>> spans() {
    std::lock_guard lock(mu_);
    return spans_;
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, v1::KeyedSpan>> spans_;
};

TEST(OtelJsSdk, NestedSpansArriveIntactOverGrpcAndHttp) {
  const char* app_dir = std::getenv("FS_OTEL_APP_DIR");
  if (app_dir == nullptr || std::getenv("FS_OTEL_APP_MISSING") != nullptr) {
    const char* ci = std::getenv("CI");
    if (ci != nullptr && std::string(ci) == "true") FAIL() << "the otel-app was not installed";
    GTEST_SKIP() << "npm not found at configure time: tests/spans/otel-app was not installed";
  }
  obs::Registry metrics;
  CapturingSink sink;
  SpanRouter router({.default_cluster = "c1"}, sink, metrics);
  ReceiverConfig cfg;
  cfg.grpc_listen = "127.0.0.1:0";
  cfg.http_listen = "127.0.0.1:0";
  auto receivers = OtlpReceivers::Start(cfg, router, metrics);
  ASSERT_TRUE(receivers.ok()) << receivers.error();

  auto proc = testing::Subprocess::Start(
      {.argv = {"node", std::string(app_dir) + "/app.js", "--grpc",
                fmt::format("http://127.0.0.1:{}", (*receivers)->grpc_port()), "--http",
                fmt::format("http://127.0.0.1:{}/v1/traces", (*receivers)->http_port())}});
  ASSERT_TRUE(proc.ok()) << proc.error();
  auto line = (*proc)->ReadLine(std::chrono::seconds(60));
  ASSERT_TRUE(line.ok()) << line.error();
  auto exit = (*proc)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.error();
  EXPECT_EQ(exit->code, 0);

  const nlohmann::json report = nlohmann::json::parse(*line);
  const auto pid = report["pid"].get<uint32_t>();
  const std::string host = report["hostname"].get<std::string>();
  // The resource detectors must have supplied what placement needs.
  EXPECT_EQ(report["resource"]["host.name"], host);
  EXPECT_EQ(report["resource"]["process.pid"], pid);

  // The app flushed before printing, so every span is already acknowledged by the sink.
  const auto got = sink.spans();
  const auto& created = report["spans"];
  ASSERT_EQ(created.size(), 4u);
  ASSERT_EQ(got.size(), 2 * created.size()) << "each span once over gRPC and once over HTTP";

  std::map<std::string, std::string> name_of;  // span id (hex) -> name
  for (const auto& c : created) name_of[c["spanId"].get<std::string>()] = c["name"];
  std::map<std::string, std::string> parent_name;
  for (const auto& c : created) {
    const std::string parent = c["parentSpanId"];
    parent_name[c["name"]] = parent.empty() ? "" : name_of[parent];
  }
  EXPECT_EQ(parent_name, (std::map<std::string, std::string>{{"checkout", ""},
                                                            {"load-cart", "checkout"},
                                                            {"price-items", "load-cart"},
                                                            {"render", "checkout"}}));

  for (v1::SpanSource source : {v1::SPAN_SOURCE_OTLP_GRPC, v1::SPAN_SOURCE_OTLP_HTTP}) {
    for (const auto& c : created) {
      SCOPED_TRACE(fmt::format("{} via {}", c["name"].get<std::string>(),
                               v1::SpanSource_Name(source)));
      const std::string span_id = *common::HexDecode(c["spanId"].get<std::string>());
      const v1::KeyedSpan* found = nullptr;
      std::string key;
      for (const auto& [k, s] : got) {
        if (s.span_id() == span_id && s.source() == source) {
          found = &s;
          key = k;
        }
      }
      ASSERT_NE(found, nullptr);
      EXPECT_EQ(key, "c1/" + common::ToLower(host));
      EXPECT_EQ(common::HexEncode(found->trace_id()), c["traceId"]);
      EXPECT_EQ(common::HexEncode(found->parent_span_id()), c["parentSpanId"]);
      EXPECT_EQ(found->name(), c["name"]);
      EXPECT_EQ(found->kind(), v1::SPAN_KIND_INTERNAL);
      EXPECT_EQ(found->service_name(), "otel-span-app");
      EXPECT_EQ(found->host_name(), host);
      EXPECT_EQ(found->pid(), pid);
      EXPECT_EQ(found->host_pid(), pid);  // no process table: process.pid is the host pid
      EXPECT_EQ(found->placement(), v1::SPAN_PLACEMENT_HOST_NAME);
      EXPECT_GE(found->end_time_unix_ns() - found->start_time_unix_ns(), 19'000'000u);
    }
  }
}

}  // namespace
}  // namespace flamestream::spans
