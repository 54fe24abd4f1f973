// Decode limits (DecodeLimits): every limit refuses at the field that crosses it, with the
// same reason for protobuf and OTLP/JSON, before the request is materialized; attribute
// values over the value length limit are cut, not refused.
#include <sys/resource.h>

#include <string>

#include <gtest/gtest.h>

#include "flamestream/spans/decode.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::trace::v1::Span;

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// An ExportTraceServiceRequest of one ResourceSpans with one ScopeSpans of `n` empty Span
// messages, written by hand (2 bytes per span) so the test itself never materializes them.
std::string EmptySpans(uint64_t n) {
  std::string scope;
  scope.reserve(n * 2);
  for (uint64_t i = 0; i < n; ++i) scope.append("\x12\x00", 2);  // spans (2), length 0
  std::string rs;
  rs.push_back('\x12');  // scope_spans (2)
  AppendVarint(&rs, scope.size());
  rs += scope;
  scope = {};
  std::string req;
  req.push_back('\x0a');  // resource_spans (1)
  AppendVarint(&req, rs.size());
  req += rs;
  return req;
}

long MaxRssKiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

otlp::ExportTraceServiceRequest WithSpans(int spans, int attributes = 0) {
  otlp::ExportTraceServiceRequest req;
  auto* ss = req.add_resource_spans()->add_scope_spans();
  for (int i = 0; i < spans; ++i) {
    Span* s = ss->add_spans();
    s->set_name("op");
    for (int a = 0; a < attributes; ++a) {
      auto* kv = s->add_attributes();
      kv->set_key("k" + std::to_string(a));
      kv->mutable_value()->set_int_value(a);
    }
  }
  return req;
}

struct Refusal {
  StatusCode code;
  std::string reason;
  std::string message;
};

Refusal Refused(std::string_view body, Encoding encoding, const DecodeLimits& limits) {
  DecodeStats stats;
  auto got = DecodeExport(body, encoding, limits, &stats);
  if (got.ok()) return {StatusCode::kOk, stats.refusal, ""};
  return {got.error().code(), stats.refusal, got.error().message()};
}

TEST(DecodeLimits, ProtobufRefusesAtTheFieldOverTheLimit) {
  DecodeLimits limits{.max_spans = 3, .max_attributes = 2, .max_elements = 100,
                      .max_name_length = 8};
  struct Case {
    std::string name;
    std::string bytes;
    std::string reason;
    std::string message;
  };
  otlp::ExportTraceServiceRequest long_name = WithSpans(1);
  long_name.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->set_name(
      std::string(9, 'n'));
  otlp::ExportTraceServiceRequest long_key = WithSpans(1, 1);
  long_key.mutable_resource_spans(0)->mutable_resource()->add_attributes()->set_key(
      std::string(20, 'k'));
  otlp::ExportTraceServiceRequest array = WithSpans(1);
  auto* arr = array.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)
                  ->add_attributes();
  arr->set_key("a");
  for (int i = 0; i < 3; ++i) arr->mutable_value()->mutable_array_value()->add_values();
  otlp::ExportTraceServiceRequest events = WithSpans(1);
  for (int i = 0; i < 200; ++i) {
    events.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->add_events();
  }
  const std::vector<Case> cases = {
      {"spans", WithSpans(4).SerializeAsString(), "too_many_spans",
       "request refused: resource_spans[0].scope_spans[0].spans[3]: more than 3 spans in one "
       "request (max_spans_per_request)"},
      {"span attributes", WithSpans(1, 3).SerializeAsString(), "too_many_attributes",
       "request refused: resource_spans[0].scope_spans[0].spans[0].attributes[2]: more than 2 "
       "attributes in one list (max_attributes)"},
      {"array values", array.SerializeAsString(), "too_many_attributes",
       "request refused: resource_spans[0].scope_spans[0].spans[0].attributes[0].value."
       "array_value.values[2]: more than 2 values in one array (max_attributes)"},
      {"span name", long_name.SerializeAsString(), "name_too_long",
       "request refused: resource_spans[0].scope_spans[0].spans[0].name: 9 bytes, longer than "
       "8 (max_name_length)"},
      {"attribute key", long_key.SerializeAsString(), "name_too_long",
       "request refused: resource_spans[0].resource.attributes[0].key: 20 bytes, longer than 8 "
       "(max_name_length)"},
      {"events count as elements", events.SerializeAsString(), "too_many_elements",
       "request refused: resource_spans[0].scope_spans[0].spans[0].events[97]: more than 100 "
       "spans, events, links, attributes and values in one request (max_elements_per_request)"},
      {"unknown fields count as elements", [] {
         std::string s;
         for (int i = 0; i < 150; ++i) s += std::string("\x50\x00", 2);  // field 10, varint
         return s;
       }(),
       "too_many_elements",
       "request refused: <unknown field 10 of ExportTraceServiceRequest>: more than 100 spans, "
       "events, links, attributes and values in one request (max_elements_per_request)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Refusal r = Refused(c.bytes, Encoding::kProtobuf, limits);
    EXPECT_EQ(r.code, StatusCode::kResourceExhausted);
    EXPECT_EQ(r.reason, c.reason);
    EXPECT_EQ(r.message, c.message);
  }
  // At the limits: accepted.
  DecodeStats stats;
  auto ok = DecodeProtobuf(WithSpans(3, 2).SerializeAsString(), limits, &stats);
  ASSERT_TRUE(ok.ok()) << ok.error();
  EXPECT_EQ(stats.refusal, "");
  // Undecodable: "invalid".
  EXPECT_EQ(Refused("\x0f", Encoding::kProtobuf, limits).reason, "invalid");
  // 0 turns a limit off.
  EXPECT_EQ(Refused(WithSpans(4).SerializeAsString(), Encoding::kProtobuf,
                    {.max_spans = 0, .max_elements = 0})
                .code,
            StatusCode::kOk);
}

