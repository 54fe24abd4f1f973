// The unwind table manager against in-memory maps: what a scan writes must let the BPF side
// find, for a real address of a real process, the same row the table builder gives for it.
#include "flamestream/bpf/unwinder.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>

#include "flamestream/unwind/table.h"

namespace flamestream::bpf {
namespace {

using std::chrono::seconds;

struct FakeState {
  std::mutex mu;
  std::vector<fs_unwind_row> rows;
  std::map<uint32_t, fs_unwind_table> tables;
  std::map<uint32_t, fs_unwind_proc> procs;
};

class FakeMaps final : public UnwindMaps {
 public:
  FakeMaps(std::shared_ptr<FakeState> state, uint64_t capacity) : s_(std::move(state)) {
    s_->rows.resize(capacity);
  }
  [[nodiscard]] uint64_t row_capacity() const override { return s_->rows.size(); }
  void WriteRows(uint32_t first, std::span<const fs_unwind_row> rows) override {
    std::lock_guard lock(s_->mu);
    ASSERT_LE(first + rows.size(), s_->rows.size());
    std::copy(rows.begin(), rows.end(), s_->rows.begin() + first);
  }
  Status PutTable(uint32_t id, const fs_unwind_table& t) override {
    std::lock_guard lock(s_->mu);
    s_->tables[id] = t;
    return OkStatus();
  }
  void DeleteTable(uint32_t id) override {
    std::lock_guard lock(s_->mu);
    s_->tables.erase(id);
  }
  Status PutProcess(uint32_t pid, const fs_unwind_proc& p) override {
    std::lock_guard lock(s_->mu);
    s_->procs[pid] = p;
    return OkStatus();
  }
  void DeleteProcess(uint32_t pid) override {
    std::lock_guard lock(s_->mu);
    s_->procs.erase(pid);
  }

 private:
  std::shared_ptr<FakeState> s_;
};

// What profile.bpf.c's find_row does, over the fake maps.
const fs_unwind_row* BpfFind(FakeState& s, uint32_t pid, uint64_t pc) {
  auto p = s.procs.find(pid);
  if (p == s.procs.end()) return nullptr;
  const fs_unwind_proc& proc = p->second;
  const fs_unwind_mapping* m = nullptr;
  for (uint32_t i = 0; i < proc.count; ++i) {
    if (pc >= proc.mappings[i].start && pc < proc.mappings[i].end) m = &proc.mappings[i];
  }
  if (m == nullptr) return nullptr;
  auto t = s.tables.find(m->table_id);
  if (t == s.tables.end()) return nullptr;
  const uint64_t rel = pc - m->shift;
  if (rel >= t->second.pc_end) return nullptr;
  auto first = s.rows.begin() + t->second.first_row;
  auto last = first + t->second.row_count;
  auto it = std::upper_bound(first, last, rel,
                             [](uint64_t v, const fs_unwind_row& r) { return v < r.pc; });
  return it == first ? nullptr : &*std::prev(it);
}

struct Libc {
  std::string path;
  uint64_t bias = 0;
  uint64_t getppid = 0;  // a runtime address inside libc's code
};

Libc FindLibc() {
  Libc libc;
  void* h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (h == nullptr) return libc;
  link_map* lm = nullptr;
  if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != nullptr) {
    libc.path = lm->l_name;
    libc.bias = lm->l_addr;
  }
  libc.getppid = reinterpret_cast<uint64_t>(dlsym(h, "getppid"));
  dlclose(h);
  return libc;
}

bool SameRow(const fs_unwind_row& a, const fs_unwind_row& b) {
  return a.pc == b.pc && a.cfa_kind == b.cfa_kind && a.rbp_kind == b.rbp_kind &&
         a.rbp_offset == b.rbp_offset && a.cfa_offset == b.cfa_offset;
}

TEST(RowAllocator, FirstFitAndCoalescing) {
  RowAllocator a(100);
  EXPECT_EQ(a.Allocate(40), 0u);
  EXPECT_EQ(a.Allocate(40), 40u);
  EXPECT_FALSE(a.Allocate(30).has_value());
  EXPECT_EQ(a.used(), 80u);
  a.Free(0, 40);
  EXPECT_EQ(a.largest_free(), 40u);
  a.Free(40, 40);  // coalesces with both neighbours
  EXPECT_EQ(a.largest_free(), 100u);
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.Allocate(100), 0u);
  EXPECT_FALSE(a.Allocate(1).has_value());
  EXPECT_FALSE(RowAllocator(10).Allocate(0).has_value());
}

