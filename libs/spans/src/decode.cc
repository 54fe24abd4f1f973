#include "flamestream/spans/decode.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include <google/protobuf/descriptor.h>
#include <nlohmann/json.hpp>

#include "flamestream/common/strings.h"

namespace flamestream::spans {
namespace {

using nlohmann::json;
using opentelemetry::proto::common::v1::AnyValue;
using opentelemetry::proto::common::v1::InstrumentationScope;
using opentelemetry::proto::common::v1::KeyValue;
using opentelemetry::proto::resource::v1::Resource;
using opentelemetry::proto::trace::v1::ResourceSpans;
using opentelemetry::proto::trace::v1::ScopeSpans;
using opentelemetry::proto::trace::v1::Span;
using KeyValues = google::protobuf::RepeatedPtrField<KeyValue>;

// AnyValue nests (arrays, key-value lists); protobuf's own parser stops at depth 100.
constexpr int kMaxAnyValueDepth = 64;

// ---------------------------------------------------------------------------------------------
// Protobuf: diagnosis of a buffer ParseFromArray rejected.
// ---------------------------------------------------------------------------------------------

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

class WireDiagnoser {
 public:
  explicit WireDiagnoser(std::string_view all) : all_(all) {}

  // Walks `d`'s message in [begin, end) of the buffer; returns the first problem, or "".
  std::string Walk(const google::protobuf::Descriptor* d, size_t begin, size_t end,
                   const std::string& path, int depth) {
    if (depth > 100) return fmt::format("{}: nested too deeply", Name(path, d));
    std::map<int, int> seen;  // field number -> occurrences so far (repeated index)
    size_t pos = begin;
    while (pos < end) {
      const size_t tag_at = pos;
      uint64_t tag = 0;
      if (!Varint(pos, end, &tag)) {
        return fmt::format("{}: truncated or overlong tag varint at byte {}", Name(path, d),
                           tag_at);
      }
      const uint64_t number = tag >> 3;
      const int wire = static_cast<int>(tag & 7);
      if (number == 0 || number > 536870911) {
        return fmt::format("{}: invalid field number {} at byte {}", Name(path, d), number,
                           tag_at);
      }
      const google::protobuf::FieldDescriptor* f =
          d == nullptr ? nullptr : d->FindFieldByNumber(static_cast<int>(number));
      std::string fpath = FieldPath(path, d, f, static_cast<int>(number), seen);
      switch (wire) {
        case 0: {
          uint64_t v = 0;
          const size_t at = pos;
          if (!Varint(pos, end, &v)) {
            return fmt::format("{}: truncated varint at byte {}", fpath, at);
          }
          break;
        }
        case 1:
          if (end - pos < 8) return fmt::format("{}: truncated fixed64 at byte {}", fpath, pos);
          pos += 8;
          break;
        case 5:
          if (end - pos < 4) return fmt::format("{}: truncated fixed32 at byte {}", fpath, pos);
          pos += 4;
          break;
        case 2: {
          const size_t len_at = pos;
          uint64_t len = 0;
          if (!Varint(pos, end, &len)) {
            return fmt::format("{}: truncated length at byte {}", fpath, len_at);
          }
          if (len > end - pos) {
            return fmt::format("{}: length {} at byte {} exceeds the {} bytes left", fpath, len,
                               len_at, end - pos);
          }
          if (f != nullptr && f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
            std::string inner = Walk(f->message_type(), pos, pos + len, fpath, depth + 1);
            if (!inner.empty()) return inner;
          } else if (f != nullptr &&
                     f->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
                     !ValidUtf8(all_.substr(pos, len))) {
            return fmt::format("{}: string at byte {} is not valid UTF-8", fpath, pos);
          }
          pos += len;
          break;
        }
        case 3:
        case 4:
          return fmt::format("{}: group wire type {} at byte {} (not used by OTLP)", fpath, wire,
                             tag_at);
        default:
          return fmt::format("{}: invalid wire type {} at byte {}", fpath, wire, tag_at);
      }
    }
    return "";
  }

 private:
  static std::string Name(const std::string& path, const google::protobuf::Descriptor* d) {
    if (!path.empty()) return path;
    return d == nullptr ? "message" : d->name();
  }

  static std::string FieldPath(const std::string& path, const google::protobuf::Descriptor* d,
                               const google::protobuf::FieldDescriptor* f, int number,
                               std::map<int, int>& seen) {
    std::string prefix = path.empty() ? "" : path + ".";
    if (f == nullptr) {
      return fmt::format("{}<unknown field {} of {}>", prefix, number,
                         d == nullptr ? "?" : d->name());
    }
    if (f->is_repeated()) {
      return fmt::format("{}{}[{}]", prefix, f->name(), seen[number]++);
    }
    return prefix + f->name();
  }

