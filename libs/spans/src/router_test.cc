#include "flamestream/spans/router.h"

#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "flamestream/common/strings.h"
#include "flamestream/v1/processes.pb.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::trace::v1::Span;

// A sink that records batches and acknowledges them as told.
class FakeSpanWriter : public SpanWriter {
 public:
  enum class Mode { kAck, kFail, kNeverAck };
  explicit FakeSpanWriter(Mode mode = Mode::kAck) : mode_(mode) {}

  void Write(const std::string& key, v1::SpanBatch batch, Done done) override {
    {
      std::lock_guard lock(mu_);
      written.emplace_back(key, std::move(batch));
    }
    if (mode_ == Mode::kAck) done(OkStatus());
    if (mode_ == Mode::kFail) done(ResourceExhausted("queue full"));
    if (mode_ == Mode::kNeverAck) {
      std::lock_guard lock(mu_);
      held_.push_back(std::move(done));  // completes never (until destroyed)
    }
  }

  std::vector<std::pair<std::string, v1::SpanBatch>> written;

 private:
  Mode mode_;
  std::mutex mu_;
  std::vector<Done> held_;
};

struct Attr {
  std::string key;
  std::string str;
  int64_t num = -1;
};

void AddAttrs(google::protobuf::RepeatedPtrField<opentelemetry::proto::common::v1::KeyValue>* out,
              const std::vector<Attr>& attrs) {
  for (const Attr& a : attrs) {
    auto* kv = out->Add();
    kv->set_key(a.key);
    if (a.num >= 0) {
      kv->mutable_value()->set_int_value(a.num);
    } else {
      kv->mutable_value()->set_string_value(a.str);
    }
  }
}

// One resource with one span per id byte given.
otlp::ExportTraceServiceRequest Request(const std::vector<Attr>& resource,
                                        const std::vector<char>& span_bytes,
                                        const std::vector<Attr>& span_attrs = {}) {
  otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  AddAttrs(rs->mutable_resource()->mutable_attributes(), resource);
  auto* ss = rs->add_scope_spans();
  for (char b : span_bytes) {
    Span* s = ss->add_spans();
    s->set_trace_id(std::string(16, b));
    s->set_span_id(std::string(8, b));
    s->set_name(std::string("span-") + static_cast<char>('a' + b));
    s->set_kind(Span::SPAN_KIND_CLIENT);
    s->set_start_time_unix_nano(1000);
    s->set_end_time_unix_nano(2000);
    AddAttrs(s->mutable_attributes(), span_attrs);
  }
  return req;
}

uint64_t CounterValue(obs::Registry& r, const std::string& name, const obs::Labels& labels) {
  return r.Counter(name, "", labels).value();
}

