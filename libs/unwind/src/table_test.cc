// BuildTable on the running libc and on test programs with known CFI (testdata/fixture.c built
// with several flag sets), checked row by row against readelf's reading of the same CFI.
#include "flamestream/unwind/table.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "test_util.h"

namespace flamestream::unwind {
namespace {

using testing::FindSection;
using testing::FindSymbol;
using testing::Range;

extern "C" void NoopHandler(int /*signo*/) {}

using testing::FindLoadedLibc;
using testing::LoadedLibc;

// libc6-dbg's copy of libc's full symbol table (local symbols such as clone3 and __restore_rt).
std::optional<std::string> LibcDebugFile(const std::string& build_id) {
  if (build_id.size() < 3) return std::nullopt;
  std::string path =
      "/usr/lib/debug/.build-id/" + build_id.substr(0, 2) + "/" + build_id.substr(2) + ".debug";
  return std::ifstream(path).good() ? std::optional(path) : std::nullopt;
}

std::string Fixture(const std::string& name) {
  return std::string(FS_UNWIND_FIXTURE_DIR) + "/" + name;
}

const char* KindName(uint8_t kind) {
  static const char* const kNames[] = {"NONE", "RSP", "RBP", "PLT", "SIGNAL", "END", "UNSUPPORTED"};
  return kind < 7 ? kNames[kind] : "?";
}

std::string RowText(const fs_unwind_row* r) {
  if (r == nullptr) return "(no row)";
  return std::string(KindName(r->cfa_kind)) + "+" + std::to_string(r->cfa_offset) +
         (r->rbp_kind == FS_RBP_AT_CFA ? " rbp@c" + std::to_string(r->rbp_offset) : " rbp=same");
}

// Rows sorted, strictly increasing, inside [0, end - base), with valid kinds.
void ExpectWellFormed(const UnwindTable& t) {
  if (t.rows.empty()) {
    EXPECT_EQ(t.base, t.end);
    return;
  }
  EXPECT_EQ(t.rows.front().pc, 0u);
  for (size_t i = 0; i < t.rows.size(); ++i) {
    EXPECT_LE(t.rows[i].cfa_kind, FS_CFA_UNSUPPORTED);
    EXPECT_LE(t.rows[i].rbp_kind, FS_RBP_AT_CFA);
    EXPECT_LT(t.rows[i].pc, t.end - t.base);
    if (i > 0) {
      ASSERT_LT(t.rows[i - 1].pc, t.rows[i].pc) << "row " << i;
      const fs_unwind_row& a = t.rows[i - 1];
      const fs_unwind_row& b = t.rows[i];
      EXPECT_FALSE(a.cfa_kind == b.cfa_kind && a.cfa_offset == b.cfa_offset &&
                   a.rbp_kind == b.rbp_kind && a.rbp_offset == b.rbp_offset)
          << "unmerged duplicate at row " << i;
    }
  }
}

// What readelf's columns say the row must be. nullopt kind: readelf prints "exp" and the text
// alone cannot tell PLT, signal frame or unsupported apart; `allowed` then lists what may be.
struct Expected {
  std::vector<uint8_t> allowed;
  int32_t cfa_offset = 0;
  uint8_t rbp_kind = FS_RBP_SAME;
  int16_t rbp_offset = 0;
};
Expected FromReadelf(const testing::ReadelfRow& row) {
  if (row.ra == "exp") return {{FS_CFA_SIGNAL, FS_CFA_UNSUPPORTED}};
  if (row.ra == "u") return {{FS_CFA_END}};
  if (row.cfa == "exp") return {{FS_CFA_PLT, FS_CFA_UNSUPPORTED}};
  Expected e;
  if (row.cfa.rfind("rsp+", 0) == 0 || row.cfa.rfind("rbp+", 0) == 0) {
    e.allowed = {row.cfa[1] == 's' ? uint8_t{FS_CFA_RSP} : uint8_t{FS_CFA_RBP}};
    e.cfa_offset = std::stoi(row.cfa.substr(4));
  } else {
    return {{FS_CFA_UNSUPPORTED}};
  }
  if (row.ra != "c-8") return {{FS_CFA_UNSUPPORTED}};
  if (row.rbp.size() > 1 && row.rbp[0] == 'c') {
    e.rbp_kind = FS_RBP_AT_CFA;
    e.rbp_offset = static_cast<int16_t>(std::stoi(row.rbp.substr(1)));
  } else if (!row.rbp.empty() && row.rbp != "u" && row.rbp != "s") {
    return {{FS_CFA_UNSUPPORTED}};
  }
  return e;
}

// Every row readelf prints for `section` agrees with the table at that row's LOC. Returns the
// number of rows compared. Ranges listed in `skip` (covered by another section) are left out.
size_t CrossCheck(const std::string& path, const UnwindTable& table, const std::string& section,
                  const std::vector<testing::ReadelfFde>& skip = {}) {
  size_t checked = 0;
  size_t failures = 0;
  for (const testing::ReadelfFde& fde : testing::ReadelfFrames(path, section)) {
    bool skipped = false;
    for (const auto& s : skip) skipped = skipped || (fde.start < s.end && s.start < fde.end);
    if (skipped || fde.start == fde.end) continue;
    for (const testing::ReadelfRow& row : fde.rows) {
      if (row.loc < fde.start || row.loc >= fde.end) continue;
      const Expected want = FromReadelf(row);
      const fs_unwind_row* got = table.Find(row.loc);
      bool ok = got != nullptr;
      if (ok) {
        ok = std::find(want.allowed.begin(), want.allowed.end(), got->cfa_kind) !=
             want.allowed.end();
      }
      if (ok && (got->cfa_kind == FS_CFA_RSP || got->cfa_kind == FS_CFA_RBP)) {
        ok = got->cfa_offset == want.cfa_offset && got->rbp_kind == want.rbp_kind &&
             got->rbp_offset == want.rbp_offset;
      }
      ++checked;
      if (!ok && ++failures <= 20) {
        ADD_FAILURE() << path << " " << section << " row at 0x" << std::hex << row.loc
                      << ": readelf CFA " << row.cfa << " ra " << row.ra << " rbp '" << row.rbp
                      << "', table " << RowText(got);
      }
    }
  }
  EXPECT_EQ(failures, 0u);
  return checked;
}

// The rows whose start lies in [r.start, r.end), plus the one in force at r.start.
std::vector<fs_unwind_row> RowsIn(const UnwindTable& t, const Range& r) {
  std::vector<fs_unwind_row> out;
  if (const fs_unwind_row* first = t.Find(r.start)) out.push_back(*first);
  for (const fs_unwind_row& row : t.rows) {
    if (row.pc + t.base > r.start && row.pc + t.base < r.end) out.push_back(row);
  }
  return out;
}

bool HasEnd(const std::vector<fs_unwind_row>& rows) {
  return std::any_of(rows.begin(), rows.end(),
                     [](const fs_unwind_row& r) { return r.cfa_kind == FS_CFA_END; });
}

class UnwindLibcTable : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_libc = std::make_unique<LoadedLibc>(FindLoadedLibc());
    shared_stats = std::make_unique<BuildStats>();
    const auto t0 = std::chrono::steady_clock::now();
    Result<UnwindTable> t = BuildTable(shared_libc->path, shared_stats.get());
    shared_build_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (t.ok()) shared_table = std::make_unique<UnwindTable>(std::move(*t));
  }
  static void TearDownTestSuite() {
    shared_table.reset();
    shared_stats.reset();
    shared_libc.reset();
  }
  void SetUp() override {
    ASSERT_FALSE(shared_libc->path.empty()) << "libc not found through dladdr";
    ASSERT_NE(shared_table, nullptr) << "BuildTable(" << shared_libc->path << ") failed";
  }
  static inline std::unique_ptr<LoadedLibc> shared_libc;
  static inline std::unique_ptr<BuildStats> shared_stats;
  static inline std::unique_ptr<UnwindTable> shared_table;
  static inline double shared_build_ms = 0;
};

