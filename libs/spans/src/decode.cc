#include "flamestream/spans/decode.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

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

// ---------------------------------------------------------------------------------------------
// Limits, protobuf: a scan of the wire bytes before ParseFromArray. It allocates nothing but
// the path it is at, and stops at the first limit crossed. Structural errors end the scan
// quietly: the parser then fails at the same place (everything before it was within limits)
// and WireDiagnoser names it.
// ---------------------------------------------------------------------------------------------

Status LimitError(std::string_view path, std::string_view what) {
  return ResourceExhausted("request refused: {}: {}", path, what);
}

class LimitScanner {
 public:
  LimitScanner(std::string_view all, const DecodeLimits& limits) : all_(all), limits_(limits) {}

  Status Scan(std::string* reason) {
    Status st = Walk(otlp::ExportTraceServiceRequest::descriptor(), 0, all_.size(), 0);
    if (!st.ok()) *reason = reason_;
    return st;
  }

 private:
  struct Step {
    const google::protobuf::FieldDescriptor* field;
    uint64_t index;
  };

  std::string Path(const google::protobuf::FieldDescriptor* f, uint64_t index,
                   bool indexed) const {
    std::string out = Here();
    out += f->name();
    if (indexed) out += fmt::format("[{}]", index);
    return out;
  }

  // The path of the message being walked, with a trailing '.' ("" at the top).
  std::string Here() const {
    std::string out;
    for (const Step& s : path_) {
      out += s.field->name();
      if (s.field->is_repeated()) out += fmt::format("[{}]", s.index);
      out += '.';
    }
    return out;
  }

  Status Refuse(std::string reason, std::string path, std::string what) {
    reason_ = std::move(reason);
    return LimitError(path, what);
  }

  Status Walk(const google::protobuf::Descriptor* d, size_t begin, size_t end, int depth) {
    if (depth > 100) return OkStatus();  // the parser refuses it
    // Occurrences of each repeated field in this message (OTLP field numbers are < 32).
    std::array<uint64_t, 32> seen{};
    size_t pos = begin;
    while (pos < end) {
      uint64_t tag = 0;
      if (!Varint(pos, end, &tag)) return OkStatus();
      const uint64_t number = tag >> 3;
      const int wire = static_cast<int>(tag & 7);
      const google::protobuf::FieldDescriptor* f =
          number == 0 || number > 536870911 ? nullptr
                                            : d->FindFieldByNumber(static_cast<int>(number));
      size_t len = 0;
      switch (wire) {
        case 0: {
          uint64_t v = 0;
          if (!Varint(pos, end, &v)) return OkStatus();
          break;
        }
        case 1: len = 8; break;
        case 5: len = 4; break;
        case 2: {
          uint64_t l = 0;
          if (!Varint(pos, end, &l) || l > end - pos) return OkStatus();
          len = static_cast<size_t>(l);
          break;
        }
        default: return OkStatus();
      }
      if (end - pos < len) return OkStatus();
      if (f != nullptr && wire != WireTypeOf(f)) f = nullptr;  // the parser keeps it as unknown
      if (f == nullptr) {
        // Kept by the parser in the unknown field set: one more thing materialized.
        if (limits_.max_elements != 0 && ++elements_ > limits_.max_elements) {
          return Refuse("too_many_elements",
                        fmt::format("{}<unknown field {} of {}>", Here(), number, d->name()),
                        ElementsWhat());
        }
      } else if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
        uint64_t index = 0;
        if (f->is_repeated()) {
          index = number < seen.size() ? seen[number]++ : 0;
          const google::protobuf::Descriptor* m = f->message_type();
          if (m == Span::descriptor() && limits_.max_spans != 0 &&
              ++spans_ > limits_.max_spans) {
            return Refuse("too_many_spans", Path(f, index, true),
                          fmt::format("more than {} spans in one request (max_spans_per_request)",
                                      limits_.max_spans));
          }
          if ((m == KeyValue::descriptor() || m == AnyValue::descriptor()) &&
              limits_.max_attributes != 0 && index >= limits_.max_attributes) {
            return Refuse("too_many_attributes", Path(f, index, true),
                          fmt::format("more than {} {} (max_attributes)", limits_.max_attributes,
                                      m == KeyValue::descriptor() ? "attributes in one list"
                                                                  : "values in one array"));
          }
          if (limits_.max_elements != 0 && ++elements_ > limits_.max_elements) {
            return Refuse("too_many_elements", Path(f, index, true), ElementsWhat());
          }
        }
        path_.push_back({f, index});
        Status st = Walk(f->message_type(), pos, pos + len, depth + 1);
        path_.pop_back();
        if (!st.ok()) return st;
      } else if (f->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
                 (f->name() == "name" || f->name() == "key") && limits_.max_name_length != 0 &&
                 len > limits_.max_name_length) {
        return Refuse("name_too_long", Path(f, 0, false),
                      fmt::format("{} bytes, longer than {} (max_name_length)", len,
                                  limits_.max_name_length));
      }
      pos += len;
    }
    return OkStatus();
  }

  static int WireTypeOf(const google::protobuf::FieldDescriptor* f) {
    using FD = google::protobuf::FieldDescriptor;
    switch (f->type()) {
      case FD::TYPE_MESSAGE:
      case FD::TYPE_STRING:
      case FD::TYPE_BYTES: return 2;
      case FD::TYPE_DOUBLE:
      case FD::TYPE_FIXED64:
      case FD::TYPE_SFIXED64: return 1;
      case FD::TYPE_FLOAT:
      case FD::TYPE_FIXED32:
      case FD::TYPE_SFIXED32: return 5;
      default: return 0;
    }
  }

  std::string ElementsWhat() const {
    return fmt::format(
        "more than {} spans, events, links, attributes and values in one request "
        "(max_elements_per_request)",
        limits_.max_elements);
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
  const DecodeLimits& limits_;
  std::vector<Step> path_;
  uint64_t spans_ = 0;
  uint64_t elements_ = 0;
  std::string reason_;
};