  bool Varint(size_t& pos, size_t end, uint64_t* out) const {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) return false;
      const auto b = static_cast<uint8_t>(all_[pos++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        *out = v;
        return true;
      }
    }
    return false;
  }

  std::string_view all_;
};

// ---------------------------------------------------------------------------------------------
// OTLP/JSON walker.
// ---------------------------------------------------------------------------------------------

std::string_view TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

// Matches a JSON key against the lowerCamelCase name and the proto field name.
bool Is(const std::string& key, std::string_view camel, std::string_view snake = {}) {
  return key == camel || (!snake.empty() && key == snake);
}

class JsonWalker {
 public:
  Status Request(const json& j, otlp::ExportTraceServiceRequest* out) {
    return Fields(j, "", [&](const auto& key, const json& v, const std::string& p) {
      if (!Is(key, "resourceSpans", "resource_spans")) return OkStatus();
      return Array(v, p, [&](const json& e, const std::string& ep) {
        return ResourceSpansOf(e, ep, out->add_resource_spans());
      });
    });
  }

 private:
  static Status Bad(const std::string& path, std::string_view what) {
    return InvalidArgument("{}{}{}", path, path.empty() ? "" : ": ", what);
  }
  static std::string Child(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  template <typename Fn>
  Status Array(const json& v, const std::string& path, Fn&& each) {
    if (!v.is_array()) return Bad(path, fmt::format("expected an array, got {}", TypeName(v)));
    size_t i = 0;
    for (const json& e : v) {
      FS_RETURN_IF_ERROR(each(e, fmt::format("{}[{}]", path, i++)));
    }
    return OkStatus();
  }

  static Status Object(const json& v, const std::string& path) {
    if (!v.is_object()) return Bad(path, fmt::format("expected an object, got {}", TypeName(v)));
    return OkStatus();
  }

  // Calls each(key, value, path) for an object's non-null members: the loop every OTLP/JSON
  // message decoder below shares (null means "absent" in proto3 JSON).
  template <typename Fn>
  static Status Fields(const json& j, const std::string& path, Fn&& each) {
    FS_RETURN_IF_ERROR(Object(j, path));
    for (const auto& [key, v] : j.items()) {
      if (v.is_null()) continue;
      FS_RETURN_IF_ERROR(each(key, v, Child(path, key)));
    }
    return OkStatus();
  }

  // A uint32 member stored through a setter (dropped counts, flags).
  template <typename Set>
  static Status Uint32Into(const json& v, const std::string& path, Set&& set) {
    uint32_t n = 0;
    FS_RETURN_IF_ERROR(Uint32(v, path, &n));
    set(n);
    return OkStatus();
  }

  static Status String(const json& v, const std::string& path, std::string* out) {
    if (!v.is_string()) return Bad(path, fmt::format("expected a string, got {}", TypeName(v)));
    *out = v.get<std::string>();
    return OkStatus();
  }

  // uint64 as a number or a decimal string (proto3 JSON writes 64-bit integers as strings).
  static Status Uint64(const json& v, const std::string& path, uint64_t* out) {
    if (v.is_number_unsigned()) {
      *out = v.get<uint64_t>();
      return OkStatus();
    }
    if (v.is_number_integer()) {
      if (v.get<int64_t>() < 0) return Bad(path, "must not be negative");
      *out = static_cast<uint64_t>(v.get<int64_t>());
      return OkStatus();
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (d < 0 || d != std::floor(d) || d >= 18446744073709551616.0) {
        return Bad(path, fmt::format("{} is not an unsigned integer", v.dump()));
      }
      *out = static_cast<uint64_t>(d);
      return OkStatus();
    }
    if (v.is_string()) {
      auto r = common::ParseInt<uint64_t>(v.get<std::string>());
      if (!r.ok()) return Bad(path, r.error().message());
      *out = *r;
      return OkStatus();
    }
    return Bad(path, fmt::format("expected an integer or a decimal string, got {}", TypeName(v)));
  }

  static Status Int64(const json& v, const std::string& path, int64_t* out) {
    if (v.is_number_integer() && !v.is_number_unsigned()) {
      *out = v.get<int64_t>();
      return OkStatus();
    }
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Bad(path, "out of int64 range");
      }
      *out = static_cast<int64_t>(v.get<uint64_t>());
      return OkStatus();
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (d != std::floor(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0) {
        return Bad(path, fmt::format("{} is not an integer", v.dump()));
      }
      *out = static_cast<int64_t>(d);
      return OkStatus();
    }
    if (v.is_string()) {
      auto r = common::ParseInt<int64_t>(v.get<std::string>());
      if (!r.ok()) return Bad(path, r.error().message());
      *out = *r;
      return OkStatus();
    }
    return Bad(path, fmt::format("expected an integer or a decimal string, got {}", TypeName(v)));
  }