TEST_F(UnwindLibcTable, IsWellFormedAndErrorFree) {
  ExpectWellFormed(*shared_table);
  EXPECT_EQ(shared_stats->errors, 0u) << shared_stats->first_error;
  EXPECT_FALSE(shared_stats->from_debug_frame);
  EXPECT_GT(shared_stats->fdes, 1000u);
  std::printf(
      "libc %s: %llu FDEs, %llu rows, %llu bytes, %.1f ms; unsupported rows %llu (raw rows: "
      "cfa_register %llu, cfa_expression %llu, cfa_undefined %llu, ra %llu, rbp %llu), plt %llu, "
      "signal %llu, end %llu\n",
      shared_libc->path.c_str(), static_cast<unsigned long long>(shared_stats->fdes),
      static_cast<unsigned long long>(shared_stats->rows),
      static_cast<unsigned long long>(shared_table->bytes()), shared_build_ms,
      static_cast<unsigned long long>(shared_stats->unsupported_rows),
      static_cast<unsigned long long>(shared_stats->unsupported.cfa_register),
      static_cast<unsigned long long>(shared_stats->unsupported.cfa_expression),
      static_cast<unsigned long long>(shared_stats->unsupported.cfa_undefined),
      static_cast<unsigned long long>(shared_stats->unsupported.ra_rule),
      static_cast<unsigned long long>(shared_stats->unsupported.rbp_rule),
      static_cast<unsigned long long>(shared_stats->plt_rows),
      static_cast<unsigned long long>(shared_stats->signal_rows),
      static_cast<unsigned long long>(shared_stats->end_rows));
}

