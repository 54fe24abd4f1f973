#include "flamestream/spans/decode.h"

#include <string>

#include <gtest/gtest.h>

#include "flamestream/common/strings.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::trace::v1::Span;

constexpr std::string_view kTraceHex = "5b8efff798038103d269b633813fc60c";
constexpr std::string_view kSpanHex = "eee19b7ec3c1b174";
constexpr std::string_view kParentHex = "eee19b7ec3c1b173";

std::string Bytes(std::string_view hex) { return *common::HexDecode(hex); }

otlp::ExportTraceServiceRequest SampleRequest() {
  otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto* attr = rs->mutable_resource()->add_attributes();
  attr->set_key("service.name");
  attr->mutable_value()->set_string_value("checkout");
  attr = rs->mutable_resource()->add_attributes();
  attr->set_key("process.pid");
  attr->mutable_value()->set_int_value(4242);
  auto* span = rs->add_scope_spans()->add_spans();
  span->set_trace_id(Bytes(kTraceHex));
  span->set_span_id(Bytes(kSpanHex));
  span->set_parent_span_id(Bytes(kParentHex));
  span->set_name("GET /cart");
  span->set_kind(Span::SPAN_KIND_SERVER);
  span->set_start_time_unix_nano(1'700'000'000'000'000'001ull);
  span->set_end_time_unix_nano(1'700'000'000'500'000'000ull);
  return req;
}

TEST(DecodeProtobuf, RoundTripsARequest) {
  const otlp::ExportTraceServiceRequest want = SampleRequest();
  auto got = DecodeProtobuf(want.SerializeAsString());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got->SerializeAsString(), want.SerializeAsString());
  EXPECT_EQ(CountSpans(*got), 1u);
}

TEST(DecodeJson, DecodesHexIdsAndEveryScalarForm) {
  struct Case {
    std::string name;
    std::string json;
  };
  const std::string ids = fmt::format(R"("traceId":"{}","spanId":"{}","parentSpanId":"{}")",
                                      kTraceHex, kSpanHex, kParentHex);
  const std::vector<Case> cases = {
      {"camelCase, int64 as strings, kind as number",
       R"({"resourceSpans":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"checkout"}},
            {"key":"process.pid","value":{"intValue":"4242"}}]},
          "scopeSpans":[{"scope":{"name":"s"},"spans":[{)" + ids + R"(,
            "name":"GET /cart","kind":2,
            "startTimeUnixNano":"1700000000000000001","endTimeUnixNano":"1700000000500000000"}]}]}]})"},
      {"snake_case, int64 as numbers, kind as name, nulls and unknown keys",
       R"({"resource_spans":[{"resource":{"attributes":[
            {"key":"service.name","value":{"string_value":"checkout"}},
            {"key":"process.pid","value":{"int_value":4242}}]},"futureField":{"x":1},
          "scope_spans":[{"scope":null,"spans":[{)" + ids + R"(,
            "name":"GET /cart","kind":"SPAN_KIND_SERVER","events":[{"name":"e"}],"links":null,
            "start_time_unix_nano":1700000000000000001,"end_time_unix_nano":1700000000500000000}]}]}]})"},
  };
  otlp::ExportTraceServiceRequest want = SampleRequest();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = DecodeJson(c.json);
    ASSERT_TRUE(got.ok()) << got.error();
    ASSERT_EQ(CountSpans(*got), 1u);
    const Span& span = got->resource_spans(0).scope_spans(0).spans(0);
    EXPECT_EQ(span.trace_id(), Bytes(kTraceHex));
    EXPECT_EQ(span.span_id(), Bytes(kSpanHex));
    EXPECT_EQ(span.parent_span_id(), Bytes(kParentHex));
    EXPECT_EQ(span.name(), "GET /cart");
    EXPECT_EQ(span.kind(), Span::SPAN_KIND_SERVER);
    EXPECT_EQ(span.start_time_unix_nano(), 1'700'000'000'000'000'001ull);
    EXPECT_EQ(span.end_time_unix_nano(), 1'700'000'000'500'000'000ull);
    const auto& attrs = got->resource_spans(0).resource().attributes();
    ASSERT_EQ(attrs.size(), 2);
    EXPECT_EQ(attrs[0].value().string_value(), "checkout");
    EXPECT_EQ(attrs[1].value().int_value(), 4242);
  }
}

