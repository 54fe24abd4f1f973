// Proves the field numbers and wire types of our external .proto files against
// docs/WIRE-FORMATS.md with a decoder we did not write: each case fills every field of a
// message through the generated API, serializes it and pipes the bytes through
// `protoc --decode_raw` (from PATH), which prints raw field numbers and encodings. The
// printed (path, wire type) set must equal the table exactly, so a renumbered, retyped,
// missing or extra field fails, and the row names the field.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "opentelemetry/proto/trace/v1/trace.pb.h"
#include "pprof/profile.pb.h"
#include "pyroscope/push/v1/push.pb.h"
#include "pyroscope/querier/v1/querier.pb.h"

namespace {

// Wire encodings as `protoc --decode_raw` shows them.
enum class Wire {
  kVarint,  // "N: 123"
  kI64,     // "N: 0x" + 16 hex digits (fixed64, sfixed64, double)
  kI32,     // "N: 0x" + 8 hex digits (fixed32, sfixed32, float)
  kLen,     // "N: \"...\"" or "N { ... }": string, bytes, packed scalars; content not checked
  kMsg,     // a length-delimited sub-message whose fields are listed in the table too
};

const char* WireName(Wire w) {
  switch (w) {
    case Wire::kVarint:
      return "varint";
    case Wire::kI64:
      return "i64";
    case Wire::kI32:
      return "i32";
    case Wire::kLen:
      return "len";
    case Wire::kMsg:
      return "msg";
  }
  return "?";
}

// One printed field: its path of field numbers ("1.2.5") and encoding.
struct RawField {
  std::string path;
  Wire wire;
  std::optional<size_t> byte_len;  // decoded length of a quoted LEN value
};

// Decodes protobuf text-format C escapes (\ooo octal, \xHH, \n, \", ...) to count bytes.
size_t UnescapedLength(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    if (s[i] != '\\') {
      ++i;
      continue;
    }
    ++i;  // backslash
    if (i < s.size() && s[i] >= '0' && s[i] <= '7') {
      for (int k = 0; k < 3 && i < s.size() && s[i] >= '0' && s[i] <= '7'; ++k) ++i;
    } else if (i < s.size() && s[i] == 'x') {
      ++i;
      for (int k = 0; k < 2 && i < s.size() && std::isxdigit(static_cast<unsigned char>(s[i])); ++k)
        ++i;
    } else {
      ++i;
    }
  }
  return n;
}

// Runs `protoc --decode_raw` on `bytes` and returns its stdout.
std::string DecodeRaw(const std::string& bytes) {
  char path[] = "/tmp/fs_proto_test_XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  close(fd);
  std::string cmd = std::string("protoc --decode_raw < ") + path;
  FILE* pipe = popen(cmd.c_str(), "r");
  EXPECT_NE(pipe, nullptr) << "cannot run protoc (is protobuf-compiler installed?)";
  std::string text;
  if (pipe != nullptr) {
    std::array<char, 4096> buf{};
    size_t n = 0;
    while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) text.append(buf.data(), n);
    int status = pclose(pipe);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "protoc failed: " << text;
  }
  unlink(path);
  return text;
}

// Parses decode_raw output into every printed field (nested ones included).
std::vector<RawField> ParseDecodeRaw(const std::string& text) {
  std::vector<RawField> fields;
  std::vector<std::string> stack;  // open message paths
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t start = line.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    std::string body = line.substr(start);
    if (body == "}") {
      stack.pop_back();
      continue;
    }
    size_t num_end = body.find_first_not_of("0123456789");
    std::string num = body.substr(0, num_end);
    std::string path = stack.empty() ? num : stack.back() + "." + num;
    std::string rest = body.substr(num_end);
    if (rest == " {") {
      fields.push_back({path, Wire::kLen, std::nullopt});
      stack.push_back(path);
    } else if (rest.rfind(": \"", 0) == 0) {
      std::string quoted = rest.substr(3, rest.size() - 4);
      fields.push_back({path, Wire::kLen, UnescapedLength(quoted)});
    } else if (rest.rfind(": 0x", 0) == 0) {
      fields.push_back({path, rest.size() - 4 == 16 ? Wire::kI64 : Wire::kI32, std::nullopt});
    } else {
      fields.push_back({path, Wire::kVarint, std::nullopt});
    }
  }
  return fields;
}