TEST(Unwinder, ScanGivesTheBuildersRowForALiveAddress) {
  const Libc libc = FindLibc();
  ASSERT_FALSE(libc.path.empty());
  ASSERT_NE(libc.getppid, 0u);
  auto state = std::make_shared<FakeState>();
  Unwinder u({}, std::make_unique<FakeMaps>(state, 8u << 20));
  u.Start();
  const auto self = static_cast<uint32_t>(::getpid());
  u.Watch(self);
  ASSERT_TRUE(u.WaitIdle(seconds(60)));

  Result<unwind::UnwindTable> table = unwind::BuildTable(libc.path, nullptr);
  ASSERT_TRUE(table.ok()) << table.status();
  std::lock_guard lock(state->mu);
  ASSERT_TRUE(state->procs.contains(self));
  // A few addresses through getppid's code: the row the BPF side finds is the builder's row.
  int compared = 0;
  for (uint64_t off = 0; off < 16; ++off) {
    const uint64_t addr = libc.getppid + off;
    const fs_unwind_row* want = table->Find(addr - libc.bias);
    const fs_unwind_row* got = BpfFind(*state, self, addr);
    ASSERT_EQ(want == nullptr, got == nullptr) << "offset " << off;
    if (want != nullptr) {
      EXPECT_TRUE(SameRow(*want, *got)) << "offset " << off;
      ++compared;
    }
  }
  EXPECT_GT(compared, 0);
  // The vDSO (clock_gettime, gettimeofday) has a table too, built from the agent's own image.
  const auto vdso = static_cast<uint64_t>(::getauxval(AT_SYSINFO_EHDR));
  ASSERT_NE(vdso, 0u);
  bool vdso_mapped = false;
  const fs_unwind_proc& proc = state->procs[self];
  for (uint32_t i = 0; i < proc.count; ++i) {
    if (proc.mappings[i].start != vdso) continue;
    auto t = state->tables.find(proc.mappings[i].table_id);
    vdso_mapped = t != state->tables.end() && t->second.row_count > 0;
  }
  EXPECT_TRUE(vdso_mapped);
  const UnwinderStats st = u.Stats();
  EXPECT_GE(st.tables_loaded, 2u);  // the test binary and libc at least
  EXPECT_EQ(st.tables_resident, st.tables_loaded);
  EXPECT_EQ(st.tables_evicted, 0u);
  EXPECT_GT(st.table_bytes, table->bytes());
  EXPECT_EQ(st.processes, 1u);
}

TEST(Unwinder, ForkedChildSharesTablesAndExitReleasesIt) {
  auto state = std::make_shared<FakeState>();
  Unwinder u({}, std::make_unique<FakeMaps>(state, 8u << 20));
  u.Start();
  const auto self = static_cast<uint32_t>(::getpid());
  u.Watch(self);
  ASSERT_TRUE(u.WaitIdle(seconds(60)));
  const UnwinderStats before = u.Stats();

  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  u.Watch(static_cast<uint32_t>(child));
  ASSERT_TRUE(u.WaitIdle(seconds(60)));
  {
    std::lock_guard lock(state->mu);
    ASSERT_TRUE(state->procs.contains(static_cast<uint32_t>(child)));
    const fs_unwind_proc& a = state->procs[self];
    const fs_unwind_proc& b = state->procs[static_cast<uint32_t>(child)];
    ASSERT_EQ(a.count, b.count);
    for (uint32_t i = 0; i < a.count; ++i) {
      EXPECT_EQ(a.mappings[i].table_id, b.mappings[i].table_id);
      EXPECT_EQ(a.mappings[i].shift, b.mappings[i].shift);
    }
  }
  const UnwinderStats after = u.Stats();
  EXPECT_EQ(after.tables_built, before.tables_built);  // built once per build id
  EXPECT_EQ(after.tables_loaded, before.tables_loaded);
  EXPECT_EQ(after.processes, 2u);

  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  u.OnExit(static_cast<uint32_t>(child));
  ASSERT_TRUE(u.WaitIdle(seconds(60)));
  std::lock_guard lock(state->mu);
  EXPECT_FALSE(state->procs.contains(static_cast<uint32_t>(child)));
  EXPECT_EQ(u.Stats().processes, 1u);
  EXPECT_EQ(u.Stats().tables_resident, before.tables_resident);  // kept for the next user
}