TEST(DecodeJson, DecodesEveryAnyValueKind) {
  auto got = DecodeJson(R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[
      {"key":"s","value":{"stringValue":"x"}},
      {"key":"b","value":{"boolValue":true}},
      {"key":"i","value":{"intValue":-7}},
      {"key":"d","value":{"doubleValue":1.5}},
      {"key":"dn","value":{"doubleValue":"NaN"}},
      {"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"y"}]}}},
      {"key":"kv","value":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":false}}]}}},
      {"key":"empty"}]}]}]}]})");
  ASSERT_TRUE(got.ok()) << got.error();
  const auto& a = got->resource_spans(0).scope_spans(0).spans(0).attributes();
  ASSERT_EQ(a.size(), 8);
  EXPECT_EQ(a[0].value().string_value(), "x");
  EXPECT_TRUE(a[1].value().bool_value());
  EXPECT_EQ(a[2].value().int_value(), -7);
  EXPECT_EQ(a[3].value().double_value(), 1.5);
  EXPECT_TRUE(std::isnan(a[4].value().double_value()));
  ASSERT_EQ(a[5].value().array_value().values_size(), 2);
  EXPECT_EQ(a[5].value().array_value().values(0).int_value(), 1);
  EXPECT_EQ(a[6].value().kvlist_value().values(0).key(), "k");
  EXPECT_EQ(a[7].key(), "empty");
  EXPECT_FALSE(a[7].has_value());
}

TEST(DecodeJson, ReportsTheBrokenFieldExactly) {
  struct Case {
    std::string json;
    std::string error;
  };
  const std::string span_path = "resourceSpans[0].scopeSpans[0].spans[0]";
  auto with_span = [](const std::string& fields) {
    return R"({"resourceSpans":[{"scopeSpans":[{"spans":[{)" + fields + "}]}]}]}";
  };
  std::string deep = R"({"stringValue":"x"})";
  for (int i = 0; i < 70; ++i) deep = R"({"arrayValue":{"values":[)" + deep + "]}}";
  const std::vector<Case> cases = {
      {"", "invalid OTLP/JSON: parse error at line 1, column 1: syntax error while parsing "
           "value - unexpected end of input; expected '[', '{', or a literal"},
      {"{\"resourceSpans\":[", "invalid OTLP/JSON: parse error at line 1, column 19: syntax "
                               "error while parsing value - unexpected end of input; expected "
                               "'[', '{', or a literal"},
      {"[]", "invalid OTLP/JSON: expected an object, got an array"},
      {R"({"resourceSpans":{}})",
       "invalid OTLP/JSON: resourceSpans: expected an array, got an object"},
      {R"({"resourceSpans":[7]})",
       "invalid OTLP/JSON: resourceSpans[0]: expected an object, got an integer"},
      {with_span(R"("traceId":"W47/95gDgQPSabYzgT/GDA==")"),
       "invalid OTLP/JSON: " + span_path +
           ".traceId: \"W47/95gDgQPSabYzgT/GDA==\" is not hex (OTLP/JSON ids are hex, not "
           "base64)"},
      {with_span(R"("spanId":12)"),
       "invalid OTLP/JSON: " + span_path + ".spanId: expected a hex string, got an integer"},
      {with_span(R"("startTimeUnixNano":"12x")"),
       "invalid OTLP/JSON: " + span_path + ".startTimeUnixNano: \"12x\" is not an integer"},
      {with_span(R"("endTimeUnixNano":-1)"),
       "invalid OTLP/JSON: " + span_path + ".endTimeUnixNano: must not be negative"},
      {with_span(R"("kind":"SPAN_KIND_BOGUS")"),
       "invalid OTLP/JSON: " + span_path + ".kind: unknown enum name \"SPAN_KIND_BOGUS\""},
      {with_span(R"("name":5)"),
       "invalid OTLP/JSON: " + span_path + ".name: expected a string, got an integer"},
      {with_span(R"("attributes":[{"key":"k","value":{"boolValue":"yes"}}])"),
       "invalid OTLP/JSON: " + span_path +
           ".attributes[0].value.boolValue: expected a boolean, got a string"},
      {with_span(R"("attributes":[{"key":"k","value":{"doubleValue":"fast"}}])"),
       "invalid OTLP/JSON: " + span_path +
           ".attributes[0].value.doubleValue: \"fast\" is not a number"},
      {with_span(R"("attributes":[{"key":"k","value":)" + deep + "}]"),
       "invalid OTLP/JSON: " + span_path + ".attributes[0].value" +
           [] {
             std::string p;
             for (int i = 0; i < 64; ++i) p += ".arrayValue.values[0]";
             return p;
           }() +
           ": attribute value nested too deeply"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json.substr(0, 120));
    auto got = DecodeJson(c.json);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(got.error().message(), c.error);
  }
}

