// The OTLP/HTTP receiver's handler for POST /v1/traces (libs/spans/src/receivers.cc) after
// cpp-httplib has read the request (httplib's own parsing and its gzip/deflate inflation are
// third-party and not fuzzed here). Input: the Content-Type header value, '\n', the body.
// The harness takes the handler's steps with the library's own functions: MediaType picks
// the encoding (else 415), DecodeExport (else 400 with a google.rpc.Status body, protobuf or
// JSON), the span-count limit (413), SpanRouter::Route with a sink that acknowledges at once
// (placement, id checks, kept attributes), then the response body in the request's encoding.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "flamestream/obs/metrics.h"
#include "flamestream/spans/decode.h"
#include "flamestream/spans/receivers.h"
#include "flamestream/spans/router.h"
#include "fuzz_check.h"

namespace spans = flamestream::spans;
namespace v1 = flamestream::v1;

namespace {

constexpr uint32_t kMaxSpansPerRequest = 100'000;  // ReceiverConfig's default

// Acknowledges every batch at once; checks each is a well-formed KeyedSpan batch.
class AckingSpanWriter : public spans::SpanWriter {
 public:
  void Write(const std::string& key, v1::SpanBatch batch, Done done) override {
    {
      std::lock_guard lock(mu_);
      for (const v1::KeyedSpan& s : batch.spans()) {
        FS_FUZZ_CHECK(spans::SpanKey(s) == key, "span keyed %s in a batch for %s",
                      spans::SpanKey(s).c_str(), key.c_str());
      }
      v1::SpanBatch again;
      FS_FUZZ_CHECK(again.ParseFromString(batch.SerializeAsString()), "SpanBatch does not parse");
      written_ += static_cast<uint64_t>(batch.spans_size());
    }
    done(flamestream::OkStatus());
  }
  uint64_t TakeWritten() {
    std::lock_guard lock(mu_);
    uint64_t n = written_;
    written_ = 0;
    return n;
  }

 private:
  std::mutex mu_;
  uint64_t written_ = 0;
};

struct Router {
  flamestream::obs::Registry metrics;
  AckingSpanWriter sink;
  spans::SpanRouter router{{.default_cluster = "fuzz",
                            .keep_attributes = {"http.route", "service.name", "k8s.pod.name",
                                                "a"},
                            .instance_id = "fuzz"},
                           sink, metrics};
};

Router& TheRouter() {
  static Router* r = new Router();  // never destroyed: its timer thread outlives main()
  return *r;
}

// The error reply: a google.rpc.Status in the request's encoding.
void ReplyError(spans::Encoding encoding, int rpc_code, const std::string& message) {
  if (encoding == spans::Encoding::kJson) {
    const std::string body = spans::JsonErrorBody(rpc_code, message, std::chrono::seconds(0));
    const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    FS_FUZZ_CHECK(j.is_object() && j.contains("message"), "JSON error body: %s", body.c_str());
  } else {
    const std::string body = spans::EncodeRpcStatus(rpc_code, message);
    FS_FUZZ_CHECK(!spans::RetryDelayOf(body).has_value(), "retry delay in a 400 body");
    const std::string retry = spans::EncodeRpcStatus(14, message, std::chrono::seconds(5));
    FS_FUZZ_CHECK(spans::RetryDelayOf(retry) == std::chrono::seconds(5), "RetryInfo lost");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  if (nl == std::string_view::npos) {
    // A body alone: the google.rpc.Status reader clients use on error replies.
    (void)spans::RetryDelayOf(input);
    return 0;
  }
  const std::string content_type(input.substr(0, nl));
  const std::string_view body = input.substr(nl + 1);

  const std::string media = spans::MediaType(content_type);
  spans::Encoding encoding = spans::Encoding::kProtobuf;
  if (media == "application/json") {
    encoding = spans::Encoding::kJson;
  } else if (media != "application/x-protobuf" && media != "application/protobuf") {
    return 0;  // 415
  }

  flamestream::Result<spans::otlp::ExportTraceServiceRequest> req =
      spans::DecodeExport(body, encoding);
  if (!req.ok()) {
    ReplyError(encoding, 3, req.error().message());  // 400 INVALID_ARGUMENT
    return 0;
  }
  const size_t count = spans::CountSpans(*req);
  if (count > kMaxSpansPerRequest) {
    ReplyError(encoding, 8, "too many spans");  // 413 RESOURCE_EXHAUSTED
    return 0;
  }
  Router& r = TheRouter();
  const spans::RouteResult result =
      r.router.Route(*req, v1::SPAN_SOURCE_OTLP_HTTP, std::chrono::seconds(10));
  const uint64_t written = r.sink.TakeWritten();
  FS_FUZZ_CHECK(result.status.ok(), "route: %s", result.status.message().c_str());
  FS_FUZZ_CHECK(result.accepted + result.rejected == count, "%llu accepted + %llu rejected != %zu",
                static_cast<unsigned long long>(result.accepted),
                static_cast<unsigned long long>(result.rejected), count);
  FS_FUZZ_CHECK(written == result.accepted, "%llu spans written, %llu accepted",
                static_cast<unsigned long long>(written),
                static_cast<unsigned long long>(result.accepted));

  spans::otlp::ExportTraceServiceResponse response;
  if (result.rejected > 0) {
    response.mutable_partial_success()->set_rejected_spans(static_cast<int64_t>(result.rejected));
    response.mutable_partial_success()->set_error_message(result.rejection);
  }
  if (encoding == spans::Encoding::kJson) {
    nlohmann::json j = nlohmann::json::object();
    if (response.has_partial_success()) {
      j["partialSuccess"] = {
          {"rejectedSpans", std::to_string(response.partial_success().rejected_spans())},
          {"errorMessage", response.partial_success().error_message()}};
    }
    (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    (void)response.SerializeAsString();
  }
  return 0;
}
