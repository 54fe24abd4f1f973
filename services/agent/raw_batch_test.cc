#include "raw_batch.h"

#include <gtest/gtest.h>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/cursor.h"

namespace flamestream::agent {
namespace {

UserFrame FileFrame(uint64_t addr, uint64_t off, bool ret) {
  UserFrame f;
  f.address = addr;
  f.return_address = ret;
  f.resolved = true;
  f.location.kind = proc::MappingKind::kFile;
  f.location.path = "/usr/bin/app";
  f.location.build_id = "0a0b0c";
  f.location.file_offset = off;
  return f;
}

ResolvedSample Sample(uint32_t pid, uint64_t wall) {
  ResolvedSample s;
  s.pid = pid;
  s.tid = pid + 1;
  s.cpu = 1;
  s.wall_ns = wall;
  s.comm = "app";
  s.user = {FileFrame(0x5000, 0x1000, false), FileFrame(0x6000, 0x2000, true)};
  s.kernel = {0xffffffff81000105};
  return s;
}

TEST(RawBatchEncoder, EncodesValidBatchesWithDedupedTablesAndIncreasingSequence) {
  Result<proc::KernelSymbols> ks = proc::KernelSymbols::Parse(
      "ffffffff81000100 T ksys_read\n");
  ASSERT_TRUE(ks.ok());
  bpf::ClockOffset clock;
  RawBatchEncoder enc({.agent_id = "c/n/1", .cluster = "c", .node = "n", .frequency_hz = 99,
                       .first_sequence = 7},
                      &clock, &*ks);
  EXPECT_FALSE(enc.Flush().has_value());
  proc::ProcessInfo p;
  p.pid = 10;
  p.ns_pid = 1;
  p.comm = "app";
  p.cgroup.container_id = "abc";
  for (int i = 0; i < 3; ++i) enc.OnSample(Sample(10, 1000 + i), p);
  EXPECT_EQ(enc.pending_samples(), 3u);
  std::optional<v1::SampleBatch> b = enc.Flush();
  ASSERT_TRUE(b.has_value());
  ASSERT_TRUE(batch::Validate(*b).ok()) << batch::Validate(*b);
  EXPECT_EQ(b->id().sequence(), 7u);
  EXPECT_EQ(b->stage(), v1::STAGE_RAW);
  EXPECT_EQ(b->period_ns(), 1'000'000'000 / 99);
  EXPECT_EQ(b->stacks_size(), 1);      // three identical stacks
  EXPECT_EQ(b->mappings_size(), 2);    // the binary and [kernel]
  EXPECT_EQ(b->locations_size(), 3);
  ASSERT_EQ(b->processes_size(), 1);
  EXPECT_EQ(b->processes(0).ns_pid(), 1u);
  EXPECT_EQ(b->processes(0).container_id(), "abc");
  // Leaf first: kernel leaf, then the user leaf (not a return address), then its caller.
  const v1::Stack& st = b->stacks(0);
  ASSERT_EQ(st.location_indices_size(), 3);
  const v1::Location& k = b->locations(static_cast<int>(st.location_indices(0)));
  EXPECT_EQ(b->strings(static_cast<int>(k.symbol_strx())), "ksys_read");
  EXPECT_EQ(k.symbol_offset(), 5u);
  const v1::Location& leaf = b->locations(static_cast<int>(st.location_indices(1)));
  EXPECT_EQ(leaf.address(), 0x1000u);
  EXPECT_FALSE(leaf.is_return_address());
  const v1::Location& caller = b->locations(static_cast<int>(st.location_indices(2)));
  EXPECT_EQ(caller.address(), 0x2000u);
  EXPECT_TRUE(caller.is_return_address());
  const v1::Mapping& m = b->mappings(static_cast<int>(leaf.mapping_index() - 1));
  EXPECT_EQ(m.build_id(), std::string("\x0a\x0b\x0c", 3));
  EXPECT_EQ(b->strings(static_cast<int>(m.path_strx())), "/usr/bin/app");

  enc.OnSample(Sample(10, 5000), p);
  std::optional<v1::SampleBatch> b2 = enc.Flush();
  ASSERT_TRUE(b2.has_value());
  EXPECT_EQ(b2->id().sequence(), 8u);
  EXPECT_EQ(b2->processes_size(), 1);  // re-listed in every batch it has samples in
}

}  // namespace
}  // namespace flamestream::agent