TEST(DecodeProtobuf, ReportsTheBrokenFieldExactly) {
  const std::string good = SampleRequest().SerializeAsString();
  otlp::ExportTraceServiceRequest bad_utf8 = SampleRequest();
  bad_utf8.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->set_name(
      "caf\xc3");
  struct Case {
    std::string name;
    std::string bytes;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"truncated", good.substr(0, good.size() - 3),
       // resource_spans (10 + len) at byte 0 claims more than is left.
       fmt::format("invalid ExportTraceServiceRequest protobuf: resource_spans[0]: length {} at "
                   "byte 1 exceeds the {} bytes left",
                   good.size() - 2, good.size() - 3 - 2)},
      {"field number 0", std::string("\x00\x01", 2),
       "invalid ExportTraceServiceRequest protobuf: ExportTraceServiceRequest: invalid field "
       "number 0 at byte 0"},
      {"wire type 7", "\x0f",
       "invalid ExportTraceServiceRequest protobuf: resource_spans[0]: invalid wire type 7 at "
       "byte 0"},
      {"unterminated varint", "\x08\xff\xff",
       "invalid ExportTraceServiceRequest protobuf: resource_spans[0]: truncated varint at byte "
       "1"},
      {"unknown field, length past the end", "\x52\x05" "ab",
       "invalid ExportTraceServiceRequest protobuf: <unknown field 10 of "
       "ExportTraceServiceRequest>: length 5 at byte 1 exceeds the 2 bytes left"},
      {"JSON sent as protobuf", "{\"resourceSpans\":[]}",
       "invalid ExportTraceServiceRequest protobuf: <unknown field 15 of "
       "ExportTraceServiceRequest>: group wire type 3 at byte 0 (not used by OTLP)"},
      {"invalid UTF-8 in a span name", bad_utf8.SerializeAsString(),
       "invalid ExportTraceServiceRequest protobuf: "
       "resource_spans[0].scope_spans[0].spans[0].name: string at byte 96 is not valid UTF-8"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = DecodeProtobuf(c.bytes);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(got.error().message(), c.error);
  }
}

TEST(SniffEncoding, TellsJsonFromProtobuf) {
  EXPECT_EQ(SniffEncoding(" \t\r{\"resourceSpans\":[]}"), Encoding::kJson);
  EXPECT_EQ(SniffEncoding(SampleRequest().SerializeAsString()), Encoding::kProtobuf);
  EXPECT_EQ(SniffEncoding(""), Encoding::kProtobuf);
  EXPECT_EQ(SniffEncoding("\n{"), Encoding::kProtobuf);  // resource_spans of 123 bytes
}

}  // namespace
}  // namespace flamestream::spans