// ---------------------------------------------------------------------------------------------
// Limits, OTLP/JSON: a SAX handler that builds the nlohmann tree the walker reads, keeping only
// what the walker looks at (unknown keys, span events and links are dropped unbuilt; so are
// the children of a value of the wrong type, which the walker refuses by its type alone) and
// checking the limits on the way.
// ---------------------------------------------------------------------------------------------

class LimitedJsonBuilder {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  explicit LimitedJsonBuilder(const DecodeLimits& limits) : limits_(limits) {}

  json& root() { return root_; }
  [[nodiscard]] const Status& error() const { return error_; }
  [[nodiscard]] const std::string& reason() const { return reason_; }

  bool null() { return Scalar(json(nullptr)); }
  bool boolean(bool v) { return Scalar(json(v)); }
  bool number_integer(number_integer_t v) { return Scalar(json(v)); }
  bool number_unsigned(number_unsigned_t v) { return Scalar(json(v)); }
  bool number_float(number_float_t v, const string_t& /*text*/) { return Scalar(json(v)); }
  bool binary(binary_t& v) { return Scalar(json::binary(std::move(v))); }
  bool string(string_t& v) {
    if (skip_ == 0 && !stack_.empty() && stack_.back().node != nullptr &&
        stack_.back().node->is_object() && !key_skip_ && limits_.max_name_length != 0 &&
        v.size() > limits_.max_name_length) {
      const Kind k = stack_.back().kind;
      if (((k == Kind::kSpan || k == Kind::kScope) && key_ == "name") ||
          (k == Kind::kKeyValue && key_ == "key")) {
        return Refuse("name_too_long", Path(key_),
                      fmt::format("{} bytes, longer than {} (max_name_length)", v.size(),
                                  limits_.max_name_length));
      }
    }
    return Scalar(json(std::move(v)));
  }

  bool start_object(std::size_t /*elements*/) { return Open(json::value_t::object); }
  bool start_array(std::size_t /*elements*/) { return Open(json::value_t::array); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }

  bool key(string_t& k) {
    if (skip_ > 0) return true;
    key_ = std::move(k);
    key_skip_ = stack_.back().node == nullptr ||
                ChildOf(stack_.back().kind, key_).expect == Expect::kNone;
    return true;
  }

  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const json::exception& e) {
    // e.what(): "[json.exception.parse_error.101] parse error at line 1, column 7: ..."
    std::string what = e.what();
    if (const size_t close = what.find("] "); close != std::string::npos) {
      what = what.substr(close + 2);
    }
    reason_ = "invalid";
    error_ = InvalidArgument("invalid OTLP/JSON: {}", what);
    return false;
  }

 private:
  enum class Kind {
    kOther,  // kept as an empty container: the walker refuses it by its type
    kRequest, kResourceSpansList, kResourceSpans, kResource, kScopeSpansList, kScopeSpans,
    kScope, kSpanList, kSpan, kStatus, kAttributeList, kKeyValue, kAnyValue, kArrayValue,
    kKvlistValue, kValueList, kKvList,
  };
  enum class Expect { kNone, kScalar, kObject, kArray };
  struct Child {
    Expect expect;
    Kind kind = Kind::kOther;
  };
  struct Frame {
    Kind kind;
    json* node;         // nullptr: children are dropped
    std::string seg;    // "key" or "[i]"
    uint64_t count = 0; // elements so far (arrays)
    int depth = 0;      // AnyValue nesting, as JsonWalker counts it
  };

  // What the walker reads under `key` of an object of kind `parent`.
  static Child ChildOf(Kind parent, const std::string& key) {
    auto any = [&](std::initializer_list<std::string_view> names) {
      for (std::string_view n : names) {
        if (key == n) return true;
      }
      return false;
    };
    switch (parent) {
      case Kind::kRequest:
        if (any({"resourceSpans", "resource_spans"})) return {Expect::kArray, Kind::kResourceSpansList};
        break;
      case Kind::kResourceSpans:
        if (key == "resource") return {Expect::kObject, Kind::kResource};
        if (any({"scopeSpans", "scope_spans"})) return {Expect::kArray, Kind::kScopeSpansList};
        if (any({"schemaUrl", "schema_url"})) return {Expect::kScalar};
        break;
      case Kind::kResource:
        if (key == "attributes") return {Expect::kArray, Kind::kAttributeList};
        if (any({"droppedAttributesCount", "dropped_attributes_count"})) return {Expect::kScalar};
        break;
      case Kind::kScopeSpans:
        if (key == "scope") return {Expect::kObject, Kind::kScope};
        if (key == "spans") return {Expect::kArray, Kind::kSpanList};
        if (any({"schemaUrl", "schema_url"})) return {Expect::kScalar};
        break;
      case Kind::kScope:
        if (key == "attributes") return {Expect::kArray, Kind::kAttributeList};
        if (any({"name", "version", "droppedAttributesCount", "dropped_attributes_count"})) {
          return {Expect::kScalar};
        }
        break;
      case Kind::kSpan:
        if (key == "attributes") return {Expect::kArray, Kind::kAttributeList};
        if (key == "status") return {Expect::kObject, Kind::kStatus};
        if (any({"traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id",
                 "traceState", "trace_state", "name", "kind", "startTimeUnixNano",
                 "start_time_unix_nano", "endTimeUnixNano", "end_time_unix_nano",
                 "droppedAttributesCount", "dropped_attributes_count", "flags"})) {
          return {Expect::kScalar};
        }
        break;  // events, links: not kept by the router
      case Kind::kStatus:
        if (any({"message", "code"})) return {Expect::kScalar};
        break;
      case Kind::kKeyValue:
        if (key == "key") return {Expect::kScalar};
        if (key == "value") return {Expect::kObject, Kind::kAnyValue};
        break;
      case Kind::kAnyValue:
        if (any({"arrayValue", "array_value"})) return {Expect::kObject, Kind::kArrayValue};
        if (any({"kvlistValue", "kvlist_value"})) return {Expect::kObject, Kind::kKvlistValue};
        if (any({"stringValue", "string_value", "boolValue", "bool_value", "intValue",
                 "int_value", "doubleValue", "double_value", "bytesValue", "bytes_value"})) {
          return {Expect::kScalar};
        }
        break;
      case Kind::kArrayValue:
        if (key == "values") return {Expect::kArray, Kind::kValueList};
        break;
      case Kind::kKvlistValue:
        if (key == "values") return {Expect::kArray, Kind::kKvList};
        break;
      default: break;
    }
    return {Expect::kNone};
  }

  // The element kind of a list.
  static Kind ElementOf(Kind list) {
    switch (list) {
      case Kind::kResourceSpansList: return Kind::kResourceSpans;
      case Kind::kScopeSpansList: return Kind::kScopeSpans;
      case Kind::kSpanList: return Kind::kSpan;
      case Kind::kAttributeList:
      case Kind::kKvList: return Kind::kKeyValue;
      case Kind::kValueList: return Kind::kAnyValue;
      default: return Kind::kOther;
    }
  }

  std::string Path(std::string_view last) const {
    std::string out;
    auto add = [&](std::string_view seg) {
      if (seg.empty()) return;
      if (!out.empty() && seg.front() != '[') out += '.';
      out += seg;
    };
    for (const Frame& f : stack_) add(f.seg);
    add(last);
    return out;
  }

  bool Refuse(std::string reason, const std::string& path, const std::string& what) {
    reason_ = std::move(reason);
    error_ = LimitError(path, what);
    return false;
  }

  // Where the next value goes: sets *slot (nullptr: dropped), its path segment, its kind (for
  // a container of the expected type), and the AnyValue depth. False when a limit is crossed.
  bool Place(json::value_t type, json** slot, std::string* seg, Kind* kind, int* depth) {
    *slot = nullptr;
    *kind = Kind::kOther;
    *depth = 0;
    const bool container = type == json::value_t::object || type == json::value_t::array;
    if (stack_.empty()) {
      root_ = json(type);
      *slot = &root_;
      *kind = type == json::value_t::object ? Kind::kRequest : Kind::kOther;
      return true;
    }
    Frame& top = stack_.back();
    if (top.node == nullptr) return true;
    Expect expect = Expect::kNone;
    Kind child = Kind::kOther;
    int child_depth = top.depth;
    if (top.node->is_array()) {
      const uint64_t index = top.count++;
      *seg = fmt::format("[{}]", index);
      if (top.kind == Kind::kSpanList && limits_.max_spans != 0 &&
          ++spans_ > limits_.max_spans) {
        return Refuse("too_many_spans", Path(*seg),
                      fmt::format("more than {} spans in one request (max_spans_per_request)",
                                  limits_.max_spans));
      }
      if ((top.kind == Kind::kAttributeList || top.kind == Kind::kKvList ||
           top.kind == Kind::kValueList) &&
          limits_.max_attributes != 0 && index >= limits_.max_attributes) {
        return Refuse("too_many_attributes", Path(*seg),
                      fmt::format("more than {} {} (max_attributes)", limits_.max_attributes,
                                  top.kind == Kind::kValueList ? "values in one array"
                                                               : "attributes in one list"));
      }
      if (limits_.max_elements != 0 && ++elements_ > limits_.max_elements) {
        return Refuse("too_many_elements", Path(*seg),
                      fmt::format("more than {} spans, events, links, attributes and values in "
                                  "one request (max_elements_per_request)",
                                  limits_.max_elements));
      }
      expect = Expect::kObject;
      child = ElementOf(top.kind);
      if (top.kind == Kind::kValueList || top.kind == Kind::kKvList) ++child_depth;
    } else {
      if (key_skip_) return true;
      *seg = key_;
      const Child c = ChildOf(top.kind, key_);
      expect = c.expect;
      child = c.kind;
      if (top.kind == Kind::kKeyValue && child == Kind::kAnyValue) ++child_depth;
    }
    json* where = nullptr;
    if (top.node->is_array()) {
      top.node->get_ref<json::array_t&>().emplace_back(type);
      where = &top.node->get_ref<json::array_t&>().back();
    } else {
      where = &(*top.node)[*seg];
      *where = json(type);
    }
    *slot = where;
    const bool matches = container && ((expect == Expect::kObject && type == json::value_t::object) ||
                                       (expect == Expect::kArray && type == json::value_t::array));
    // An AnyValue nested deeper than the walker reads is kept empty: it refuses it by depth.
    if (matches && !(child == Kind::kAnyValue && child_depth > kMaxAnyValueDepth)) {
      *kind = child;
    }
    *depth = child_depth;
    return true;
  }

  bool Scalar(json v) {
    if (skip_ > 0) return true;
    json* slot = nullptr;
    std::string seg;
    Kind kind = Kind::kOther;
    int depth = 0;
    if (!Place(v.type(), &slot, &seg, &kind, &depth)) return false;
    if (slot != nullptr) *slot = std::move(v);
    return true;
  }

  bool Open(json::value_t type) {
    if (skip_ > 0) {
      ++skip_;
      return true;
    }
    json* slot = nullptr;
    std::string seg;
    Kind kind = Kind::kOther;
    int depth = 0;
    if (!Place(type, &slot, &seg, &kind, &depth)) return false;
    if (slot == nullptr) {
      ++skip_;  // dropped: count nesting until it closes
      return true;
    }
    stack_.push_back({.kind = kind,
                      .node = kind == Kind::kOther ? nullptr : slot,
                      .seg = std::move(seg),
                      .depth = depth});
    key_skip_ = false;
    return true;
  }

  bool Close() {
    if (skip_ > 0) {
      --skip_;
      return true;
    }
    stack_.pop_back();
    return true;
  }

  const DecodeLimits& limits_;
  json root_;
  std::vector<Frame> stack_;
  std::string key_;
  bool key_skip_ = false;
  uint64_t skip_ = 0;
  uint64_t spans_ = 0;
  uint64_t elements_ = 0;
  Status error_;
  std::string reason_;
};