  static Status Uint32(const json& v, const std::string& path, uint32_t* out) {
    uint64_t u = 0;
    FS_RETURN_IF_ERROR(Uint64(v, path, &u));
    if (u > std::numeric_limits<uint32_t>::max()) return Bad(path, "out of uint32 range");
    *out = static_cast<uint32_t>(u);
    return OkStatus();
  }

  // Trace and span ids: hex in OTLP/JSON. Length is checked by the router (per span), so a
  // protobuf and a JSON request with the same wrong id get the same answer.
  static Status HexId(const json& v, const std::string& path, std::string* out) {
    if (!v.is_string()) {
      return Bad(path, fmt::format("expected a hex string, got {}", TypeName(v)));
    }
    const auto& s = v.get_ref<const std::string&>();
    auto bytes = common::HexDecode(s);
    if (!bytes.ok()) {
      return Bad(path, fmt::format("\"{}\" is not hex (OTLP/JSON ids are hex, not base64)",
                                   s.size() > 64 ? s.substr(0, 64) + "..." : s));
    }
    *out = std::move(*bytes);
    return OkStatus();
  }

  template <typename E>
  static Status Enum(const json& v, const std::string& path, bool (*parse)(const std::string&, E*),
                     int* out) {
    if (v.is_string()) {
      E e{};
      if (!parse(v.get<std::string>(), &e)) {
        return Bad(path, fmt::format("unknown enum name \"{}\"", v.get<std::string>()));
      }
      *out = static_cast<int>(e);
      return OkStatus();
    }
    int64_t n = 0;
    FS_RETURN_IF_ERROR(Int64(v, path, &n));
    if (n < std::numeric_limits<int32_t>::min() || n > std::numeric_limits<int32_t>::max()) {
      return Bad(path, "enum value out of int32 range");
    }
    *out = static_cast<int>(n);  // proto3 enums are open: unknown numbers are kept
    return OkStatus();
  }

  Status ResourceSpansOf(const json& j, const std::string& path, ResourceSpans* out) {
    return Fields(j, path, [&](const auto& key, const json& v, const std::string& p) {
      if (Is(key, "resource")) {
        FS_RETURN_IF_ERROR(ResourceOf(v, p, out->mutable_resource()));
      } else if (Is(key, "scopeSpans", "scope_spans")) {
        FS_RETURN_IF_ERROR(Array(v, p, [&](const json& e, const std::string& ep) {
          return ScopeSpansOf(e, ep, out->add_scope_spans());
        }));
      } else if (Is(key, "schemaUrl", "schema_url")) {
        FS_RETURN_IF_ERROR(String(v, p, out->mutable_schema_url()));
      }
      return OkStatus();
    });
  }

  Status ResourceOf(const json& j, const std::string& path, Resource* out) {
    return Fields(j, path, [&](const auto& key, const json& v, const std::string& p) {
      if (Is(key, "attributes")) {
        FS_RETURN_IF_ERROR(Attributes(v, p, out->mutable_attributes()));
      } else if (Is(key, "droppedAttributesCount", "dropped_attributes_count")) {
        FS_RETURN_IF_ERROR(
            Uint32Into(v, p, [&](uint32_t n) { out->set_dropped_attributes_count(n); }));
      }
      return OkStatus();
    });
  }

  Status ScopeSpansOf(const json& j, const std::string& path, ScopeSpans* out) {
    return Fields(j, path, [&](const auto& key, const json& v, const std::string& p) {
      if (Is(key, "scope")) {
        FS_RETURN_IF_ERROR(ScopeOf(v, p, out->mutable_scope()));
      } else if (Is(key, "spans")) {
        FS_RETURN_IF_ERROR(Array(v, p, [&](const json& e, const std::string& ep) {
          return SpanOf(e, ep, out->add_spans());
        }));
      } else if (Is(key, "schemaUrl", "schema_url")) {
        FS_RETURN_IF_ERROR(String(v, p, out->mutable_schema_url()));
      }
      return OkStatus();
    });
  }