// One row of a WIRE-FORMATS.md table.
struct Expect {
  const char* name;  // message.field, for the failure message
  const char* path;  // field numbers from the outermost message
  Wire wire;
  std::optional<size_t> byte_len = std::nullopt;  // for kLen: exact payload length
};

struct Case {
  const char* name;
  std::function<std::string()> serialize;
  std::vector<Expect> fields;
};

bool IsUnder(const std::string& path, const std::string& parent) {
  return path.size() > parent.size() && path.compare(0, parent.size(), parent) == 0 &&
         path[parent.size()] == '.';
}

void CheckCase(const Case& c) {
  SCOPED_TRACE(c.name);
  std::string bytes = c.serialize();
  ASSERT_FALSE(bytes.empty());
  std::vector<RawField> raw = ParseDecodeRaw(DecodeRaw(bytes));
  ASSERT_FALSE(raw.empty());

  // Paths whose content is opaque (strings, bytes, packed arrays, skipped sub-messages).
  std::vector<std::string> opaque;
  std::map<std::string, const Expect*> expected;
  for (const Expect& e : c.fields) {
    expected[e.path] = &e;
    if (e.wire == Wire::kLen) opaque.emplace_back(e.path);
  }

  std::set<std::string> seen;
  for (const RawField& f : raw) {
    bool hidden = false;
    for (const std::string& o : opaque) hidden = hidden || IsUnder(f.path, o);
    if (hidden) continue;
    seen.insert(f.path);
    auto it = expected.find(f.path);
    if (it == expected.end()) {
      ADD_FAILURE() << "unexpected field " << f.path << " (" << WireName(f.wire) << ")";
      continue;
    }
    const Expect& e = *it->second;
    SCOPED_TRACE(std::string(e.name) + " @ " + e.path);
    Wire want = e.wire == Wire::kMsg ? Wire::kLen : e.wire;
    EXPECT_EQ(WireName(f.wire), std::string(WireName(want)));
    if (e.byte_len) {
      ASSERT_TRUE(f.byte_len.has_value()) << "expected a quoted LEN value";
      EXPECT_EQ(*f.byte_len, *e.byte_len);
    }
  }
  for (const Expect& e : c.fields) {
    EXPECT_TRUE(seen.count(e.path)) << "missing " << e.name << " @ " << e.path;
  }
}

// ---- builders: every field set to a non-default value ----