TEST(Unwinder, SampleInUnknownCodeRescansOnceWithinTheInterval) {
  auto state = std::make_shared<FakeState>();
  UnwinderConfig cfg;
  cfg.rescan_interval = std::chrono::hours(1);
  Unwinder u(cfg, std::make_unique<FakeMaps>(state, 8u << 20));
  u.Start();
  const auto self = static_cast<uint32_t>(::getpid());
  const uint64_t libc_addr = FindLibc().getppid;
  u.OnSample(self, false, {});  // first sight: scan
  ASSERT_TRUE(u.WaitIdle(seconds(60)));
  EXPECT_EQ(u.Stats().scans, 1u);
  const std::vector<uint64_t> known = {libc_addr};
  u.OnSample(self, true, known);  // all frames in known mappings: nothing to do
  ASSERT_TRUE(u.WaitIdle(seconds(60)));
  EXPECT_EQ(u.Stats().scans, 1u);
  const std::vector<uint64_t> unknown = {libc_addr, 0x10};  // 0x10 is in no mapping
  u.OnSample(self, true, unknown);
  u.OnSample(self, true, unknown);  // rate-limited
  ASSERT_TRUE(u.WaitIdle(seconds(60)));
  EXPECT_EQ(u.Stats().scans, 2u);
}

TEST(Unwinder, TinyBudgetLoadsNothingAndSaysSo) {
  auto state = std::make_shared<FakeState>();
  Unwinder u({}, std::make_unique<FakeMaps>(state, 8));
  u.Start();
  const auto self = static_cast<uint32_t>(::getpid());
  u.Watch(self);
  ASSERT_TRUE(u.WaitIdle(seconds(60)));
  const UnwinderStats st = u.Stats();
  EXPECT_GT(st.over_budget, 0u);
  EXPECT_EQ(st.tables_resident, 0u);
  std::lock_guard lock(state->mu);
  ASSERT_TRUE(state->procs.contains(self));  // an empty entry: "scanned, frame pointers only"
  EXPECT_EQ(state->procs[self].count, 0u);
}

TEST(Unwinder, EvictsTheLeastRecentlyUsedTableForANewOne) {
  const std::string sleep_bin = "/usr/bin/sleep";
  Result<unwind::UnwindTable> sleep_table = unwind::BuildTable(sleep_bin, nullptr);
  ASSERT_TRUE(sleep_table.ok()) << sleep_table.status();
  ASSERT_FALSE(sleep_table->rows.empty());

  // Learn what this process needs, then give a pool that cannot also hold sleep's table.
  uint64_t self_rows = 0;
  {
    auto state = std::make_shared<FakeState>();
    Unwinder probe({}, std::make_unique<FakeMaps>(state, 64u << 20));
    probe.Start();
    probe.Watch(static_cast<uint32_t>(::getpid()));
    ASSERT_TRUE(probe.WaitIdle(seconds(60)));
    self_rows = probe.Stats().table_bytes / sizeof(fs_unwind_row);
  }
  auto state = std::make_shared<FakeState>();
  Unwinder u({}, std::make_unique<FakeMaps>(state, self_rows + sleep_table->rows.size() - 1));
  u.Start();
  const auto self = static_cast<uint32_t>(::getpid());
  u.Watch(self);
  ASSERT_TRUE(u.WaitIdle(seconds(60)));
  ASSERT_EQ(u.Stats().tables_evicted, 0u);
  u.OnExit(self);  // its tables stay resident, unused
  ASSERT_TRUE(u.WaitIdle(seconds(60)));

  const pid_t child = ::fork();
  if (child == 0) {
    ::execl(sleep_bin.c_str(), "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ASSERT_GT(child, 0);
  // sleep's own table is what does not fit; libc and ld.so are shared with this process.
  bool loaded = false;
  for (int i = 0; i < 100 && !loaded; ++i) {
    u.Watch(static_cast<uint32_t>(child));
    ASSERT_TRUE(u.WaitIdle(seconds(60)));
    std::lock_guard lock(state->mu);
    const fs_unwind_proc& p = state->procs[static_cast<uint32_t>(child)];
    for (uint32_t j = 0; j < p.count; ++j) {
      auto t = state->tables.find(p.mappings[j].table_id);
      if (t != state->tables.end() && t->second.row_count == sleep_table->rows.size()) {
        loaded = std::equal(sleep_table->rows.begin(), sleep_table->rows.end(),
                            state->rows.begin() + t->second.first_row, SameRow);
      }
    }
    if (!loaded) ::usleep(20000);  // until exec has replaced the forked image
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(loaded);
  const UnwinderStats st = u.Stats();
  EXPECT_GE(st.tables_evicted, 1u);
  EXPECT_LE(st.table_bytes, st.table_capacity_bytes);
  std::lock_guard lock(state->mu);
  EXPECT_EQ(state->tables.size(), st.tables_resident);
}

}  // namespace
}  // namespace flamestream::bpf