  Status ScopeOf(const json& j, const std::string& path, InstrumentationScope* out) {
    return Fields(j, path, [&](const auto& key, const json& v, const std::string& p) {
      if (Is(key, "name")) {
        FS_RETURN_IF_ERROR(String(v, p, out->mutable_name()));
      } else if (Is(key, "version")) {
        FS_RETURN_IF_ERROR(String(v, p, out->mutable_version()));
      } else if (Is(key, "attributes")) {
        FS_RETURN_IF_ERROR(Attributes(v, p, out->mutable_attributes()));
      } else if (Is(key, "droppedAttributesCount", "dropped_attributes_count")) {
        FS_RETURN_IF_ERROR(
            Uint32Into(v, p, [&](uint32_t n) { out->set_dropped_attributes_count(n); }));
      }
      return OkStatus();
    });
  }

  Status SpanOf(const json& j, const std::string& path, Span* out) {
    return Fields(j, path, [&](const auto& key, const json& v, const std::string& p) {
      if (Is(key, "traceId", "trace_id")) {
        FS_RETURN_IF_ERROR(HexId(v, p, out->mutable_trace_id()));
      } else if (Is(key, "spanId", "span_id")) {
        FS_RETURN_IF_ERROR(HexId(v, p, out->mutable_span_id()));
      } else if (Is(key, "parentSpanId", "parent_span_id")) {
        FS_RETURN_IF_ERROR(HexId(v, p, out->mutable_parent_span_id()));
      } else if (Is(key, "traceState", "trace_state")) {
        FS_RETURN_IF_ERROR(String(v, p, out->mutable_trace_state()));
      } else if (Is(key, "name")) {
        FS_RETURN_IF_ERROR(String(v, p, out->mutable_name()));
      } else if (Is(key, "kind")) {
        int kind = 0;
        FS_RETURN_IF_ERROR(Enum<Span::SpanKind>(v, p, &Span::SpanKind_Parse, &kind));
        out->set_kind(static_cast<Span::SpanKind>(kind));
      } else if (Is(key, "startTimeUnixNano", "start_time_unix_nano")) {
        uint64_t t = 0;
        FS_RETURN_IF_ERROR(Uint64(v, p, &t));
        out->set_start_time_unix_nano(t);
      } else if (Is(key, "endTimeUnixNano", "end_time_unix_nano")) {
        uint64_t t = 0;
        FS_RETURN_IF_ERROR(Uint64(v, p, &t));
        out->set_end_time_unix_nano(t);
      } else if (Is(key, "attributes")) {
        FS_RETURN_IF_ERROR(Attributes(v, p, out->mutable_attributes()));
      } else if (Is(key, "droppedAttributesCount", "dropped_attributes_count")) {
        FS_RETURN_IF_ERROR(
            Uint32Into(v, p, [&](uint32_t n) { out->set_dropped_attributes_count(n); }));
      } else if (Is(key, "flags")) {
        FS_RETURN_IF_ERROR(Uint32Into(v, p, [&](uint32_t n) { out->set_flags(n); }));
      } else if (Is(key, "status")) {
        using SpanStatus = opentelemetry::proto::trace::v1::Status;
        FS_RETURN_IF_ERROR(
            Fields(v, p, [&](const auto& skey, const json& sv, const std::string& sp) {
              if (Is(skey, "message")) {
                return String(sv, sp, out->mutable_status()->mutable_message());
              }
              if (!Is(skey, "code")) return OkStatus();
              int code = 0;
              FS_RETURN_IF_ERROR(
                  Enum<SpanStatus::StatusCode>(sv, sp, &SpanStatus::StatusCode_Parse, &code));
              out->mutable_status()->set_code(static_cast<SpanStatus::StatusCode>(code));
              return OkStatus();
            }));
      }
      // events, links and their dropped counts: not kept by the router.
      return OkStatus();
    });
  }

  Status Attributes(const json& v, const std::string& path, KeyValues* out) {
    return Array(v, path, [&](const json& e, const std::string& p) {
      return KeyValueOf(e, p, out->Add(), 0);
    });
  }

  Status KeyValueOf(const json& j, const std::string& path, KeyValue* out, int depth) {
    return Fields(j, path, [&](const auto& key, const json& v, const std::string& p) {
      if (Is(key, "key")) {
        FS_RETURN_IF_ERROR(String(v, p, out->mutable_key()));
      } else if (Is(key, "value")) {
        FS_RETURN_IF_ERROR(AnyValueOf(v, p, out->mutable_value(), depth + 1));
      }
      return OkStatus();
    });
  }