TEST_F(UnwindLibcTable, BuildIdMatchesReadelf) {
  const std::string notes = testing::RunCommand("readelf -n '" + shared_libc->path + "'");
  const size_t at = notes.find("Build ID: ");
  ASSERT_NE(at, std::string::npos) << notes;
  EXPECT_EQ(shared_table->build_id, notes.substr(at + 10, 40));
}

TEST_F(UnwindLibcTable, RestoreRtIsASignalFrame) {
  // glibc's sigaction installs __restore_rt as the kernel's sa_restorer; reading the action
  // back shows its address without needing libc's local symbols.
  struct sigaction old_action {};
  struct sigaction action {};
  action.sa_handler = NoopHandler;
  ASSERT_EQ(sigaction(SIGUSR2, &action, &old_action), 0);
  struct sigaction now {};
  ASSERT_EQ(sigaction(SIGUSR2, nullptr, &now), 0);
  ASSERT_EQ(sigaction(SIGUSR2, &old_action, nullptr), 0);
  ASSERT_NE(now.sa_restorer, nullptr);
  const uint64_t restore_rt = reinterpret_cast<uintptr_t>(now.sa_restorer) - shared_libc->bias;
  if (auto debug = LibcDebugFile(shared_table->build_id)) {
    auto sym = FindSymbol(*debug, "__restore_rt");
    ASSERT_TRUE(sym.has_value());
    EXPECT_EQ(sym->start, restore_rt);
  }
  const fs_unwind_row* row = shared_table->Find(restore_rt);
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->cfa_kind, FS_CFA_SIGNAL) << RowText(row);
  // glibc's FDE starts one byte early (the nop before __restore_rt), so a return address
  // pointing just past a call into it still finds the signal frame.
  EXPECT_EQ(shared_table->Find(restore_rt - 1)->cfa_kind, FS_CFA_SIGNAL);
  EXPECT_GE(shared_stats->signal_rows, 1u);
}

TEST_F(UnwindLibcTable, CloneChildPathEndsTheStack) {
  auto clone = FindSymbol(shared_libc->path, "__clone");  // exported
  ASSERT_TRUE(clone.has_value());
  const std::vector<fs_unwind_row> rows = RowsIn(*shared_table, *clone);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.front().cfa_kind, FS_CFA_RSP);  // the parent's path
  EXPECT_TRUE(HasEnd(rows)) << "no FS_CFA_END row in __clone";
}

TEST_F(UnwindLibcTable, Clone3ChildPathEndsTheStack) {
  auto debug = LibcDebugFile(shared_table->build_id);
  if (!debug) GTEST_SKIP() << "libc6-dbg not installed: clone3 is a local symbol";
  auto clone3 = FindSymbol(*debug, "__clone3");
  ASSERT_TRUE(clone3.has_value());
  const std::vector<fs_unwind_row> rows = RowsIn(*shared_table, *clone3);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.front().cfa_kind, FS_CFA_RSP);
  EXPECT_EQ(rows.front().cfa_offset, 8);
  EXPECT_TRUE(HasEnd(rows)) << "no FS_CFA_END row in clone3";
}

TEST_F(UnwindLibcTable, FunctionEntryIsRspPlus8) {
  for (const char* name : {"malloc", "getenv", "qsort", "strtol", "fopen"}) {
    SCOPED_TRACE(name);
    auto sym = FindSymbol(shared_libc->path, name);
    ASSERT_TRUE(sym.has_value());
    const fs_unwind_row* row = shared_table->Find(sym->start);
    ASSERT_NE(row, nullptr);
    EXPECT_EQ(row->cfa_kind, FS_CFA_RSP) << RowText(row);
    EXPECT_EQ(row->cfa_offset, 8);
    EXPECT_EQ(row->rbp_kind, FS_RBP_SAME);
  }
}

