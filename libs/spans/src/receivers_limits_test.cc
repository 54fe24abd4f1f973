// The receivers' limits through real HTTP and gRPC clients: a gzip bomb is refused with 413
// at the decompressed cap (streamed, never inflated whole), requests over a decode limit get
// 413 / RESOURCE_EXHAUSTED with the reason, and every refusal is counted by reason.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/resource.h>
#include <zlib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "flamestream/spans/counting_writer.h"
#include "flamestream/spans/receivers.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::collector::trace::v1::TraceService;
using opentelemetry::proto::trace::v1::Span;

// `inflated` zero bytes, gzip-compressed as a stream (the test never holds them inflated).
std::string GzipZeros(size_t inflated) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
  const std::string zeros(1 << 20, '\0');
  std::string out;
  std::string buf(1 << 16, '\0');
  size_t left = inflated;
  int flush = Z_NO_FLUSH;
  do {
    if (zs.avail_in == 0 && left > 0) {
      const size_t n = std::min(left, zeros.size());
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zeros.data()));
      zs.avail_in = static_cast<uInt>(n);
      left -= n;
    }
    flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    zs.next_out = reinterpret_cast<Bytef*>(buf.data());
    zs.avail_out = static_cast<uInt>(buf.size());
    const int rc = deflate(&zs, flush);
    EXPECT_NE(rc, Z_STREAM_ERROR);
    out.append(buf.data(), buf.size() - zs.avail_out);
    if (rc == Z_STREAM_END) break;
  } while (true);
  deflateEnd(&zs);
  return out;
}

long MaxRssKiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

otlp::ExportTraceServiceRequest Request(int spans, int attributes) {
  otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto* a = rs->mutable_resource()->add_attributes();
  a->set_key("host.name");
  a->mutable_value()->set_string_value("node-1");
  auto* ss = rs->add_scope_spans();
  for (int i = 0; i < spans; ++i) {
    Span* s = ss->add_spans();
    s->set_trace_id(std::string(16, static_cast<char>(i + 1)));
    s->set_span_id(std::string(8, static_cast<char>(i + 1)));
    s->set_name("op");
    for (int k = 0; k < attributes; ++k) {
      auto* kv = s->add_attributes();
      kv->set_key("k" + std::to_string(k));
      kv->mutable_value()->set_string_value(std::string(100, 'v'));
    }
  }
  return req;
}

class ReceiverLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_ =
        std::make_unique<SpanRouter>(SpanRouterConfig{.default_cluster = "c1"}, sink_, metrics_);
    ReceiverConfig cfg;
    cfg.grpc_listen = "127.0.0.1:0";
    cfg.http_listen = "127.0.0.1:0";
    cfg.max_body_bytes = 8ull << 20;
    cfg.max_spans_per_request = 50;
    cfg.max_attributes = 4;
    cfg.max_attribute_value_length = 10;
    auto r = OtlpReceivers::Start(cfg, *router_, metrics_);
    ASSERT_TRUE(r.ok()) << r.error();
    receivers_ = std::move(*r);
  }

  uint64_t Refused(const std::string& source, const std::string& reason) {
    return metrics_.Counter("fs_spans_refused_total", "", {{"source", source}, {"reason", reason}})
        .value();
  }

  obs::Registry metrics_;
  testing::CountingSpanWriter sink_;
  std::unique_ptr<SpanRouter> router_;
  std::unique_ptr<OtlpReceivers> receivers_;
};