  Status AnyValueOf(const json& j, const std::string& path, AnyValue* out, int depth) {
    if (depth > kMaxAnyValueDepth) return Bad(path, "attribute value nested too deeply");
    return Fields(j, path, [&](const auto& key, const json& v, const std::string& p) {
      if (Is(key, "stringValue", "string_value")) {
        FS_RETURN_IF_ERROR(String(v, p, out->mutable_string_value()));
      } else if (Is(key, "boolValue", "bool_value")) {
        if (!v.is_boolean()) {
          return Bad(p, fmt::format("expected a boolean, got {}", TypeName(v)));
        }
        out->set_bool_value(v.get<bool>());
      } else if (Is(key, "intValue", "int_value")) {
        int64_t n = 0;
        FS_RETURN_IF_ERROR(Int64(v, p, &n));
        out->set_int_value(n);
      } else if (Is(key, "doubleValue", "double_value")) {
        FS_RETURN_IF_ERROR(Double(v, p, out));
      } else if (Is(key, "bytesValue", "bytes_value")) {
        std::string s;
        FS_RETURN_IF_ERROR(String(v, p, &s));
        // bytesValue is base64 (only ids are hex); we keep attributes as text, so validate
        // loosely and keep the text rather than pull in a base64 decoder.
        out->set_bytes_value(std::move(s));
      } else if (Is(key, "arrayValue", "array_value")) {
        FS_RETURN_IF_ERROR(Object(v, p));
        auto* arr = out->mutable_array_value();
        if (auto it = v.find("values"); it != v.end() && !it->is_null()) {
          FS_RETURN_IF_ERROR(
              Array(*it, Child(p, "values"), [&](const json& e, const std::string& ep) {
                return AnyValueOf(e, ep, arr->add_values(), depth + 1);
              }));
        }
      } else if (Is(key, "kvlistValue", "kvlist_value")) {
        FS_RETURN_IF_ERROR(Object(v, p));
        auto* kvl = out->mutable_kvlist_value();
        if (auto it = v.find("values"); it != v.end() && !it->is_null()) {
          FS_RETURN_IF_ERROR(
              Array(*it, Child(p, "values"), [&](const json& e, const std::string& ep) {
                return KeyValueOf(e, ep, kvl->add_values(), depth + 1);
              }));
        }
      }
      return OkStatus();
    });
  }

  static Status Double(const json& v, const std::string& path, AnyValue* out) {
    if (v.is_number()) {
      out->set_double_value(v.get<double>());
      return OkStatus();
    }
    if (v.is_string()) {
      const auto& s = v.get_ref<const std::string&>();
      if (s == "NaN") {
        out->set_double_value(std::numeric_limits<double>::quiet_NaN());
      } else if (s == "Infinity") {
        out->set_double_value(std::numeric_limits<double>::infinity());
      } else if (s == "-Infinity") {
        out->set_double_value(-std::numeric_limits<double>::infinity());
      } else {
        size_t used = 0;
        double d = 0;
        try {
          d = std::stod(s, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != s.size()) {
          return Bad(path, fmt::format("\"{}\" is not a number", s));
        }
        out->set_double_value(d);
      }
      return OkStatus();
    }
    return Bad(path, fmt::format("expected a number, got {}", TypeName(v)));
  }
};

}  // namespace

Result<otlp::ExportTraceServiceRequest> DecodeProtobuf(std::string_view bytes) {
  otlp::ExportTraceServiceRequest req;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return InvalidArgument("protobuf body of {} bytes is too large", bytes.size());
  }
  if (req.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return req;
  }
  WireDiagnoser diag(bytes);
  std::string where = diag.Walk(otlp::ExportTraceServiceRequest::descriptor(), 0, bytes.size(),
                                "", 0);
  if (where.empty()) {
    where = "the message does not parse (no structural error found)";
  }
  return InvalidArgument("invalid ExportTraceServiceRequest protobuf: {}", where);
}

Result<otlp::ExportTraceServiceRequest> DecodeJson(std::string_view text) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    // e.what(): "[json.exception.parse_error.101] parse error at line 1, column 7: ..."
    std::string what = e.what();
    if (const size_t close = what.find("] "); close != std::string::npos) {
      what = what.substr(close + 2);
    }
    return InvalidArgument("invalid OTLP/JSON: {}", what);
  }
  otlp::ExportTraceServiceRequest req;
  JsonWalker walker;
  Status st = walker.Request(doc, &req);
  if (!st.ok()) {
    return InvalidArgument("invalid OTLP/JSON: {}", st.message());
  }
  return req;
}

Result<otlp::ExportTraceServiceRequest> DecodeExport(std::string_view bytes, Encoding encoding) {
  return encoding == Encoding::kJson ? DecodeJson(bytes) : DecodeProtobuf(bytes);
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
