// OTLP/JSON decoding: the SAX builder that checks the limits while it builds the tree the
// walker (decode_json_walker.cc) reads.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "decode_internal.h"
#include "flamestream/spans/decode.h"

namespace flamestream::spans {
namespace {

using internal::kMaxAnyValueDepth;
using internal::LimitError;
using nlohmann::json;

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
    key_skip_ =
        stack_.back().node == nullptr || ChildOf(stack_.back().kind, key_).expect == Expect::kNone;
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
    kRequest,
    kResourceSpansList,
    kResourceSpans,
    kResource,
    kScopeSpansList,
    kScopeSpans,
    kScope,
    kSpanList,
    kSpan,
    kStatus,
    kAttributeList,
    kKeyValue,
    kAnyValue,
    kArrayValue,
    kKvlistValue,
    kValueList,
    kKvList,
  };
  enum class Expect { kNone, kScalar, kObject, kArray };
  struct Child {
    Expect expect;
    Kind kind = Kind::kOther;
  };
  struct Frame {
    Kind kind;
    json* node;          // nullptr: children are dropped
    std::string seg;     // "key" or "[i]"
    uint64_t count = 0;  // elements so far (arrays)
    int depth = 0;       // AnyValue nesting, as JsonWalker counts it
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
        if (any({"resourceSpans", "resource_spans"}))
          return {Expect::kArray, Kind::kResourceSpansList};
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
        if (any({"stringValue", "string_value", "boolValue", "bool_value", "intValue", "int_value",
                 "doubleValue", "double_value", "bytesValue", "bytes_value"})) {
          return {Expect::kScalar};
        }
        break;
      case Kind::kArrayValue:
        if (key == "values") return {Expect::kArray, Kind::kValueList};
        break;
      case Kind::kKvlistValue:
        if (key == "values") return {Expect::kArray, Kind::kKvList};
        break;
      default:
        break;
    }
    return {Expect::kNone};
  }

  // The element kind of a list.
  static Kind ElementOf(Kind list) {
    switch (list) {
      case Kind::kResourceSpansList:
        return Kind::kResourceSpans;
      case Kind::kScopeSpansList:
        return Kind::kScopeSpans;
      case Kind::kSpanList:
        return Kind::kSpan;
      case Kind::kAttributeList:
      case Kind::kKvList:
        return Kind::kKeyValue;
      case Kind::kValueList:
        return Kind::kAnyValue;
      default:
        return Kind::kOther;
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
      if (top.kind == Kind::kSpanList && limits_.max_spans != 0 && ++spans_ > limits_.max_spans) {
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
    const bool matches =
        container && ((expect == Expect::kObject && type == json::value_t::object) ||
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

}  // namespace

Result<otlp::ExportTraceServiceRequest> DecodeJson(std::string_view text,
                                                   const DecodeLimits& limits, DecodeStats* stats) {
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
  Status st = internal::WalkJsonRequest(builder.root(), &req);
  if (!st.ok()) {
    stats->refusal = "invalid";
    return InvalidArgument("invalid OTLP/JSON: {}", st.message());
  }
  internal::Truncate(&req, limits, stats);
  return req;
}

}  // namespace flamestream::spans