std::string PprofProfile() {
  perftools::profiles::Profile p;
  auto* st = p.add_sample_type();
  st->set_type(1);
  st->set_unit(2);
  auto* s = p.add_sample();
  s->add_location_id(1);
  s->add_value(100);
  auto* l = s->add_label();
  l->set_key(3);
  l->set_str(4);
  l->set_num(5);
  l->set_num_unit(6);
  auto* m = p.add_mapping();
  m->set_id(1);
  m->set_memory_start(0x1000);
  m->set_memory_limit(0x2000);
  m->set_file_offset(0x100);
  m->set_filename(7);
  m->set_build_id(8);
  m->set_has_functions(true);
  m->set_has_filenames(true);
  m->set_has_line_numbers(true);
  m->set_has_inline_frames(true);
  auto* loc = p.add_location();
  loc->set_id(1);
  loc->set_mapping_id(1);
  loc->set_address(0x1234);
  auto* line = loc->add_line();
  line->set_function_id(1);
  line->set_line(42);
  line->set_column(3);
  loc->set_is_folded(true);
  auto* f = p.add_function();
  f->set_id(1);
  f->set_name(9);
  f->set_system_name(10);
  f->set_filename(11);
  f->set_start_line(40);
  p.add_string_table("");
  p.add_string_table("cpu");
  p.set_drop_frames(12);
  p.set_keep_frames(13);
  p.set_time_nanos(1'700'000'000'000'000'000);
  p.set_duration_nanos(10'000'000'000);
  p.mutable_period_type()->set_type(1);
  p.mutable_period_type()->set_unit(2);
  p.set_period(10'000'000);
  p.add_comment(14);
  p.set_default_sample_type(1);
  p.set_doc_url(15);
  return p.SerializeAsString();
}

const std::vector<Expect> kPprofProfile = {
    {"Profile.sample_type", "1", Wire::kMsg},
    {"ValueType.type", "1.1", Wire::kVarint},
    {"ValueType.unit", "1.2", Wire::kVarint},
    {"Profile.sample", "2", Wire::kMsg},
    {"Sample.location_id (packed uint64)", "2.1", Wire::kLen, 1},
    {"Sample.value (packed int64)", "2.2", Wire::kLen, 1},
    {"Sample.label", "2.3", Wire::kMsg},
    {"Label.key", "2.3.1", Wire::kVarint},
    {"Label.str", "2.3.2", Wire::kVarint},
    {"Label.num", "2.3.3", Wire::kVarint},
    {"Label.num_unit", "2.3.4", Wire::kVarint},
    {"Profile.mapping", "3", Wire::kMsg},
    {"Mapping.id", "3.1", Wire::kVarint},
    {"Mapping.memory_start", "3.2", Wire::kVarint},
    {"Mapping.memory_limit", "3.3", Wire::kVarint},
    {"Mapping.file_offset", "3.4", Wire::kVarint},
    {"Mapping.filename", "3.5", Wire::kVarint},
    {"Mapping.build_id", "3.6", Wire::kVarint},
    {"Mapping.has_functions", "3.7", Wire::kVarint},
    {"Mapping.has_filenames", "3.8", Wire::kVarint},
    {"Mapping.has_line_numbers", "3.9", Wire::kVarint},
    {"Mapping.has_inline_frames", "3.10", Wire::kVarint},
    {"Profile.location", "4", Wire::kMsg},
    {"Location.id", "4.1", Wire::kVarint},
    {"Location.mapping_id", "4.2", Wire::kVarint},
    {"Location.address", "4.3", Wire::kVarint},
    {"Location.line", "4.4", Wire::kMsg},
    {"Line.function_id", "4.4.1", Wire::kVarint},
    {"Line.line", "4.4.2", Wire::kVarint},
    {"Line.column", "4.4.3", Wire::kVarint},
    {"Location.is_folded", "4.5", Wire::kVarint},
    {"Profile.function", "5", Wire::kMsg},
    {"Function.id", "5.1", Wire::kVarint},
    {"Function.name", "5.2", Wire::kVarint},
    {"Function.system_name", "5.3", Wire::kVarint},
    {"Function.filename", "5.4", Wire::kVarint},
    {"Function.start_line", "5.5", Wire::kVarint},
    {"Profile.string_table", "6", Wire::kLen},
    {"Profile.drop_frames", "7", Wire::kVarint},
    {"Profile.keep_frames", "8", Wire::kVarint},
    {"Profile.time_nanos", "9", Wire::kVarint},
    {"Profile.duration_nanos", "10", Wire::kVarint},
    {"Profile.period_type", "11", Wire::kMsg},
    {"ValueType.type", "11.1", Wire::kVarint},
    {"ValueType.unit", "11.2", Wire::kVarint},
    {"Profile.period", "12", Wire::kVarint},
    {"Profile.comment (packed int64)", "13", Wire::kLen, 1},
    {"Profile.default_sample_type", "14", Wire::kVarint},
    {"Profile.doc_url", "15", Wire::kVarint},
};

namespace otc = opentelemetry::proto::common::v1;
namespace ott = opentelemetry::proto::trace::v1;
namespace otp = opentelemetry::proto::profiles::v1development;

void SetKv(otc::KeyValue* kv, const char* key, int64_t v) {
  kv->set_key(key);
  kv->mutable_value()->set_int_value(v);
}

std::string OtlpSpan() {
  ott::Span s;
  s.set_trace_id(std::string(16, '\x11'));
  s.set_span_id(std::string(8, '\x22'));
  s.set_trace_state("k=v");
  s.set_parent_span_id(std::string(8, '\x33'));
  s.set_name("GET /");
  s.set_kind(ott::Span::SPAN_KIND_SERVER);
  s.set_start_time_unix_nano(5);  // small on purpose: a varint would print as "7: 5"
  s.set_end_time_unix_nano(6);
  SetKv(s.add_attributes(), "thread.id", 7);
  s.set_dropped_attributes_count(1);
  auto* ev = s.add_events();
  ev->set_time_unix_nano(8);
  ev->set_name("ev");
  SetKv(ev->add_attributes(), "a", 1);
  ev->set_dropped_attributes_count(1);
  s.set_dropped_events_count(2);
  auto* link = s.add_links();
  link->set_trace_id(std::string(16, '\x44'));
  link->set_span_id(std::string(8, '\x55'));
  link->set_trace_state("x=y");
  SetKv(link->add_attributes(), "b", 2);
  link->set_dropped_attributes_count(1);
  link->set_flags(1);
  s.set_dropped_links_count(3);
  s.mutable_status()->set_message("boom");
  s.mutable_status()->set_code(ott::Status::STATUS_CODE_ERROR);
  s.set_flags(0x101);
  return s.SerializeAsString();
}

const std::vector<Expect> kOtlpSpan = {
    {"Span.trace_id", "1", Wire::kLen, 16},
    {"Span.span_id", "2", Wire::kLen, 8},
    {"Span.trace_state", "3", Wire::kLen},
    {"Span.parent_span_id", "4", Wire::kLen, 8},
    {"Span.name", "5", Wire::kLen},
    {"Span.kind", "6", Wire::kVarint},
    {"Span.start_time_unix_nano (fixed64)", "7", Wire::kI64},
    {"Span.end_time_unix_nano (fixed64)", "8", Wire::kI64},
    {"Span.attributes", "9", Wire::kMsg},
    {"KeyValue.key", "9.1", Wire::kLen},
    {"KeyValue.value", "9.2", Wire::kMsg},
    {"AnyValue.int_value", "9.2.3", Wire::kVarint},
    {"Span.dropped_attributes_count", "10", Wire::kVarint},
    {"Span.events", "11", Wire::kMsg},
    {"Event.time_unix_nano (fixed64)", "11.1", Wire::kI64},
    {"Event.name", "11.2", Wire::kLen},
    {"Event.attributes", "11.3", Wire::kLen},
    {"Event.dropped_attributes_count", "11.4", Wire::kVarint},
    {"Span.dropped_events_count", "12", Wire::kVarint},
    {"Span.links", "13", Wire::kMsg},
    {"Link.trace_id", "13.1", Wire::kLen, 16},
    {"Link.span_id", "13.2", Wire::kLen, 8},
    {"Link.trace_state", "13.3", Wire::kLen},
    {"Link.attributes", "13.4", Wire::kLen},
    {"Link.dropped_attributes_count", "13.5", Wire::kVarint},
    {"Link.flags (fixed32)", "13.6", Wire::kI32},
    {"Span.dropped_links_count", "14", Wire::kVarint},
    {"Span.status", "15", Wire::kMsg},
    {"Status.message", "15.2", Wire::kLen},
    {"Status.code", "15.3", Wire::kVarint},
    {"Span.flags (fixed32)", "16", Wire::kI32},
};

void FillScope(otc::InstrumentationScope* scope) {
  scope->set_name("lib");
  scope->set_version("1.0");
  SetKv(scope->add_attributes(), "s", 1);
  scope->set_dropped_attributes_count(1);
}

void FillResource(opentelemetry::proto::resource::v1::Resource* r) {
  auto* kv = r->add_attributes();
  kv->set_key("service.name");
  kv->mutable_value()->set_string_value("checkout");
  r->set_dropped_attributes_count(1);
  auto* ref = r->add_entity_refs();
  ref->set_type("k8s.pod");
}

std::string OtlpTraceRequest() {
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  FillResource(rs->mutable_resource());
  auto* ss = rs->add_scope_spans();
  FillScope(ss->mutable_scope());
  ss->add_spans()->set_name("x");
  ss->set_schema_url("https://s");
  rs->set_schema_url("https://r");
  return req.SerializeAsString();
}

const std::vector<Expect> kOtlpTraceRequest = {
    {"ExportTraceServiceRequest.resource_spans", "1", Wire::kMsg},
    {"ResourceSpans.resource", "1.1", Wire::kMsg},
    {"Resource.attributes", "1.1.1", Wire::kMsg},
    {"KeyValue.key", "1.1.1.1", Wire::kLen},
    {"KeyValue.value", "1.1.1.2", Wire::kMsg},
    {"AnyValue.string_value", "1.1.1.2.1", Wire::kLen},
    {"Resource.dropped_attributes_count", "1.1.2", Wire::kVarint},
    {"Resource.entity_refs", "1.1.3", Wire::kLen},
    {"ResourceSpans.scope_spans", "1.2", Wire::kMsg},
    {"ScopeSpans.scope", "1.2.1", Wire::kMsg},
    {"InstrumentationScope.name", "1.2.1.1", Wire::kLen},
    {"InstrumentationScope.version", "1.2.1.2", Wire::kLen},
    {"InstrumentationScope.attributes", "1.2.1.3", Wire::kLen},
    {"InstrumentationScope.dropped_attributes_count", "1.2.1.4", Wire::kVarint},
    {"ScopeSpans.spans", "1.2.2", Wire::kLen},
    {"ScopeSpans.schema_url", "1.2.3", Wire::kLen},
    {"ResourceSpans.schema_url", "1.3", Wire::kLen},
};

std::string OtlpAnyValues() {
  // AnyValue 1-8 in an ArrayValue, plus KeyValue.key_strindex = 3 (profiles only).
  otc::KeyValue kv;
  kv.set_key("k");
  kv.set_key_strindex(4);
  auto* arr = kv.mutable_value()->mutable_array_value();
  arr->add_values()->set_string_value("s");
  arr->add_values()->set_bool_value(true);
  arr->add_values()->set_int_value(3);
  arr->add_values()->set_double_value(1.5);
  arr->add_values()->mutable_array_value()->add_values()->set_int_value(1);
  SetKv(arr->add_values()->mutable_kvlist_value()->add_values(), "n", 1);
  arr->add_values()->set_bytes_value("b");
  arr->add_values()->set_string_value_strindex(9);
  return kv.SerializeAsString();
}

const std::vector<Expect> kOtlpAnyValues = {
    {"KeyValue.key", "1", Wire::kLen},
    {"KeyValue.value", "2", Wire::kMsg},
    {"AnyValue.array_value", "2.5", Wire::kMsg},
    {"ArrayValue.values", "2.5.1", Wire::kMsg},
    {"AnyValue.string_value", "2.5.1.1", Wire::kLen},
    {"AnyValue.bool_value", "2.5.1.2", Wire::kVarint},
    {"AnyValue.int_value", "2.5.1.3", Wire::kVarint},
    {"AnyValue.double_value (i64)", "2.5.1.4", Wire::kI64},
    {"AnyValue.array_value", "2.5.1.5", Wire::kLen},
    {"AnyValue.kvlist_value", "2.5.1.6", Wire::kMsg},
    {"KeyValueList.values", "2.5.1.6.1", Wire::kLen},
    {"AnyValue.bytes_value", "2.5.1.7", Wire::kLen},
    {"AnyValue.string_value_strindex", "2.5.1.8", Wire::kVarint},
    {"KeyValue.key_strindex", "3", Wire::kVarint},
};

std::string OtlpProfilesRequest() {
  opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest req;
  auto* rp = req.add_resource_profiles();
  FillResource(rp->mutable_resource());
  auto* sp = rp->add_scope_profiles();
  FillScope(sp->mutable_scope());
  auto* p = sp->add_profiles();
  p->mutable_sample_type()->set_type_strindex(1);
  p->mutable_sample_type()->set_unit_strindex(2);
  auto* s = p->add_samples();
  s->set_stack_index(1);
  s->add_attribute_indices(1);
  s->set_link_index(1);
  s->add_values(7);
  s->add_timestamps_unix_nano(5);  // one fixed64: 8 bytes packed (a varint would be 1)
  p->set_time_unix_nano(5);
  p->set_duration_nano(10);
  p->mutable_period_type()->set_type_strindex(3);
  p->mutable_period_type()->set_unit_strindex(2);
  p->set_period(10'000'000);
  p->set_profile_id(std::string(16, '\x66'));
  p->set_dropped_attributes_count(1);
  p->set_original_payload_format("pprof");
  p->set_original_payload("raw");
  p->add_attribute_indices(1);
  sp->set_schema_url("https://s");
  rp->set_schema_url("https://r");

  auto* d = req.mutable_dictionary();
  d->add_mapping_table();  // [0] = zero value
  auto* m = d->add_mapping_table();
  m->set_memory_start(0x1000);
  m->set_memory_limit(0x2000);
  m->set_file_offset(0x100);
  m->set_filename_strindex(4);
  m->add_attribute_indices(2);
  d->add_location_table();
  auto* loc = d->add_location_table();
  loc->set_mapping_index(1);
  loc->set_address(0x1234);
  auto* line = loc->add_lines();
  line->set_function_index(1);
  line->set_line(42);
  line->set_column(3);
  loc->add_attribute_indices(3);
  d->add_function_table();
  auto* f = d->add_function_table();
  f->set_name_strindex(5);
  f->set_system_name_strindex(6);
  f->set_filename_strindex(7);
  f->set_start_line(40);
  d->add_link_table();
  auto* link = d->add_link_table();
  link->set_trace_id(std::string(16, '\x11'));
  link->set_span_id(std::string(8, '\x22'));
  d->add_string_table("");
  d->add_attribute_table();
  auto* attr = d->add_attribute_table();
  attr->set_key_strindex(8);
  attr->mutable_value()->set_int_value(1234);
  attr->set_unit_strindex(9);
  d->add_stack_table();
  d->add_stack_table()->add_location_indices(1);
  return req.SerializeAsString();
}

const std::vector<Expect> kOtlpProfilesRequest = {
    {"ExportProfilesServiceRequest.resource_profiles", "1", Wire::kMsg},
    {"ResourceProfiles.resource", "1.1", Wire::kLen},
    {"ResourceProfiles.scope_profiles", "1.2", Wire::kMsg},
    {"ScopeProfiles.scope", "1.2.1", Wire::kLen},
    {"ScopeProfiles.profiles", "1.2.2", Wire::kMsg},
    {"Profile.sample_type", "1.2.2.1", Wire::kMsg},
    {"ValueType.type_strindex", "1.2.2.1.1", Wire::kVarint},
    {"ValueType.unit_strindex", "1.2.2.1.2", Wire::kVarint},
    {"Profile.samples", "1.2.2.2", Wire::kMsg},
    {"Sample.stack_index", "1.2.2.2.1", Wire::kVarint},
    {"Sample.attribute_indices (packed int32)", "1.2.2.2.2", Wire::kLen, 1},
    {"Sample.link_index", "1.2.2.2.3", Wire::kVarint},
    {"Sample.values (packed int64)", "1.2.2.2.4", Wire::kLen, 1},
    {"Sample.timestamps_unix_nano (packed fixed64)", "1.2.2.2.5", Wire::kLen, 8},
    {"Profile.time_unix_nano (fixed64)", "1.2.2.3", Wire::kI64},
    {"Profile.duration_nano", "1.2.2.4", Wire::kVarint},
    {"Profile.period_type", "1.2.2.5", Wire::kMsg},
    {"ValueType.type_strindex", "1.2.2.5.1", Wire::kVarint},
    {"ValueType.unit_strindex", "1.2.2.5.2", Wire::kVarint},
    {"Profile.period", "1.2.2.6", Wire::kVarint},
    {"Profile.profile_id", "1.2.2.7", Wire::kLen, 16},
    {"Profile.dropped_attributes_count", "1.2.2.8", Wire::kVarint},
    {"Profile.original_payload_format", "1.2.2.9", Wire::kLen},
    {"Profile.original_payload", "1.2.2.10", Wire::kLen},
    {"Profile.attribute_indices (packed int32)", "1.2.2.11", Wire::kLen, 1},
    {"ScopeProfiles.schema_url", "1.2.3", Wire::kLen},
    {"ResourceProfiles.schema_url", "1.3", Wire::kLen},
    {"ExportProfilesServiceRequest.dictionary", "2", Wire::kMsg},
    {"ProfilesDictionary.mapping_table", "2.1", Wire::kMsg},
    {"Mapping.memory_start", "2.1.1", Wire::kVarint},
    {"Mapping.memory_limit", "2.1.2", Wire::kVarint},
    {"Mapping.file_offset", "2.1.3", Wire::kVarint},
    {"Mapping.filename_strindex", "2.1.4", Wire::kVarint},
    {"Mapping.attribute_indices (packed int32)", "2.1.5", Wire::kLen, 1},
    {"ProfilesDictionary.location_table", "2.2", Wire::kMsg},
    {"Location.mapping_index", "2.2.1", Wire::kVarint},
    {"Location.address", "2.2.2", Wire::kVarint},
    {"Location.lines", "2.2.3", Wire::kMsg},
    {"Line.function_index", "2.2.3.1", Wire::kVarint},
    {"Line.line", "2.2.3.2", Wire::kVarint},
    {"Line.column", "2.2.3.3", Wire::kVarint},
    {"Location.attribute_indices (packed int32)", "2.2.4", Wire::kLen, 1},
    {"ProfilesDictionary.function_table", "2.3", Wire::kMsg},
    {"Function.name_strindex", "2.3.1", Wire::kVarint},
    {"Function.system_name_strindex", "2.3.2", Wire::kVarint},
    {"Function.filename_strindex", "2.3.3", Wire::kVarint},
    {"Function.start_line", "2.3.4", Wire::kVarint},
    {"ProfilesDictionary.link_table", "2.4", Wire::kMsg},
    {"Link.trace_id", "2.4.1", Wire::kLen, 16},
    {"Link.span_id", "2.4.2", Wire::kLen, 8},
    {"ProfilesDictionary.string_table", "2.5", Wire::kLen},
    {"ProfilesDictionary.attribute_table", "2.6", Wire::kMsg},
    {"KeyValueAndUnit.key_strindex", "2.6.1", Wire::kVarint},
    {"KeyValueAndUnit.value", "2.6.2", Wire::kMsg},
    {"AnyValue.int_value", "2.6.2.3", Wire::kVarint},
    {"KeyValueAndUnit.unit_strindex", "2.6.3", Wire::kVarint},
    {"ProfilesDictionary.stack_table", "2.7", Wire::kMsg},
    {"Stack.location_indices (packed int32)", "2.7.1", Wire::kLen, 1},
};

std::string PyroscopePush() {
  push::v1::PushRequest req;
  auto* series = req.add_series();
  auto* label = series->add_labels();
  label->set_name("__name__");
  label->set_value("process_cpu");
  auto* sample = series->add_samples();
  sample->set_raw_profile(PprofProfile());
  sample->set_id("0b7c1a5e-8b53-4d54-9a0f-2d4f0f0e9a11");
  auto* ann = series->add_annotations();
  ann->set_key("k");
  ann->set_value("v");
  return req.SerializeAsString();
}

const std::vector<Expect> kPyroscopePush = {
    {"PushRequest.series", "1", Wire::kMsg},
    {"RawProfileSeries.labels", "1.1", Wire::kMsg},
    {"LabelPair.name", "1.1.1", Wire::kLen},
    {"LabelPair.value", "1.1.2", Wire::kLen},
    {"RawProfileSeries.samples", "1.2", Wire::kMsg},
    {"RawSample.raw_profile", "1.2.1", Wire::kLen},
    {"RawSample.ID", "1.2.2", Wire::kLen, 36},
    {"RawProfileSeries.annotations", "1.3", Wire::kMsg},
    {"ProfileAnnotation.key", "1.3.1", Wire::kLen},
    {"ProfileAnnotation.value", "1.3.2", Wire::kLen},
};

std::string PyroscopeQuery() {
  querier::v1::SelectMergeProfileRequest req;
  req.set_profile_type_id("process_cpu:cpu:nanoseconds:cpu:nanoseconds");
  req.set_label_selector("{service_name=\"shop\"}");
  req.set_start(1795431600000);
  req.set_end(1795435200000);
  req.set_max_nodes(1024);
  return req.SerializeAsString();
}

// Pyroscope's public query API (WIRE-FORMATS.md §4; numbers from its querier.v1 schema).
const std::vector<Expect> kPyroscopeQuery = {
    {"SelectMergeProfileRequest.profile_typeID", "1", Wire::kLen},
    {"SelectMergeProfileRequest.label_selector", "2", Wire::kLen},
    {"SelectMergeProfileRequest.start (ms)", "3", Wire::kVarint},
    {"SelectMergeProfileRequest.end (ms)", "4", Wire::kVarint},
    {"SelectMergeProfileRequest.max_nodes", "5", Wire::kVarint},
};

std::string OtlpPartialSuccess() {
  opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceResponse r;
  r.mutable_partial_success()->set_rejected_profiles(2);
  r.mutable_partial_success()->set_error_message("bad");
  return r.SerializeAsString();
}

const std::vector<Expect> kOtlpPartialSuccess = {
    {"ExportProfilesServiceResponse.partial_success", "1", Wire::kMsg},
    {"ExportProfilesPartialSuccess.rejected_profiles", "1.1", Wire::kVarint},
    {"ExportProfilesPartialSuccess.error_message", "1.2", Wire::kLen},
};

TEST(WireNumbers, MatchWireFormatsTables) {
  const std::vector<Case> cases = {
      {"pprof Profile", PprofProfile, kPprofProfile},
      {"OTLP Span", OtlpSpan, kOtlpSpan},
      {"OTLP ExportTraceServiceRequest", OtlpTraceRequest, kOtlpTraceRequest},
      {"OTLP KeyValue/AnyValue", OtlpAnyValues, kOtlpAnyValues},
      {"OTLP ExportProfilesServiceRequest", OtlpProfilesRequest, kOtlpProfilesRequest},
      {"OTLP ExportProfilesServiceResponse", OtlpPartialSuccess, kOtlpPartialSuccess},
      {"Pyroscope PushRequest", PyroscopePush, kPyroscopePush},
      {"Pyroscope SelectMergeProfileRequest", PyroscopeQuery, kPyroscopeQuery},
  };
  for (const Case& c : cases) CheckCase(c);
}

// The checker itself must be able to fail: a varint where the table says fixed64 is caught.
TEST(WireNumbers, CheckerRejectsWrongWireType) {
  std::vector<RawField> raw = ParseDecodeRaw(DecodeRaw(std::string("\x38\x05", 2)));  // 7: 5
  ASSERT_EQ(raw.size(), 1u);
  EXPECT_EQ(raw[0].path, "7");
  EXPECT_EQ(raw[0].wire, Wire::kVarint);
  raw = ParseDecodeRaw(DecodeRaw(OtlpSpan()));
  bool found_i64_at_7 = false;
  for (const RawField& f : raw) found_i64_at_7 |= f.path == "7" && f.wire == Wire::kI64;
  EXPECT_TRUE(found_i64_at_7);
}

TEST(WireNumbers, GrpcMethodPathsMatch) {
  EXPECT_EQ(opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest::descriptor()
                ->file()
                ->service(0)
                ->method(0)
                ->full_name(),
            "opentelemetry.proto.collector.trace.v1.TraceService.Export");
  EXPECT_EQ(opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest::
                descriptor()
                    ->file()
                    ->service(0)
                    ->method(0)
                    ->full_name(),
            "opentelemetry.proto.collector.profiles.v1development.ProfilesService.Export");
  EXPECT_EQ(push::v1::PushRequest::descriptor()->file()->service(0)->method(0)->full_name(),
            "push.v1.PusherService.Push");
}

}  // namespace
