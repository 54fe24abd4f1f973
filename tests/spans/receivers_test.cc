// OTLP/HTTP and OTLP/gRPC receivers against real clients (httplib, grpc++ stubs), with a fake
// sink standing in for Kafka so acknowledgement can be delayed or withheld.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <zlib.h>

#include <future>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "flamestream/common/strings.h"
#include "flamestream/spans/receivers.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::collector::trace::v1::TraceService;
using opentelemetry::proto::trace::v1::Span;

class FakeSink : public SpanWriter {
 public:
  void Write(const std::string& key, v1::SpanBatch batch, Done done) override {
    std::lock_guard lock(mu_);
    for (const auto& s : batch.spans()) keys_.emplace_back(key, s.name());
    if (ack_) {
      done(OkStatus());
    } else {
      held_.push_back(std::move(done));
    }
  }
  void set_ack(bool ack) {
    std::lock_guard lock(mu_);
    ack_ = ack;
  }
  // (key, span name) of every span written.
  std::vector<std::pair<std::string, std::string>> keys() {
    std::lock_guard lock(mu_);
    return keys_;
  }

 private:
  std::mutex mu_;
  bool ack_ = true;
  std::vector<std::pair<std::string, std::string>> keys_;
  std::vector<Done> held_;
};

otlp::ExportTraceServiceRequest Request(int spans, const std::string& host = "node-1") {
  otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  if (!host.empty()) {
    auto* a = rs->mutable_resource()->add_attributes();
    a->set_key("host.name");
    a->mutable_value()->set_string_value(host);
  }
  auto* ss = rs->add_scope_spans();
  for (int i = 0; i < spans; ++i) {
    Span* s = ss->add_spans();
    s->set_trace_id(std::string(16, static_cast<char>(i + 1)));
    s->set_span_id(std::string(8, static_cast<char>(i + 1)));
    s->set_name("op-" + std::to_string(i));
    s->set_start_time_unix_nano(100);
    s->set_end_time_unix_nano(200);
  }
  return req;
}

std::string Gzip(std::string_view data) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&zs, data.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

class ReceiversTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_ = std::make_unique<SpanRouter>(SpanRouterConfig{.default_cluster = "c1"}, sink_,
                                           metrics_);
    ReceiverConfig cfg;
    cfg.grpc_listen = "127.0.0.1:0";
    cfg.http_listen = "127.0.0.1:0";
    cfg.max_body_bytes = 64 * 1024;
    cfg.max_spans_per_request = 100;
    cfg.ack_timeout = std::chrono::milliseconds(300);
    cfg.retry_after = std::chrono::seconds(7);
    auto r = OtlpReceivers::Start(cfg, *router_, metrics_);
    ASSERT_TRUE(r.ok()) << r.error();
    receivers_ = std::move(*r);
    http_ = std::make_unique<httplib::Client>("127.0.0.1", receivers_->http_port());
    channel_ = grpc::CreateChannel(fmt::format("127.0.0.1:{}", receivers_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
  }

  grpc::Status GrpcExport(const otlp::ExportTraceServiceRequest& req,
                          otlp::ExportTraceServiceResponse* resp,
                          grpc::ClientContext* ctx = nullptr) {
    grpc::ClientContext local;
    if (ctx == nullptr) ctx = &local;
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return TraceService::NewStub(channel_)->Export(ctx, req, resp);
  }

  grpc::Status GrpcRaw(const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", {},
                   &request, &response, [&](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  }

  obs::Registry metrics_;
  FakeSink sink_;
  std::unique_ptr<SpanRouter> router_;
  std::unique_ptr<OtlpReceivers> receivers_;
  std::unique_ptr<httplib::Client> http_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ReceiversTest, HttpAcceptsProtobufJsonGzipAndChunkedBodies) {
  const std::string proto = Request(2).SerializeAsString();
  const std::string json = R"({"resourceSpans":[{"resource":{"attributes":[
      {"key":"host.name","value":{"stringValue":"Node-2"}}]},"scopeSpans":[{"spans":[
      {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
       "name":"json-span","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]})";
  struct Case {
    std::string name;
    std::function<httplib::Result()> send;
    std::string content_type;
    std::vector<std::pair<std::string, std::string>> want;
  };
  const std::vector<Case> cases = {
      {"protobuf", [&] { return http_->Post("/v1/traces", proto, "application/x-protobuf"); },
       "application/x-protobuf", {{"c1/node-1", "op-0"}, {"c1/node-1", "op-1"}}},
      {"json", [&] { return http_->Post("/v1/traces", json, "application/json"); },
       "application/json", {{"c1/node-2", "json-span"}}},
      {"gzip protobuf",
       [&] {
         return http_->Post("/v1/traces", {{"Content-Encoding", "gzip"}}, Gzip(proto),
                            "application/x-protobuf");
       },
       "application/x-protobuf", {{"c1/node-1", "op-0"}, {"c1/node-1", "op-1"}}},
      {"chunked gzip json",
       [&] {
         std::string gz = Gzip(json);
         return http_->Post(
             "/v1/traces", {{"Content-Encoding", "gzip"}},
             [gz](size_t offset, httplib::DataSink& sink) {
               // Three chunks, as a streaming exporter writes them.
               if (offset < gz.size()) {
                 const size_t n = std::min<size_t>(gz.size() - offset, gz.size() / 3 + 1);
                 sink.write(gz.data() + offset, n);
               } else {
                 sink.done();
               }
               return true;
             },
             "application/json; charset=utf-8");
       },
       "application/json", {{"c1/node-2", "json-span"}}},
  };
  size_t seen = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    httplib::Result res = c.send();
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), c.content_type);
    if (c.content_type == "application/json") {
      EXPECT_EQ(res->body, "{}");
    } else {
      otlp::ExportTraceServiceResponse resp;
      ASSERT_TRUE(resp.ParseFromString(res->body));
      EXPECT_FALSE(resp.has_partial_success());
    }
    auto keys = sink_.keys();
    ASSERT_EQ(keys.size(), seen + c.want.size());
    EXPECT_EQ(std::vector(keys.begin() + static_cast<long>(seen), keys.end()), c.want);
    seen = keys.size();
  }
}