TEST(DecodeLimits, JsonRefusesAtTheFieldOverTheLimit) {
  DecodeLimits limits{.max_spans = 3, .max_attributes = 2, .max_elements = 20,
                      .max_name_length = 8};
  auto spans = [](int n, const std::string& span) {
    std::string out = R"({"resourceSpans":[{"scopeSpans":[{"spans":[)";
    for (int i = 0; i < n; ++i) out += (i ? "," : "") + span;
    return out + "]}]}]}";
  };
  std::string many_values = R"({"attributes":[{"key":"a","value":{"arrayValue":{"values":[)";
  many_values += R"({"intValue":1},{"intValue":2},{"intValue":3}]}}}]})";
  std::string junk = R"({"resourceSpans":[],"junk":[)";
  for (int i = 0; i < 1000; ++i) junk += "[],";
  junk += "[]]}";
  std::string events = R"({"events":[)";
  for (int i = 0; i < 1000; ++i) events += R"({"name":"e"},)";
  events += "{}]}";
  struct Case {
    std::string name;
    std::string json;
    StatusCode code;
    std::string reason;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"spans", spans(4, "{}"), StatusCode::kResourceExhausted, "too_many_spans",
       "request refused: resourceSpans[0].scopeSpans[0].spans[3]: more than 3 spans in one "
       "request (max_spans_per_request)"},
      {"span attributes",
       spans(1, R"({"attributes":[{"key":"a"},{"key":"b"},{"key":"c"}]})"),
       StatusCode::kResourceExhausted, "too_many_attributes",
       "request refused: resourceSpans[0].scopeSpans[0].spans[0].attributes[2]: more than 2 "
       "attributes in one list (max_attributes)"},
      {"array values", spans(1, many_values), StatusCode::kResourceExhausted,
       "too_many_attributes",
       "request refused: resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.arrayValue."
       "values[2]: more than 2 values in one array (max_attributes)"},
      {"span name", spans(1, R"({"name":"123456789"})"), StatusCode::kResourceExhausted,
       "name_too_long",
       "request refused: resourceSpans[0].scopeSpans[0].spans[0].name: 9 bytes, longer than 8 "
       "(max_name_length)"},
      {"attribute key",
       R"({"resourceSpans":[{"resource":{"attributes":[{"key":"kkkkkkkkkkkk"}]}}]})",
       StatusCode::kResourceExhausted, "name_too_long",
       "request refused: resourceSpans[0].resource.attributes[0].key: 12 bytes, longer than 8 "
       "(max_name_length)"},
      {"elements", R"({"resourceSpans":[)" + std::string(20, ' ') + "{},{},{},{},{},{},{},{},{},"
       "{},{},{},{},{},{},{},{},{},{},{},{}]}",
       StatusCode::kResourceExhausted, "too_many_elements",
       "request refused: resourceSpans[20]: more than 20 spans, events, links, attributes and "
       "values in one request (max_elements_per_request)"},
      {"syntax", "{\"resourceSpans\":[", StatusCode::kInvalidArgument, "invalid",
       "invalid OTLP/JSON: parse error at line 1, column 19: syntax error while parsing value - "
       "unexpected end of input; expected '[', '{', or a literal"},
      {"wrong type", R"({"resourceSpans":{"a":[1,2,3]}})", StatusCode::kInvalidArgument,
       "invalid", "invalid OTLP/JSON: resourceSpans: expected an array, got an object"},
      // Not limits: what the router ignores is dropped unbuilt, never counted.
      {"unknown keys are not counted", junk, StatusCode::kOk, "", ""},
      {"span events are not counted", spans(1, events), StatusCode::kOk, "", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Refusal r = Refused(c.json, Encoding::kJson, limits);
    EXPECT_EQ(r.code, c.code);
    EXPECT_EQ(r.reason, c.reason);
    EXPECT_EQ(r.message, c.message);
  }
}