TEST(SpanRouter, KeysSpansByClusterAndNodeAndKeepsTheirIdentity) {
  obs::Registry metrics;
  FakeSpanWriter sink;
  SpanRouter router({.default_cluster = "Prod", .keep_attributes = {"http.route", "region"},
                     .instance_id = "router-1"},
                    sink, metrics);
  auto req = Request({{"service.name", "checkout"},
                      {"k8s.node.name", "Node-A"},
                      {"host.name", "pod-xyz"},
                      {"process.pid", "", 4242},
                      {"region", "eu"}},
                     {1, 2}, {{"thread.id", "", 77}, {"http.route", "/cart"}});
  req.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(1)->set_parent_span_id(
      std::string(8, 1));
  RouteResult r = router.Route(req, v1::SPAN_SOURCE_OTLP_HTTP, std::chrono::seconds(5));
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.accepted, 2u);
  EXPECT_EQ(r.rejected, 0u);
  ASSERT_EQ(sink.written.size(), 1u);
  const auto& [key, batch] = sink.written[0];
  EXPECT_EQ(key, "prod/node-a");
  EXPECT_EQ(batch.cluster(), "prod");
  EXPECT_EQ(batch.node(), "node-a");
  EXPECT_EQ(batch.id().agent_id(), "router-1");
  EXPECT_EQ(batch.id().sequence(), 1u);
  ASSERT_EQ(batch.spans_size(), 2);
  const v1::KeyedSpan& s = batch.spans(1);
  EXPECT_EQ(s.trace_id(), std::string(16, 2));
  EXPECT_EQ(s.span_id(), std::string(8, 2));
  EXPECT_EQ(s.parent_span_id(), std::string(8, 1));
  EXPECT_EQ(batch.spans(0).parent_span_id(), "");
  EXPECT_EQ(s.name(), "span-c");
  EXPECT_EQ(s.kind(), v1::SPAN_KIND_CLIENT);
  EXPECT_EQ(s.service_name(), "checkout");
  EXPECT_EQ(s.start_time_unix_ns(), 1000u);
  EXPECT_EQ(s.end_time_unix_ns(), 2000u);
  EXPECT_EQ(s.host_name(), "pod-xyz");
  EXPECT_EQ(s.k8s_node_name(), "Node-A");
  EXPECT_EQ(s.pid(), 4242u);
  EXPECT_EQ(s.thread_id(), 77);
  EXPECT_EQ(s.source(), v1::SPAN_SOURCE_OTLP_HTTP);
  EXPECT_EQ(s.placement(), v1::SPAN_PLACEMENT_K8S_NODE_NAME);
  EXPECT_GT(s.received_unix_ns(), 0u);
  EXPECT_EQ(SpanKey(s), "prod/node-a");
  const std::map<std::string, std::string> attrs(s.attributes().begin(), s.attributes().end());
  EXPECT_EQ(attrs, (std::map<std::string, std::string>{{"http.route", "/cart"},
                                                       {"region", "eu"}}));
  EXPECT_EQ(CounterValue(metrics, "fs_spans_received_total", {{"source", "http"}}), 2u);
  EXPECT_EQ(CounterValue(metrics, "fs_spans_accepted_total", {{"source", "http"}}), 2u);
}

TEST(SpanRouter, PlacesByHostNameOrByTheProcessTable) {
  obs::Registry metrics;
  FakeSpanWriter sink;
  SpanRouter router({.default_cluster = "prod"}, sink, metrics);
  v1::ProcessRecord rec;
  rec.set_cluster("prod");
  rec.set_node("node-b");
  rec.set_host_pid(9001);
  rec.set_ns_pid(7);
  rec.set_container_id("c0ffee");
  ASSERT_TRUE(router.ApplyProcessRecord("prod/node-b/9001/123", rec.SerializeAsString()).ok());
  EXPECT_EQ(router.process_count(), 1u);

  struct Case {
    std::string name;
    std::vector<Attr> resource;
    std::string key;
    v1::SpanPlacement placement;
    uint32_t host_pid;
  };
  const std::vector<Case> cases = {
      {"host.name", {{"host.name", "Laptop"}, {"process.pid", "", 55}}, "prod/laptop",
       v1::SPAN_PLACEMENT_HOST_NAME, 55},
      {"container.id", {{"container.id", "c0ffee"}, {"process.pid", "", 7}}, "prod/node-b",
       v1::SPAN_PLACEMENT_CONTAINER_ID, 9001},
      {"k8s.cluster.name", {{"k8s.cluster.name", "edge"}, {"k8s.node.name", "n1"}}, "edge/n1",
       v1::SPAN_PLACEMENT_K8S_NODE_NAME, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    sink.written.clear();
    RouteResult r = router.Route(Request(c.resource, {3}), v1::SPAN_SOURCE_OTLP_GRPC,
                                 std::chrono::seconds(5));
    ASSERT_TRUE(r.status.ok()) << r.status;
    ASSERT_EQ(sink.written.size(), 1u);
    EXPECT_EQ(sink.written[0].first, c.key);
    EXPECT_EQ(sink.written[0].second.spans(0).placement(), c.placement);
    EXPECT_EQ(sink.written[0].second.spans(0).host_pid(), c.host_pid);
  }

  // A tombstone for the key retires the process: the container is unknown again.
  ASSERT_TRUE(router.ApplyProcessRecord("prod/node-b/9001/123", std::nullopt).ok());
  EXPECT_EQ(router.process_count(), 0u);
  EXPECT_FALSE(router.ApplyProcessRecord("garbage", std::nullopt).ok());
}

TEST(SpanRouter, RejectsUnplaceableAndMalformedSpansWithReasons) {
  obs::Registry metrics;
  FakeSpanWriter sink;
  SpanRouter router({}, sink, metrics);
  otlp::ExportTraceServiceRequest req = Request({{"service.name", "x"}}, {1});  // no node
  auto more = Request({{"host.name", "h"}}, {2, 3, 4, 5});
  auto* spans = more.mutable_resource_spans(0)->mutable_scope_spans(0);
  spans->mutable_spans(0)->set_trace_id("short");
  spans->mutable_spans(1)->set_span_id(std::string(8, '\0'));
  spans->mutable_spans(2)->set_parent_span_id("abc");
  *req.add_resource_spans() = more.resource_spans(0);
  req.mutable_resource_spans(1)->mutable_scope_spans(0)->mutable_spans(3)->set_name("ok");

  RouteResult r = router.Route(req, v1::SPAN_SOURCE_OTLP_KAFKA, std::chrono::seconds(5));
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.accepted, 1u);
  EXPECT_EQ(r.rejected, 4u);
  EXPECT_EQ(r.rejection,
            "4 of 5 spans rejected (1 invalid_parent_span_id, 1 invalid_span_id, 1 "
            "invalid_trace_id, 1 unplaced_no_node_identity); first: resource_spans[0]: span "
            "cannot be placed on a node (no_node_identity): send k8s.node.name or host.name (or "
            "container.id known to an agent)");
  ASSERT_EQ(sink.written.size(), 1u);
  EXPECT_EQ(sink.written[0].second.spans(0).name(), "ok");
  for (const char* reason : {"unplaced_no_node_identity", "invalid_trace_id", "invalid_span_id",
                             "invalid_parent_span_id"}) {
    SCOPED_TRACE(reason);
    EXPECT_EQ(CounterValue(metrics, "fs_spans_rejected_total", {{"reason", reason}}), 1u);
  }
}

