// Wire size of a realistic raw batch: the raw topic must stay <= 16 bytes/sample after zstd
// (ARCHITECTURE.md). Prints the numbers (ctest -V or the test log) and fails above budget.
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"

namespace flamestream::batch {
namespace {

constexpr double kMaxZstdBytesPerSample = 16.0;

struct Workload {
  int samples = 10'000;
  int stacks = 200;
  int cpus = 4;
  int processes = 8;
  int threads_per_process = 5;
  uint32_t seed = 42;
  SampleEncoding encoding;  // plain by default; the agent writes compact
};

// Builds a batch shaped like an agent's: stacks are random walks down a shared call tree
// (so they share root frames, as real stacks do), about a third end in kernel frames,
// samples pick stacks with a skewed (Zipf-like) distribution, each stack belongs to one
// thread, and timestamps come from per-CPU 99 Hz timers with jitter, interleaved slightly
// out of order as a shared ring buffer delivers them.
v1::SampleBatch BuildRealisticBatch(const Workload& w) {
  std::mt19937 rng(w.seed);
  BatchBuilder b;
  b.set_encoding(w.encoding);
  b.SetHeader("prod/node-17/8c1e2f", 123456, "prod", "node-17");
  constexpr int64_t kPeriod = 1'000'000'000 / 99;
  b.mutable_batch().set_period_ns(kPeriod);
  b.mutable_batch().set_frequency_hz(99);
  b.mutable_batch().set_clock_offset_ns(1'763'000'000'123'456'789);

  const char* kLibs[] = {"/usr/bin/checkout-service", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                         "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                         "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                         "/usr/lib/x86_64-linux-gnu/libz.so.1"};
  std::vector<uint32_t> user_mappings;
  for (int i = 0; i < 5; ++i) {
    v1::Mapping m;
    m.set_memory_start(0x7f0000000000 + 0x10000000ull * i);
    m.set_memory_limit(m.memory_start() + 0x200000);
    m.set_file_offset(0x1000);
    m.set_path_strx(b.InternString(kLibs[i]));
    std::string build_id(20, '\0');
    for (char& c : build_id) c = static_cast<char>(rng());
    m.set_build_id(build_id);
    m.set_kind(v1::MAPPING_KIND_FILE);
    user_mappings.push_back(b.InternMapping(m));
  }
  v1::Mapping kernel;
  kernel.set_path_strx(b.InternString("[kernel.kallsyms]"));
  kernel.set_kind(v1::MAPPING_KIND_KERNEL);
  const uint32_t kernel_mapping = b.InternMapping(kernel);

  // Call tree: a node's children are picked from a per-node pool, so paths share prefixes.
  std::uniform_int_distribution<int> depth_dist(8, 40);
  std::uniform_int_distribution<int> fanout(0, 3);
  std::uniform_int_distribution<uint64_t> offset(0x1000, 0x1fffff);
  std::uniform_int_distribution<int> lib(0, 4);
  std::vector<std::vector<uint32_t>> stacks;
  for (int s = 0; s < w.stacks; ++s) {
    std::vector<uint32_t> root_first;
    uint64_t node = 1;
    const int depth = depth_dist(rng);
    for (int d = 0; d < depth; ++d) {
      node = node * 4 + static_cast<uint64_t>(fanout(rng));
      std::mt19937_64 frame_rng(node);  // same tree node -> same frame
      v1::Location loc;
      loc.set_mapping_index(user_mappings[frame_rng() % 5]);
      loc.set_address(0x1000 + frame_rng() % 0x1ff000);
      loc.set_is_return_address(true);
      root_first.push_back(b.InternLocation(loc));
    }
    std::vector<uint32_t> leaf_first(root_first.rbegin(), root_first.rend());
    // Leaf is not a return address.
    v1::Location leaf = b.batch().locations(static_cast<int>(leaf_first[0]));
    leaf.set_is_return_address(false);
    leaf_first[0] = b.InternLocation(leaf);
    if (s % 3 == 0) {  // syscall path: a few kernel frames on top
      const char* kSyms[] = {"copy_user_enhanced_fast_string",
                             "tcp_sendmsg",
                             "sock_sendmsg",
                             "__sys_sendto",
                             "do_syscall_64",
                             "entry_SYSCALL_64_after_hwframe"};
      std::vector<uint32_t> kframes;
      const int first = static_cast<int>(rng() % 3);
      for (int k = first; k < 6; ++k) {
        v1::Location kl;
        kl.set_mapping_index(kernel_mapping);
        kl.set_address(0xffffffff81000000 + 0x1000ull * k + rng() % 64);
        kl.set_is_return_address(k != first);
        kl.set_symbol_strx(b.InternString(kSyms[k]));
        kl.set_symbol_offset(kl.address() & 0xfff);
        kframes.push_back(b.InternLocation(kl));
      }
      leaf_first.insert(leaf_first.begin(), kframes.begin(), kframes.end());
    }
    stacks.push_back(leaf_first);
  }
  std::vector<uint32_t> stack_ids;
  for (const auto& s : stacks) stack_ids.push_back(b.InternStack(s));

  // Processes and threads; each stack belongs to one thread.
  struct Tid {
    uint32_t pid, tid;
  };
  std::vector<Tid> tids;
  for (int p = 0; p < w.processes; ++p) {
    const uint32_t pid = 3000 + static_cast<uint32_t>(p) * 137;
    v1::Process proc;
    proc.set_host_pid(pid);
    proc.set_ns_pid(1);
    proc.set_container_id(std::string(64, static_cast<char>('a' + p)));
    proc.set_pod_uid("2f1c7a9e-5d1b-4a2e-9c3f-" + std::to_string(100000000000 + p));
    proc.set_comm("checkout");
    proc.set_exe(kLibs[0]);
    proc.set_start_time_unix_ns(1'763'000'000'000'000'000 + p);
    proc.set_cgroup_path("/kubepods.slice/kubepods-burstable.slice/cri-containerd-" +
                         proc.container_id() + ".scope");
    b.AddProcess(proc);
    for (int t = 0; t < w.threads_per_process; ++t) {
      const uint32_t tid = pid + static_cast<uint32_t>(t);
      b.AddThread(pid, tid, t == 0 ? "checkout" : "worker-" + std::to_string(t));
      tids.push_back({pid, tid});
    }
  }
  std::vector<Tid> stack_thread;
  for (int s = 0; s < w.stacks; ++s) stack_thread.push_back(tids[rng() % tids.size()]);

  // Zipf-like stack popularity.
  std::vector<double> weights;
  for (int s = 0; s < w.stacks; ++s) weights.push_back(1.0 / (s + 1));
  std::discrete_distribution<int> pick(weights.begin(), weights.end());

  // Per-CPU 99 Hz timers with +-50 us jitter, merged, then locally shuffled.
  struct Tick {
    int64_t t;
    uint32_t cpu;
  };
  std::vector<Tick> ticks;
  const int64_t t0 = 1'763'900'000'000'000'000;
  std::uniform_int_distribution<int64_t> jitter(-50'000, 50'000);
  std::uniform_int_distribution<int64_t> phase(0, kPeriod);
  for (int c = 0; c < w.cpus; ++c) {
    const int64_t start = t0 + phase(rng);
    for (int i = 0; i < w.samples / w.cpus; ++i) {
      ticks.push_back({start + i * kPeriod + jitter(rng), static_cast<uint32_t>(c)});
    }
  }
  std::sort(ticks.begin(), ticks.end(), [](const Tick& a, const Tick& c) { return a.t < c.t; });
  for (size_t i = 0; i + 1 < ticks.size(); i += 2) {
    if (rng() % 4 == 0) std::swap(ticks[i], ticks[i + 1]);
  }
  for (const Tick& tick : ticks) {
    const int s = pick(rng);
    b.AddSample({.stack_index = stack_ids[static_cast<size_t>(s)],
                 .pid = stack_thread[static_cast<size_t>(s)].pid,
                 .tid = stack_thread[static_cast<size_t>(s)].tid,
                 .cpu = tick.cpu,
                 .timestamp_ns = tick.t});
  }
  return b.Finish();
}

size_t ZstdSize(const std::string& bytes, int level) {
  std::string out(ZSTD_compressBound(bytes.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), bytes.data(), bytes.size(), level);
  EXPECT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
  return n;
}

TEST(BatchSize, RawBatchFitsSixteenBytesPerSampleAfterZstd) {
  struct Row {
    const char* name;
    Workload w;
    bool enforce;  // budget applies to the agent's target batch size
  };
  const SampleEncoding kAgent{.compact = true, .timestamp_unit_ns = 1000, .sort_locations = true};
  const std::vector<Row> rows = {
      {"plain, 10000 samples / 200 stacks", Workload{}, true},
      {"plain, 1000 samples / 100 stacks", Workload{.samples = 1000, .stacks = 100}, false},
      {"agent (compact), 10000 samples / 200 stacks", Workload{.encoding = kAgent}, true},
      {"agent (compact), 1000 samples / 100 stacks",
       Workload{.samples = 1000, .stacks = 100, .encoding = kAgent}, false},
  };
  std::vector<double> column_bytes;  // zstd-3 of the sample columns, per row
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const v1::SampleBatch batch = BuildRealisticBatch(row.w);
    ASSERT_EQ(Validate(batch), OkStatus());
    ASSERT_EQ(SampleCount(batch), row.w.samples);
    ASSERT_EQ(batch.stacks_size(), row.w.stacks);
    const std::string bytes = batch.SerializeAsString();
    v1::SampleBatch samples_only;
    *samples_only.mutable_samples() = batch.samples();
    const std::string samples_bytes = samples_only.SerializeAsString();
    const double n = row.w.samples;
    const size_t z3 = ZstdSize(bytes, 3);  // librdkafka's default zstd level
    std::printf(
        "[batch size] %s: %d locations, %d strings; serialized %zu B = %.2f B/sample "
        "(sample columns alone %.2f B/sample, %.2f after zstd-3); zstd-3 %zu B = %.2f B/sample; "
        "zstd-1 %.2f B/sample, zstd-9 %.2f B/sample\n",
        row.name, batch.locations_size(), batch.strings_size(), bytes.size(), bytes.size() / n,
        samples_bytes.size() / n, ZstdSize(samples_bytes, 3) / n, z3, z3 / n,
        ZstdSize(bytes, 1) / n, ZstdSize(bytes, 9) / n);
    if (row.enforce) {
      EXPECT_LE(z3 / n, kMaxZstdBytesPerSample);
    }
    column_bytes.push_back(ZstdSize(samples_bytes, 3) / n);
  }
  // The compact columns (thread index, per-CPU ticks, microseconds) cost well under the
  // plain ones (pid/tid, ns deltas) for the same samples: 6.2 -> 2.6 B/sample here.
  EXPECT_LT(column_bytes[2], 0.6 * column_bytes[0]);
  EXPECT_LT(column_bytes[3], 0.6 * column_bytes[1]);
}

}  // namespace
}  // namespace flamestream::batch
