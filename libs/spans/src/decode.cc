#include "flamestream/spans/decode.h"

#include <cstdint>
#include <string>

#include "decode_internal.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::common::v1::AnyValue;
using opentelemetry::proto::common::v1::KeyValue;
using KeyValues = google::protobuf::RepeatedPtrField<KeyValue>;

// ---------------------------------------------------------------------------------------------
// Attribute value length: cut string and bytes values, after decoding (the request is already
// bounded by the other limits: decode_proto.cc, decode_json.cc).
// ---------------------------------------------------------------------------------------------

// Longest prefix of at most `max` bytes that does not split a UTF-8 character.
size_t Utf8Prefix(const std::string& s, size_t max) {
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

class ValueTruncator {
 public:
  explicit ValueTruncator(uint64_t max) : max_(max) {}
  [[nodiscard]] uint64_t truncated() const { return truncated_; }

  void Request(otlp::ExportTraceServiceRequest* req) {
    // Only through what is present: mutable_*() would add empty messages.
    for (auto& rs : *req->mutable_resource_spans()) {
      if (rs.has_resource()) List(rs.mutable_resource()->mutable_attributes());
      for (auto& ss : *rs.mutable_scope_spans()) {
        if (ss.has_scope()) List(ss.mutable_scope()->mutable_attributes());
        for (auto& span : *ss.mutable_spans()) {
          List(span.mutable_attributes());
          for (auto& e : *span.mutable_events()) List(e.mutable_attributes());
          for (auto& l : *span.mutable_links()) List(l.mutable_attributes());
        }
      }
    }
  }

 private:
  void List(KeyValues* kvs) {
    for (KeyValue& kv : *kvs) {
      if (kv.has_value()) Value(kv.mutable_value());
    }
  }
  void Value(AnyValue* v) {
    switch (v->value_case()) {
      case AnyValue::kStringValue:
        if (v->string_value().size() > max_) {
          v->mutable_string_value()->resize(Utf8Prefix(v->string_value(), max_));
          ++truncated_;
        }
        break;
      case AnyValue::kBytesValue:
        if (v->bytes_value().size() > max_) {
          v->mutable_bytes_value()->resize(max_);
          ++truncated_;
        }
        break;
      case AnyValue::kArrayValue:
        for (AnyValue& e : *v->mutable_array_value()->mutable_values()) Value(&e);
        break;
      case AnyValue::kKvlistValue:
        List(v->mutable_kvlist_value()->mutable_values());
        break;
      default:
        break;
    }
  }

  uint64_t max_;
  uint64_t truncated_ = 0;
};

}  // namespace

namespace internal {

Status LimitError(std::string_view path, std::string_view what) {
  return ResourceExhausted("request refused: {}: {}", path, what);
}

void Truncate(otlp::ExportTraceServiceRequest* req, const DecodeLimits& limits,
              DecodeStats* stats) {
  if (limits.max_attribute_value_length == 0) return;
  ValueTruncator t(limits.max_attribute_value_length);
  t.Request(req);
  if (stats != nullptr) stats->truncated_values += t.truncated();
}

}  // namespace internal

Result<otlp::ExportTraceServiceRequest> DecodeExport(std::string_view bytes, Encoding encoding,
                                                     const DecodeLimits& limits,
                                                     DecodeStats* stats) {
  return encoding == Encoding::kJson ? DecodeJson(bytes, limits, stats)
                                     : DecodeProtobuf(bytes, limits, stats);
}

Encoding SniffEncoding(std::string_view bytes) {
  for (char c : bytes) {
    // Not '\n': 0x0a is the tag of resource_spans, the first byte of nearly every protobuf
    // request (and "\n{" is a valid one: a 123-byte ResourceSpans).
    if (c == ' ' || c == '\t' || c == '\r') continue;
    return c == '{' ? Encoding::kJson : Encoding::kProtobuf;
  }
  return Encoding::kProtobuf;
}

size_t CountSpans(const otlp::ExportTraceServiceRequest& request) {
  size_t n = 0;
  for (const auto& rs : request.resource_spans()) {
    for (const auto& ss : rs.scope_spans()) {
      n += static_cast<size_t>(ss.spans_size());
    }
  }
  return n;
}

}  // namespace flamestream::spans
