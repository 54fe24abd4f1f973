// OTLP/JSON: the walker from the document tree to an ExportTraceServiceRequest.
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "decode_internal.h"
#include "flamestream/common/strings.h"

namespace flamestream::spans {
namespace {

using internal::kMaxAnyValueDepth;
using nlohmann::json;
using opentelemetry::proto::common::v1::AnyValue;
using opentelemetry::proto::common::v1::InstrumentationScope;
using opentelemetry::proto::common::v1::KeyValue;
using opentelemetry::proto::resource::v1::Resource;
using opentelemetry::proto::trace::v1::ResourceSpans;
using opentelemetry::proto::trace::v1::ScopeSpans;
using opentelemetry::proto::trace::v1::Span;
using KeyValues = google::protobuf::RepeatedPtrField<KeyValue>;

// ---------------------------------------------------------------------------------------------
// OTLP/JSON walker.
// ---------------------------------------------------------------------------------------------

std::string_view TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
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

namespace internal {

Status WalkJsonRequest(const json& j, otlp::ExportTraceServiceRequest* out) {
  JsonWalker walker;
  return walker.Request(j, out);
}

}  // namespace internal
}  // namespace flamestream::spans