TEST_F(ReceiverLimitsTest, GzipBombIsRefusedAtTheDecompressedCap) {
  // 1 GiB of zeros is ~1 MiB gzipped: under max_request_size (4 MiB) on the wire.
  const std::string bomb = GzipZeros(1ull << 30);
  ASSERT_LT(bomb.size(), 4u << 20);
  const long before = MaxRssKiB();
  httplib::Client cli("127.0.0.1", receivers_->http_port());
  cli.set_read_timeout(std::chrono::seconds(30));
  httplib::Result res =
      cli.Post("/v1/traces", {{"Content-Encoding", "gzip"}}, bomb, "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 413);
  auto j = nlohmann::json::parse(res->body);
  EXPECT_EQ(j["code"], 8);
  EXPECT_EQ(j["message"],
            "request body exceeds 8388608 bytes after decompression (max_body_bytes)");
  EXPECT_EQ(Refused("http", "body_too_large"), 1u);
  const long grown_mib = (MaxRssKiB() - before) / 1024;
  EXPECT_LT(grown_mib, 200) << "peak RSS grew by " << grown_mib << " MiB";
  EXPECT_EQ(sink_.spans(), 0u);
}

TEST_F(ReceiverLimitsTest, HttpRefusesOverLimitRequestsWithTheReason) {
  struct Case {
    std::string name;
    std::string body;
    std::string type;
    std::string reason;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"too many spans (protobuf)", Request(51, 0).SerializeAsString(), "application/x-protobuf",
       "too_many_spans",
       "request refused: resource_spans[0].scope_spans[0].spans[50]: more than 50 spans in one "
       "request (max_spans_per_request)"},
      {"too many attributes (json)",
       R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"a"},{"key":"b"},{"key":"c"},{"key":"d"},{"key":"e"}]}]}]}]})",
       "application/json", "too_many_attributes",
       "request refused: resourceSpans[0].scopeSpans[0].spans[0].attributes[4]: more than 4 "
       "attributes in one list (max_attributes)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    httplib::Client cli("127.0.0.1", receivers_->http_port());
    httplib::Result res = cli.Post("/v1/traces", c.body, c.type);
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 413);
    if (c.type == "application/json") {
      auto j = nlohmann::json::parse(res->body);
      EXPECT_EQ(j["code"], 8);
      EXPECT_EQ(j["message"], c.message);
    } else {
      EXPECT_EQ(res->body, EncodeRpcStatus(8, c.message));
    }
    EXPECT_EQ(Refused("http", c.reason), 1u);
  }
  EXPECT_EQ(sink_.spans(), 0u);

  // Within the limits: accepted, long values cut to max_attribute_value_length.
  httplib::Client cli("127.0.0.1", receivers_->http_port());
  httplib::Result res =
      cli.Post("/v1/traces", Request(50, 4).SerializeAsString(), "application/x-protobuf");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(sink_.spans(), 50u);
  EXPECT_EQ(metrics_.Counter("fs_spans_truncated_values_total", "", {{"source", "http"}}).value(),
            200u);
}

TEST_F(ReceiverLimitsTest, GrpcRefusesOverLimitRequestsWithResourceExhausted) {
  auto channel = grpc::CreateChannel(fmt::format("127.0.0.1:{}", receivers_->grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto export_ = [&](const otlp::ExportTraceServiceRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    otlp::ExportTraceServiceResponse resp;
    return TraceService::NewStub(channel)->Export(&ctx, req, &resp);
  };
  grpc::Status st = export_(Request(1, 5));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(),
            "request refused: resource_spans[0].scope_spans[0].spans[0].attributes[4]: more "
            "than 4 attributes in one list (max_attributes)");
  EXPECT_EQ(Refused("grpc", "too_many_attributes"), 1u);

  otlp::ExportTraceServiceRequest long_name = Request(1, 0);
  long_name.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->set_name(
      std::string(2000, 'n'));
  st = export_(long_name);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(),
            "request refused: resource_spans[0].scope_spans[0].spans[0].name: 2000 bytes, longer "
            "than 1024 (max_name_length)");
  EXPECT_EQ(Refused("grpc", "name_too_long"), 1u);

  // Undecodable stays INVALID_ARGUMENT, counted as "invalid".
  otlp::ExportTraceServiceRequest bad_utf8 = Request(1, 0);
  bad_utf8.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->set_name("caf\xc3");
  st = export_(bad_utf8);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Refused("grpc", "invalid"), 1u);

  EXPECT_TRUE(export_(Request(2, 1)).ok());
  EXPECT_EQ(sink_.spans(), 2u);
}

}  // namespace
}  // namespace flamestream::spans