// ---------------------------------------------------------------------------------------------
// Attribute value length: cut string and bytes values, after decoding (the request is already
// bounded by the limits above).
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
      case AnyValue::kKvlistValue: List(v->mutable_kvlist_value()->mutable_values()); break;
      default: break;
    }
  }

  uint64_t max_;
  uint64_t truncated_ = 0;
};

void Truncate(otlp::ExportTraceServiceRequest* req, const DecodeLimits& limits,
              DecodeStats* stats) {
  if (limits.max_attribute_value_length == 0) return;
  ValueTruncator t(limits.max_attribute_value_length);
  t.Request(req);
  if (stats != nullptr) stats->truncated_values += t.truncated();
}

}  // namespace

Result<otlp::ExportTraceServiceRequest> DecodeProtobuf(std::string_view bytes,
                                                       const DecodeLimits& limits,
                                                       DecodeStats* stats) {
  DecodeStats local;
  if (stats == nullptr) stats = &local;
  otlp::ExportTraceServiceRequest req;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    stats->refusal = "invalid";
    return InvalidArgument("protobuf body of {} bytes is too large", bytes.size());
  }
  if (Status st = LimitScanner(bytes, limits).Scan(&stats->refusal); !st.ok()) return st;
  if (req.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    Truncate(&req, limits, stats);
    return req;
  }
  WireDiagnoser diag(bytes);
  std::string where = diag.Walk(otlp::ExportTraceServiceRequest::descriptor(), 0, bytes.size(),
                                "", 0);
  if (where.empty()) {
    where = "the message does not parse (no structural error found)";
  }
  stats->refusal = "invalid";
  return InvalidArgument("invalid ExportTraceServiceRequest protobuf: {}", where);
}

Result<otlp::ExportTraceServiceRequest> DecodeJson(std::string_view text,
                                                   const DecodeLimits& limits,
                                                   DecodeStats* stats) {
  DecodeStats local;
  if (stats == nullptr) stats = &local;
  LimitedJsonBuilder builder(limits);
  bool parsed = false;
  try {
    parsed = json::sax_parse(text.begin(), text.end(), &builder);
  } catch (const std::exception& e) {  // allocation failures, nothing else throws here
    stats->refusal = "invalid";
    return InvalidArgument("invalid OTLP/JSON: {}", e.what());
  }
  if (!parsed) {
    stats->refusal = builder.reason().empty() ? "invalid" : builder.reason();
    if (!builder.error().ok()) return builder.error();
    return InvalidArgument("invalid OTLP/JSON: the document does not parse");
  }
  otlp::ExportTraceServiceRequest req;
  JsonWalker walker;
  Status st = walker.Request(builder.root(), &req);
  if (!st.ok()) {
    stats->refusal = "invalid";
    return InvalidArgument("invalid OTLP/JSON: {}", st.message());
  }
  Truncate(&req, limits, stats);
  return req;
}

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