TEST(SpanRouter, SplitsSpansOfSeveralNodesIntoOneBatchPerKey) {
  obs::Registry metrics;
  FakeSpanWriter sink;
  SpanRouter router({}, sink, metrics);
  otlp::ExportTraceServiceRequest req = Request({{"host.name", "a"}}, {1, 2});
  *req.add_resource_spans() = Request({{"host.name", "b"}}, {3}).resource_spans(0);
  RouteResult r = router.Route(req, v1::SPAN_SOURCE_OTLP_HTTP, std::chrono::seconds(5));
  ASSERT_TRUE(r.status.ok());
  ASSERT_EQ(sink.written.size(), 2u);
  EXPECT_EQ(sink.written[0].first, "default/a");
  EXPECT_EQ(sink.written[0].second.spans_size(), 2);
  EXPECT_EQ(sink.written[1].first, "default/b");
  EXPECT_EQ(sink.written[1].second.spans_size(), 1);
  EXPECT_NE(sink.written[0].second.id().sequence(), sink.written[1].second.id().sequence());
}

TEST(SpanRouter, AnswersUnavailableWhenTheWriterFailsOrIsTooSlow) {
  for (auto mode : {FakeSpanWriter::Mode::kFail, FakeSpanWriter::Mode::kNeverAck}) {
    SCOPED_TRACE(mode == FakeSpanWriter::Mode::kFail ? "fail" : "never ack");
    obs::Registry metrics;
    FakeSpanWriter sink(mode);
    SpanRouter router({}, sink, metrics);
    const auto start = std::chrono::steady_clock::now();
    RouteResult r = router.Route(Request({{"host.name", "a"}}, {1}), v1::SPAN_SOURCE_OTLP_HTTP,
                                 std::chrono::milliseconds(200));
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.status.code(), StatusCode::kUnavailable);
    EXPECT_EQ(r.accepted, 0u);
    if (mode == FakeSpanWriter::Mode::kNeverAck) {
      EXPECT_EQ(r.status.message(), "spans not acknowledged by Kafka within the deadline");
      EXPECT_GE(took, std::chrono::milliseconds(200));
      EXPECT_EQ(CounterValue(metrics, "fs_span_ack_timeouts_total", {}), 1u);
    } else {
      EXPECT_EQ(r.status.message(),
                "spans not acknowledged by Kafka: queue full");
      EXPECT_LT(took, std::chrono::milliseconds(200));
    }
    EXPECT_EQ(CounterValue(metrics, "fs_spans_accepted_total", {{"source", "http"}}), 0u);
  }
}

}  // namespace
}  // namespace flamestream::spans