TEST_F(UnwindLibcTable, PltEntriesUseThePltRule) {
  auto plt = FindSection(shared_libc->path, ".plt");
  ASSERT_TRUE(plt.has_value());
  const fs_unwind_row* plt0 = shared_table->Find(plt->start);
  ASSERT_NE(plt0, nullptr);
  EXPECT_EQ(plt0->cfa_kind, FS_CFA_RSP);  // PLT0 pushes GOT[1]: rsp+16, then rsp+24
  EXPECT_EQ(plt0->cfa_offset, 16);
  const fs_unwind_row* entry = shared_table->Find(plt->start + 16);
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->cfa_kind, FS_CFA_PLT) << RowText(entry);
  EXPECT_EQ(entry->cfa_offset, 11);
  EXPECT_EQ(shared_table->Find(plt->end - 1)->cfa_kind, FS_CFA_PLT);
}

TEST_F(UnwindLibcTable, AgreesWithReadelfOnEveryRow) {
  EXPECT_GT(CrossCheck(shared_libc->path, *shared_table, ".eh_frame"), 20000u);
}

struct FixtureCase {
  const char* name;
  bool debug_frame;
  int plt_threshold;  // the .plt entries' rip & 15 threshold
};

class UnwindFixtureTable : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(UnwindFixtureTable, MatchesItsKnownCfi) {
  const std::string path = Fixture(GetParam().name);
  BuildStats stats;
  Result<UnwindTable> table = BuildTable(path, &stats);
  ASSERT_TRUE(table.ok()) << table.status();
  ExpectWellFormed(*table);
  EXPECT_EQ(stats.errors, 0u) << stats.first_error;
  EXPECT_EQ(stats.unsupported_rows, 0u);
  EXPECT_EQ(table->build_id.size(), 40u);
  EXPECT_EQ(stats.from_debug_frame, GetParam().debug_frame);

  // _start (crt1.o, always .eh_frame): return address undefined.
  auto start = FindSymbol(path, "_start");
  ASSERT_TRUE(start.has_value());
  const fs_unwind_row* row = table->Find(start->start);
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->cfa_kind, FS_CFA_END) << RowText(row);

  // push %rbp; mov %rsp,%rbp: rsp+8 -> rsp+16 with rbp at CFA-16 -> rbp+16.
  auto frame = FindSymbol(path, "fs_fixture_frame");
  ASSERT_TRUE(frame.has_value());
  const std::vector<fs_unwind_row> rows = RowsIn(*table, *frame);
  ASSERT_GE(rows.size(), 3u);
  EXPECT_EQ(RowText(&rows[0]), "RSP+8 rbp=same");
  EXPECT_EQ(RowText(&rows[1]), "RSP+16 rbp@c-16");
  EXPECT_EQ(RowText(&rows[2]), "RBP+16 rbp@c-16");

  auto leaf = FindSymbol(path, "fs_fixture_leaf");
  ASSERT_TRUE(leaf.has_value());
  EXPECT_EQ(RowText(table->Find(leaf->start)), "RSP+8 rbp=same");

  auto plt = FindSection(path, ".plt");
  ASSERT_TRUE(plt.has_value());
  const fs_unwind_row* entry = table->Find(plt->start + 16);
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->cfa_kind, FS_CFA_PLT) << RowText(entry);
  EXPECT_EQ(entry->cfa_offset, GetParam().plt_threshold);
  EXPECT_EQ(stats.plt_rows, 1u);
  // .plt.sec (IBT: endbr64; jmp *GOT) and .plt.got entries push nothing: rsp+8.
  for (const char* section : {".plt.sec", ".plt.got"}) {
    if (auto s = FindSection(path, section)) {
      SCOPED_TRACE(section);
      EXPECT_EQ(RowText(table->Find(s->start)), "RSP+8 rbp=same");
    }
  }

  const size_t eh_rows = CrossCheck(path, *table, ".eh_frame");
  EXPECT_GE(eh_rows, 5u);
  if (GetParam().debug_frame) {
    EXPECT_GE(CrossCheck(path, *table, ".debug_frame", testing::ReadelfFrames(path, ".eh_frame")),
              5u);
  }
}

INSTANTIATE_TEST_SUITE_P(Unwind, UnwindFixtureTable,
                         ::testing::Values(FixtureCase{"fp", false, 11},
                                           FixtureCase{"nofp", false, 11},
                                           FixtureCase{"nopie", false, 11},
                                           FixtureCase{"debug_frame", true, 11},
                                           FixtureCase{"ibt", false, 9}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace flamestream::unwind
