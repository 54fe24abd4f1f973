// Writes the seed corpora of fuzz/corpus/<harness>/ (scripts/fuzz.sh --make-corpus runs it;
// the files are committed). Structured seeds come from the real builders, so each is a valid
// input of its decoder; text seeds are the /proc samples of libs/proc/src/fuzz_test.cc.
//   fuzz_make_corpus <corpus dir>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/pprofutil/builder.h"
#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/spans/decode.h"
#include "flamestream/spans/receivers.h"

namespace fs = std::filesystem;
namespace v1 = flamestream::v1;
namespace batch = flamestream::batch;
namespace spans = flamestream::spans;

namespace {

fs::path g_root;
int g_failures = 0;

void Write(const std::string& harness, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_root / harness;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

void Expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "make_corpus: %s\n", what.c_str());
    ++g_failures;
  }
}

v1::SampleBatch MakeBatch(bool compact) {
  batch::BatchBuilder b;
  b.set_encoding({.compact = compact, .timestamp_unit_ns = compact ? 1000 : 1,
                  .sort_locations = compact});
  b.SetHeader("prod/node-1/4f2a", 42, "prod", "node-1");
  b.mutable_batch().set_stage(compact ? v1::STAGE_RAW : v1::STAGE_CORRELATED);
  b.mutable_batch().set_frequency_hz(99);
  b.mutable_batch().set_period_ns(1'000'000'000 / 99);
  v1::Mapping m;
  m.set_path_strx(b.InternString("/usr/lib/x86_64-linux-gnu/libc.so.6"));
  m.set_build_id("\x3a\x5f\x01\x02");
  m.set_kind(v1::MAPPING_KIND_FILE);
  const uint32_t mi = b.InternMapping(m);
  v1::Location leaf;
  leaf.set_mapping_index(mi);
  leaf.set_address(0x29d90);
  v1::Line* line = leaf.add_lines();
  line->set_function_strx(b.InternString("memcpy"));
  line->set_file_strx(b.InternString("memcpy.S"));
  line->set_line(42);
  const uint32_t l0 = b.InternLocation(leaf);
  v1::Location kernel;
  kernel.set_address(0xffffffff81000000);
  kernel.set_symbol_strx(b.InternString("do_syscall_64"));
  const uint32_t l1 = b.InternLocation(kernel);
  v1::Location main_loc;
  main_loc.set_mapping_index(mi);
  main_loc.set_address(0x1234);
  const uint32_t l2 = b.InternLocation(main_loc);
  const std::vector<uint32_t> s0 = {l1, l0, l2};
  const std::vector<uint32_t> s1 = {l0, l2};
  const uint32_t st0 = b.InternStack(s0);
  const uint32_t st1 = b.InternStack(s1);
  uint32_t sp = 0;
  if (!compact) {
    v1::SpanRef span;
    span.set_trace_id(std::string(16, '\x11'));
    span.set_span_id(std::string(8, '\x22'));
    sp = b.InternSpan(span);
  }
  b.AddThread(1234, 1235, "worker");
  const int64_t t0 = 1'700'000'000'000'000'000;
  for (int i = 0; i < 6; ++i) {
    b.AddSample({.stack_index = i % 2 == 0 ? st0 : st1,
                 .pid = 1234,
                 .tid = 1235u + static_cast<uint32_t>(i % 2),
                 .cpu = static_cast<uint32_t>(i % 3),
                 .timestamp_ns = t0 + i * 10'101'010,
                 .value_ns = i == 3 ? 5'000'000 : 0,
                 .span_index = i == 1 ? sp : 0});
  }
  return b.Finish();
}

spans::otlp::ExportTraceServiceRequest MakeRequest() {
  spans::otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto add_attr = [](auto* attrs, const std::string& k, const std::string& v) {
    auto* kv = attrs->Add();
    kv->set_key(k);
    kv->mutable_value()->set_string_value(v);
  };
  add_attr(rs->mutable_resource()->mutable_attributes(), "service.name", "shop");
  add_attr(rs->mutable_resource()->mutable_attributes(), "host.name", "node-1");
  add_attr(rs->mutable_resource()->mutable_attributes(), "k8s.node.name", "node-1");
  auto* pid = rs->mutable_resource()->add_attributes();
  pid->set_key("process.pid");
  pid->mutable_value()->set_int_value(1234);
  auto* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("io.opentelemetry.http");
  for (int i = 0; i < 2; ++i) {
    auto* span = ss->add_spans();
    span->set_trace_id(std::string(16, static_cast<char>(0x10 + i)));
    span->set_span_id(std::string(8, static_cast<char>(0x20 + i)));
    if (i == 1) span->set_parent_span_id(std::string(8, '\x20'));
    span->set_name(i == 0 ? "GET /cart" : "SELECT cart");
    span->set_kind(i == 0 ? opentelemetry::proto::trace::v1::Span::SPAN_KIND_SERVER
                          : opentelemetry::proto::trace::v1::Span::SPAN_KIND_CLIENT);
    span->set_start_time_unix_nano(1'700'000'000'000'000'000ull + i * 1000);
    span->set_end_time_unix_nano(1'700'000'000'050'000'000ull);
    add_attr(span->mutable_attributes(), "http.route", "/cart");
    auto* tid = span->add_attributes();
    tid->set_key("thread.id");
    tid->mutable_value()->set_int_value(1235);
    span->mutable_status()->set_code(opentelemetry::proto::trace::v1::Status::STATUS_CODE_OK);
  }
  return req;
}

// OTLP/JSON of the same shape (hex ids, 64-bit integers as strings), plus every AnyValue kind.
const char* kJsonRequest = R"({"resourceSpans":[{"resource":{"attributes":[
 {"key":"service.name","value":{"stringValue":"shop"}},
 {"key":"host.name","value":{"stringValue":"node-1"}},
 {"key":"k8s.node.name","value":{"stringValue":"node-1"}},
 {"key":"process.pid","value":{"intValue":"1234"}}]},
 "scopeSpans":[{"scope":{"name":"io.opentelemetry.http","version":"1.0"},"spans":[
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
  "name":"GET /cart","kind":2,"startTimeUnixNano":"1700000000000000000",
  "endTimeUnixNano":"1700000000050000000","status":{"code":"STATUS_CODE_OK"},
  "attributes":[{"key":"http.route","value":{"stringValue":"/cart"}},
   {"key":"thread.id","value":{"intValue":1235}},
   {"key":"a","value":{"arrayValue":{"values":[{"boolValue":true},{"doubleValue":"NaN"},
    {"kvlistValue":{"values":[{"key":"k","value":{"bytesValue":"AAE="}}]}}]}}}]},
 {"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b175",
  "parent_span_id":"eee19b7ec3c1b174","name":"SELECT cart","kind":"SPAN_KIND_CLIENT",
  "start_time_unix_nano":1700000000000001000,"end_time_unix_nano":1700000000040000000,
  "flags":256,"droppedAttributesCount":0}]}]}]})";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];

  // batch
  for (bool compact : {false, true}) {
    const v1::SampleBatch b = MakeBatch(compact);
    Expect(batch::Validate(b).ok(), "batch seed does not validate");
    Write("batch", compact ? "compact.pb" : "plain.pb", b.SerializeAsString());
  }
  {
    v1::SampleBatch empty = MakeBatch(false);
    empty.clear_samples();
    Write("batch", "no-samples.pb", empty.SerializeAsString());
  }

  // OTLP traces, protobuf and JSON; the HTTP handler's inputs are "<Content-Type>\n<body>".
  const std::string proto = MakeRequest().SerializeAsString();
  Expect(spans::DecodeProtobuf(proto).ok(), "OTLP protobuf seed does not decode");
  Expect(spans::DecodeJson(kJsonRequest).ok(), "OTLP/JSON seed does not decode");
  Write("otlp_traces_proto", "request.pb", proto);
  Write("otlp_traces_proto", "empty.pb", "");
  Write("otlp_traces_json", "request.json", kJsonRequest);
  Write("otlp_traces_json", "empty.json", "{}");
  Write("otlp_traces_json", "empty-resource.json", R"({"resourceSpans":[{"scopeSpans":[]}]})");
  Write("http_request", "proto.req", "application/x-protobuf\n" + proto);
  Write("http_request", "json.req", std::string("Application/JSON; charset=utf-8\n") + kJsonRequest);
  Write("http_request", "bad-json.req", "application/json\n{\"resourceSpans\":[{\"scopeSpans\":"
                                        "[{\"spans\":[{\"traceId\":\"zz\"}]}]}]}");
  Write("http_request", "unsupported.req", "text/plain\nhello");
  Write("http_request", "rpc-status.bin",
        spans::EncodeRpcStatus(14, "unavailable", std::chrono::seconds(5)));

  // pprof, raw and gzip (what the file sink writes and Pyroscope answers).
  flamestream::pprofutil::ProfileBuilder pb("cpu", "nanoseconds");
  pb.AddFolded("main;work;crc32", 30'000'000, {{"span_name", "GET /cart"}, {"service_name", "shop"}});
  pb.Add({{"memcpy"}, {"inlined_helper", "caller"}, {"main"}}, 10'000'000);
  pb.AddUnsymbolized("/usr/lib/libfoo.so", 0x7f0000000000, 0x1234, 5'000'000);
  const std::string raw = pb.Build().SerializeAsString();
  Write("pprof", "cpu.pb", raw);
  Write("pprof", "cpu.pb.gz", *flamestream::pprofutil::Gzip(raw));

  // /proc text: the seeds of libs/proc/src/fuzz_test.cc, one per parser, and a few more.
  Write("proc_maps", "maps.txt",
        "55d0c0de0000-55d0c0de2000 r-xp 00001000 fd:01 1234567   /usr/bin/x\n"
        "7ffd1000-7ffd3000 r-xp 00000000 00:00 0   [vdso]\n");
  Write("proc_maps", "maps-kinds.txt",
        "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n"
        "00e03000-00e24000 rw-p 00000000 00:00 0           [heap]\n"
        "7f2c4f000000-7f2c4f021000 rw-p 00000000 00:00 0 \n"
        "7f2c50000000-7f2c50001000 r-xs 00000000 00:05 99    /memfd:jit (deleted)\n"
        "7f2c51000000-7f2c51002000 r-xp 00002000 fd:01 77    /opt/app/lib with space.so (deleted)\n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0   [vsyscall]\n");
  Write("proc_status", "stat.txt",
        "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n");
  Write("proc_status", "status.txt",
        "Name:\tworker\nTgid:\t4711\nPid:\t4712\nPPid:\t4700\nNStgid:\t4711\t1\nNSpid:\t4712\t2\n");
  Write("proc_status", "status-old-kernel.txt", "Name:\tsh\nState:\tS (sleeping)\nTgid:\t7\nPid:\t7\nPPid:\t1\n");
  Write("proc_cgroup", "cgroup.txt",
        "0::/kubepods.slice/kubepods-pod0a1b2c3d_0000_1111_2222_333344445555.slice/"
        "cri-containerd-3f1c2b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e.scope\n"
        "12:memory:/docker/3f1c2b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e\n");
  Write("proc_cgroup", "cgroup-v1.txt",
        "11:cpuset:/kubepods/besteffort/pod0a1b2c3d-0000-1111-2222-333344445555/"
        "3f1c2b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e\n"
        "1:name=systemd:/system.slice/crio-3f1c2b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e.scope\n");
  Write("proc_cgroup", "cgroup-podman.txt",
        "0::/user.slice/user-1000.slice/user@1000.service/user.slice/"
        "libpod-3f1c2b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e.scope/container\n");
  Write("proc_kallsyms", "kallsyms.txt",
        "ffffffff81000000 T _stext\nffffffffc0a01000 t mod_fn\t[nf_tables]\n");
  Write("proc_kallsyms", "kallsyms-more.txt",
        "0000000000000000 A fixed_percpu_data\nffffffff81000000 T startup_64\n"
        "ffffffff81000040 T secondary_startup_64\nffffffff81001000 t xen_hypercall\n"
        "ffffffff81002000 W weak_fn\nffffffffc0200000 t ext4_fn\t[ext4]\n"
        "ffffffffc0200100 d ext4_data\t[ext4]\n");

  // config YAML: every key type of fuzz/config_yaml.cc's schema.
  Write("config_yaml", "all-types.yaml",
        "service:\n  name: shop\nagent:\n  print: true\n  frequency: 99\n"
        "  user_stack_depth: 127\n  spool:\n    limit: 64MiB\n  batch.encoding: plain\n"
        "clock.offset: -42\nlimits.records: 18446744073709551615\nratio: 0.25\n"
        "shutdown:\n  deadline: 1m30s\nsymbolizer:\n  debug_dirs: [/usr/lib/debug, ./debug]\n"
        "kafka:\n  bootstrap.servers: kafka:9092\n  sasl:\n    mechanism: PLAIN\n"
        "a: {b: {c: {d: {e: deep}}}}\n");
  Write("config_yaml", "flow.yaml",
        "{agent.frequency: 19, symbolizer.debug_dirs: [], service.name: ~, agent.print: false}\n");
  Write("config_yaml", "bad.yaml", "agent:\n  frequency: [1, 2]\nunknown.key: 1\n");

  std::printf("make_corpus: wrote %s (%d problems)\n", g_root.c_str(), g_failures);
  return g_failures == 0 ? 0 : 1;
}