TEST_F(ReceiversTest, HttpRejectsBadInputWithTheReason) {
  std::string bomb = Gzip(std::string(1 << 20, 'a'));  // 1 MiB inflated, ~1 KiB on the wire
  struct Case {
    std::string name;
    std::string body;
    std::string content_type;
    httplib::Headers headers;
    int status;
    std::string message;  // google.rpc.Status.message (protobuf or JSON body)
  };
  const std::vector<Case> cases = {
      {"garbage protobuf", "\x0f", "application/x-protobuf", {}, 400,
       "invalid ExportTraceServiceRequest protobuf: resource_spans[0]: invalid wire type 7 at "
       "byte 0"},
      {"bad json", R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]})",
       "application/json", {}, 400,
       "invalid OTLP/JSON: resourceSpans[0].scopeSpans[0].spans[0].traceId: \"zz\" is not hex "
       "(OTLP/JSON ids are hex, not base64)"},
      {"too many spans", Request(101).SerializeAsString(), "application/x-protobuf", {}, 413,
       "request refused: resource_spans[0].scope_spans[0].spans[100]: more than 100 spans in "
       "one request (max_spans_per_request)"},
      {"body too large", std::string(70 * 1024, ' '), "application/json", {}, 413,
       "request body exceeds 65536 bytes after decompression (max_body_bytes)"},
      {"gzip bomb", bomb, "application/json", {{"Content-Encoding", "gzip"}}, 413,
       "request body exceeds 65536 bytes after decompression (max_body_bytes)"},
      {"corrupt gzip", "not gzip at all", "application/json", {{"Content-Encoding", "gzip"}},
       400, "cannot read the request body (truncated, or corrupt gzip)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    httplib::Client cli("127.0.0.1", receivers_->http_port());
    httplib::Result res = cli.Post("/v1/traces", c.headers, c.body, c.content_type);
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, c.status) << res->body;
    if (c.content_type == "application/json") {
      auto j = nlohmann::json::parse(res->body);
      EXPECT_EQ(j["message"], c.message);
      EXPECT_EQ(j["code"], c.status == 400 ? 3 : 8);
    } else {
      EXPECT_EQ(res->body, EncodeRpcStatus(c.status == 400 ? 3 : 8, c.message));
    }
  }
  httplib::Result res = http_->Post("/v1/traces", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 415);
  EXPECT_TRUE(sink_.keys().empty());
}

TEST_F(ReceiversTest, HttpReportsPartialSuccessForUnplaceableSpans) {
  otlp::ExportTraceServiceRequest req = Request(1);
  *req.add_resource_spans() = Request(2, /*host=*/"").resource_spans(0);
  httplib::Result res = http_->Post("/v1/traces", req.SerializeAsString(), "application/x-protobuf");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  otlp::ExportTraceServiceResponse resp;
  ASSERT_TRUE(resp.ParseFromString(res->body));
  EXPECT_EQ(resp.partial_success().rejected_spans(), 2);
  EXPECT_EQ(resp.partial_success().error_message(),
            "2 of 3 spans rejected (2 unplaced_no_node_identity); first: resource_spans[1]: span "
            "cannot be placed on a node (no_node_identity): send k8s.node.name or host.name (or "
            "container.id known to an agent)");
  EXPECT_EQ(sink_.keys().size(), 1u);
}

