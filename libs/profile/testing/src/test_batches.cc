#include "flamestream/profile/test_batches.h"

#include <random>
#include <set>

#include <fmt/format.h>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/common/strings.h"

namespace flamestream::profile::testing {
using common::Join;
namespace {

std::string Bytes(int n, uint8_t seed) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(seed + i));
  return s;
}

}  // namespace

v1::SampleBatch MakeCorrelatedBatch(const BatchSpec& spec) {
  batch::BatchBuilder b;
  b.SetHeader(spec.agent_id, spec.sequence, spec.cluster, spec.node);
  v1::SampleBatch& h = b.mutable_batch();
  h.set_stage(v1::STAGE_CORRELATED);
  h.set_frequency_hz(99);
  h.set_period_ns(1'000'000'000 / 99);
  h.set_symbol_epoch(spec.symbol_epoch);

  auto mapping = [&](std::string_view path, std::string build_id, v1::MappingKind kind) {
    v1::Mapping m;
    m.set_path_strx(b.InternString(path));
    m.set_build_id(std::move(build_id));
    m.set_kind(kind);
    m.set_memory_start(0x400000);
    m.set_memory_limit(0x800000);
    return b.InternMapping(m);
  };
  const uint32_t app = mapping("/usr/bin/checkout", Bytes(20, 0x10), v1::MAPPING_KIND_FILE);
  const uint32_t libc =
      mapping("/usr/lib/x86_64-linux-gnu/libc.so.6", Bytes(20, 0x40), v1::MAPPING_KIND_FILE);
  const uint32_t kernel = mapping("[kernel.kallsyms]", "", v1::MAPPING_KIND_KERNEL);

  // fn: list of (function, file, line) innermost first.
  struct Fn {
    const char* name;
    const char* file;
    uint32_t line;
  };
  auto resolved = [&](uint32_t m, uint64_t addr, std::vector<Fn> lines, bool ret = true) {
    v1::Location loc;
    loc.set_mapping_index(m);
    loc.set_address(addr);
    loc.set_is_return_address(ret);
    loc.set_symbol_status(v1::SYMBOL_STATUS_RESOLVED);
    for (const Fn& f : lines) {
      v1::Line* l = loc.add_lines();
      l->set_function_strx(b.InternString(f.name));
      l->set_file_strx(b.InternString(f.file));
      l->set_line(f.line);
    }
    return b.InternLocation(loc);
  };
  auto unresolved = [&](uint32_t m, uint64_t addr) {
    v1::Location loc;
    loc.set_mapping_index(m);
    loc.set_address(addr);
    loc.set_is_return_address(true);
    loc.set_symbol_status(v1::SYMBOL_STATUS_NO_DEBUG_INFO);
    return b.InternLocation(loc);
  };
  auto kernel_sym = [&](uint32_t m, uint64_t addr, const char* sym) {
    v1::Location loc;
    loc.set_mapping_index(m);
    loc.set_address(addr);
    loc.set_symbol_strx(b.InternString(sym));
    loc.set_symbol_offset(0x10);
    return b.InternLocation(loc);
  };

  const uint32_t l_main = resolved(app, 0x1100, {{"main", "app.cc", 40}});
  const uint32_t l_handle =
      resolved(app, 0x1200, {{"Parse", "parse.h", 12}, {"Handle(Request const&)", "app.cc", 30}});
  const uint32_t l_hash = resolved(app, 0x1300, {{"Hash", "hash.cc", 7}}, false);
  const uint32_t l_memcpy = resolved(libc, 0x9a000, {{"__memcpy_avx_unaligned", "memcpy.S", 300}},
                                     false);
  const uint32_t l_libc_unres = unresolved(libc, 0x29d90);
  const uint32_t l_start = unresolved(app, 0x1010);
  const uint32_t l_k_read = kernel_sym(kernel, 0xffffffff81234560, "ksys_read");
  const uint32_t l_k_entry = kernel_sym(0, 0xffffffff81000100, "entry_SYSCALL_64");
  v1::Location nomap;
  nomap.set_address(0x7f0000001234);
  const uint32_t l_nomap = b.InternLocation(nomap);

  std::vector<std::vector<uint32_t>> stacks = {
      {l_hash, l_handle, l_main, l_start, l_libc_unres},
      {l_memcpy, l_handle, l_main, l_start, l_libc_unres},
      {l_k_read, l_k_entry, l_handle, l_main, l_start},
      {l_handle, l_main},
      {l_nomap, l_main},
  };
  std::vector<uint32_t> stack_ids;
  for (const auto& s : stacks) stack_ids.push_back(b.InternStack(s));

  v1::Process p1;
  p1.set_host_pid(100);
  p1.set_ns_pid(1);
  p1.set_comm("checkout");
  p1.set_exe("/usr/bin/checkout");
  p1.set_service_name("checkout-svc");
  p1.set_container_id(std::string(64, 'a'));
  p1.set_pod_uid("pod-1");
  p1.set_start_time_ticks(11);
  b.AddProcess(p1);
  v1::Process p2;
  p2.set_host_pid(200);
  p2.set_comm("worker");
  p2.set_exe("/opt/bin/worker");
  p2.set_start_time_ticks(22);
  b.AddProcess(p2);
  v1::Process p3;
  p3.set_host_pid(300);
  p3.set_comm("kworker/1:0");
  p3.set_start_time_ticks(33);
  b.AddProcess(p3);
  b.AddThread(100, 101, "http-1");
  b.AddThread(100, 102, "http-2");
  b.AddThread(200, 200, "worker");

  v1::SpanRef s1;
  s1.set_trace_id(Bytes(16, 0xa0));
  s1.set_span_id(Bytes(8, 0xb0));
  s1.set_name("GET /checkout");
  s1.set_service_name("checkout-svc");
  const uint32_t span1 = b.InternSpan(s1);
  v1::SpanRef s2;
  s2.set_trace_id(Bytes(16, 0xc0));
  s2.set_span_id(Bytes(8, 0xd0));
  s2.set_name("POST /pay");
  s2.set_service_name("checkout-svc");
  const uint32_t span2 = b.InternSpan(s2);

  std::mt19937 rng(spec.seed * 7919 + static_cast<uint32_t>(spec.sequence));
  for (int i = 0; i < spec.samples; ++i) {
    const uint32_t which = rng() % 3;
    batch::SampleInput in;
    in.stack_index = stack_ids[rng() % stack_ids.size()];
    in.cpu = rng() % 2;
    in.timestamp_ns = spec.start_ns + static_cast<int64_t>(rng() % static_cast<uint64_t>(
                                                               std::max<int64_t>(1, spec.spread_ns)));
    if (which == 0) {
      in.pid = 100;
      in.tid = 101 + rng() % 2;
      const uint32_t sp = rng() % 3;
      in.span_index = sp == 0 ? 0 : (sp == 1 ? span1 : span2);
    } else if (which == 1) {
      in.pid = 200;
      in.tid = 200;
    } else {
      in.pid = 300;
      in.tid = 300;
      in.value_ns = 2 * h.period_ns();  // a sample standing for two periods
    }
    b.AddSample(in);
  }
  return b.Finish();
}

Expected ExpectedOf(const std::vector<v1::SampleBatch>& batches) {
  Expected e;
  std::map<std::string, std::map<std::string, int64_t>> folded;
  std::set<std::string> seen;
  for (const v1::SampleBatch& b : batches) {
    if (!seen.insert(batch::BatchIdString(b.id())).second) continue;
    auto frame_names = [&](const v1::Location& loc) {
      std::vector<std::string> names;  // innermost first
      const v1::Mapping* m = batch::MappingOf(b, loc);
      if (loc.lines_size() > 0) {
        for (const v1::Line& l : loc.lines()) names.push_back(b.strings(l.function_strx()));
      } else if (loc.symbol_strx() != 0) {
        names.push_back(b.strings(loc.symbol_strx()));
      } else if (m != nullptr) {
        std::string path = b.strings(m->path_strx());
        path = path.substr(path.rfind('/') + 1);
        names.push_back(fmt::format("{}+0x{:x}", path, loc.address()));
      } else {
        names.push_back(fmt::format("0x{:x}", loc.address()));
      }
      return names;
    };
    for (const batch::SampleRow& row : batch::DecodeSamples(b)) {
      std::string service = "unknown";
      for (const v1::Process& p : b.processes()) {
        if (p.host_pid() != row.pid) continue;
        if (!p.service_name().empty()) {
          service = p.service_name();
        } else if (!p.exe().empty()) {
          service = p.exe().substr(p.exe().rfind('/') + 1);
        } else {
          service = p.comm();
        }
      }
      std::vector<std::string> frames;
      const v1::Stack& st = b.stacks(static_cast<int>(row.stack_index));
      for (int i = st.location_indices_size() - 1; i >= 0; --i) {
        std::vector<std::string> names = frame_names(b.locations(st.location_indices(i)));
        frames.insert(frames.end(), names.rbegin(), names.rend());
      }
      folded[service][Join(frames, ";")] += 1;
      e.count[service] += 1;
      e.nanos[service] += row.value_ns;
      e.total_count += 1;
      e.total_nanos += row.value_ns;
      if (row.span_index != 0) e.span_count[b.spans(static_cast<int>(row.span_index) - 1).name()] += 1;
    }
  }
  for (const auto& [service, stacks] : folded) {
    std::string text;
    for (const auto& [stack, n] : stacks) text += fmt::format("{} {}\n", stack, n);
    e.folded[service] = text;
  }
  return e;
}

}  // namespace flamestream::profile::testing