TEST(DecodeLimits, TruncatesLongAttributeValuesAtACharacterBoundary) {
  DecodeLimits limits{.max_attribute_value_length = 5};
  // "abcd" + "é" (2 bytes) + "f": a 5-byte cut would split the é, so 4 bytes are kept.
  const std::string long_value = "abcd\xc3\xa9" "f";
  otlp::ExportTraceServiceRequest req = WithSpans(1);
  auto* span = req.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0);
  auto* kv = span->add_attributes();
  kv->set_key("s");
  kv->mutable_value()->set_string_value(long_value);
  kv = span->add_attributes();
  kv->set_key("short");
  kv->mutable_value()->set_string_value("12345");
  kv = req.mutable_resource_spans(0)->mutable_resource()->add_attributes();
  kv->set_key("b");
  kv->mutable_value()->set_bytes_value("0123456789");

  DecodeStats stats;
  auto got = DecodeProtobuf(req.SerializeAsString(), limits, &stats);
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(stats.truncated_values, 2u);
  const auto& attrs = got->resource_spans(0).scope_spans(0).spans(0).attributes();
  EXPECT_EQ(attrs[0].value().string_value(), "abcd");
  EXPECT_EQ(attrs[1].value().string_value(), "12345");
  EXPECT_EQ(got->resource_spans(0).resource().attributes(0).value().bytes_value(), "01234");

  DecodeStats jstats;
  auto j = DecodeJson(
      R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"s","value":{"arrayValue":{"values":[{"stringValue":"abcd\u00e9f"}]}}}]}]}]}]})",
      limits, &jstats);
  ASSERT_TRUE(j.ok()) << j.error();
  EXPECT_EQ(jstats.truncated_values, 1u);
  EXPECT_EQ(j->resource_spans(0).scope_spans(0).spans(0).attributes(0).value().array_value()
                .values(0).string_value(),
            "abcd");
}

// The incident: a 14 MB request of empty spans (7 million 2-byte Span messages) took the
// correlator to 1.4 GiB before it answered 413. The decoder must stop at the limit.
TEST(DecodeLimits, RefusesFourteenMegabytesOfEmptySpansWithoutMaterializingThem) {
  const std::string proto = EmptySpans(7'000'000);
  ASSERT_GT(proto.size(), 14'000'000u);
  std::string json = R"({"resourceSpans":[{"scopeSpans":[{"spans":[{})";
  json.reserve(14'000'100);
  while (json.size() < 14'000'000) json += ",{}";
  json += "]}]}]}";

  const long before = MaxRssKiB();
  Refusal p = Refused(proto, Encoding::kProtobuf, DecodeLimits{});
  Refusal j = Refused(json, Encoding::kJson, DecodeLimits{});
  const long grown_mib = (MaxRssKiB() - before) / 1024;

  EXPECT_EQ(p.code, StatusCode::kResourceExhausted);
  EXPECT_EQ(p.message,
            "request refused: resource_spans[0].scope_spans[0].spans[10000]: more than 10000 "
            "spans in one request (max_spans_per_request)");
  EXPECT_EQ(j.code, StatusCode::kResourceExhausted);
  EXPECT_EQ(j.message,
            "request refused: resourceSpans[0].scopeSpans[0].spans[10000]: more than 10000 "
            "spans in one request (max_spans_per_request)");
  // Materializing them would take ~1.4 GiB; refusing at 10,000 spans takes a few MiB.
  EXPECT_LT(grown_mib, 200) << "peak RSS grew by " << grown_mib << " MiB";
}

}  // namespace
}  // namespace flamestream::spans