TEST_F(ReceiversTest, HttpAnswers503WithRetryAfterWhenKafkaIsSlow) {
  sink_.set_ack(false);
  for (const std::string type : {"application/x-protobuf", "application/json"}) {
    SCOPED_TRACE(type);
    const std::string body =
        type == "application/json"
            ? R"({"resourceSpans":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"n"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]})"
            : Request(1).SerializeAsString();
    httplib::Result res = http_->Post("/v1/traces", body, type);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 503);
    EXPECT_EQ(res->get_header_value("Retry-After"), "7");
    if (type == "application/json") {
      auto j = nlohmann::json::parse(res->body);
      EXPECT_EQ(j["code"], 14);
      EXPECT_EQ(j["details"][0]["retryDelay"], "7s");
    } else {
      EXPECT_EQ(RetryDelayOf(res->body), std::chrono::seconds(7));
      EXPECT_EQ(res->body, EncodeRpcStatus(14,
                                           "spans not acknowledged by Kafka within the deadline",
                                           std::chrono::seconds(7)));
    }
  }
}

TEST_F(ReceiversTest, GrpcExportsAndRejects) {
  otlp::ExportTraceServiceResponse resp;
  grpc::Status st = GrpcExport(Request(3, "Grpc-Node"), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(resp.has_partial_success());
  EXPECT_EQ(sink_.keys(), (std::vector<std::pair<std::string, std::string>>{
                              {"c1/grpc-node", "op-0"}, {"c1/grpc-node", "op-1"},
                              {"c1/grpc-node", "op-2"}}));

  st = GrpcRaw("\x0f");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(),
            "invalid ExportTraceServiceRequest protobuf: resource_spans[0]: invalid wire type 7 "
            "at byte 0");

  st = GrpcExport(Request(101), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(),
            "request refused: resource_spans[0].scope_spans[0].spans[100]: more than 100 spans "
            "in one request (max_spans_per_request)");

  // Over max_body_bytes: gRPC's own message limit.
  otlp::ExportTraceServiceRequest big = Request(1);
  big.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->set_name(
      std::string(70 * 1024, 'x'));
  st = GrpcExport(big, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // Partial success.
  otlp::ExportTraceServiceRequest mixed = Request(1);
  *mixed.add_resource_spans() = Request(1, "").resource_spans(0);
  st = GrpcExport(mixed, &resp);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(resp.partial_success().rejected_spans(), 1);
  EXPECT_EQ(sink_.keys().size(), 4u);
}

TEST_F(ReceiversTest, GrpcAnswersUnavailableWithRetryInfoWhenKafkaIsSlow) {
  sink_.set_ack(false);
  otlp::ExportTraceServiceResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = GrpcExport(Request(1), &resp, &ctx);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(st.error_message(), "spans not acknowledged by Kafka within the deadline");
  EXPECT_EQ(RetryDelayOf(st.error_details()), std::chrono::seconds(7));
  auto trailer = ctx.GetServerTrailingMetadata().find("retry-after");
  ASSERT_NE(trailer, ctx.GetServerTrailingMetadata().end());
  EXPECT_EQ(std::string(trailer->second.data(), trailer->second.size()), "7");
}

TEST(OtlpReceivers, FailsToStartOnAPortInUse) {
  obs::Registry metrics;
  FakeSink sink;
  SpanRouter router({}, sink, metrics);
  ReceiverConfig cfg;
  cfg.grpc_listen = "";
  cfg.http_listen = "127.0.0.1:0";
  auto first = OtlpReceivers::Start(cfg, router, metrics);
  ASSERT_TRUE(first.ok()) << first.error();
  cfg.http_listen = fmt::format("127.0.0.1:{}", (*first)->http_port());
  auto second = OtlpReceivers::Start(cfg, router, metrics);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), StatusCode::kUnavailable);
  cfg.http_listen = "";
  cfg.grpc_listen = "127.0.0.1:0";
  auto g1 = OtlpReceivers::Start(cfg, router, metrics);
  ASSERT_TRUE(g1.ok()) << g1.error();
  cfg.grpc_listen = fmt::format("127.0.0.1:{}", (*g1)->grpc_port());
  auto g2 = OtlpReceivers::Start(cfg, router, metrics);
  ASSERT_FALSE(g2.ok());
  EXPECT_EQ(g2.error().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace flamestream::spans
