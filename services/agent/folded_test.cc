#include <sstream>

#include <gtest/gtest.h>

#include "folded.h"
#include "frame_namer.h"
#include "folded_printer.h"

namespace flamestream::agent {
namespace {

TEST(FoldedStacks, MostSamplesFirstThenLexicographic) {
  FoldedStacks f;
  f.Add({"b", "main", "x"});
  f.Add({"a", "main", "y"}, 3);
  f.Add({"a", "main", "z"});
  f.Add({"b", "main", "x"});
  f.Add({"a", "main", "y"});
  std::ostringstream out;
  f.Write(out);
  EXPECT_EQ(out.str(), "a;main;y 4\nb;main;x 2\na;main;z 1\n");
  EXPECT_EQ(f.total(), 7u);
  EXPECT_EQ(f.distinct(), 3u);
}

TEST(FoldedStacks, SeparatorsInsideNamesAreReplaced) {
  FoldedStacks f;
  f.Add({"we;ird", "std::map<a;b>", "line\nbreak"});
  std::ostringstream out;
  f.Write(out);
  EXPECT_EQ(out.str(), "we:ird;std::map<a:b>;line break 1\n");
}

UserFrame Frame(proc::MappingKind kind, std::string path, uint64_t addr, uint64_t off) {
  UserFrame f;
  f.address = addr;
  f.resolved = true;
  f.location.kind = kind;
  f.location.path = std::move(path);
  f.location.file_offset = off;
  f.location.mapping_start = 0x7000;
  return f;
}

TEST(OffsetFrameNamer, NamesEachMappingKind) {
  OffsetFrameNamer namer(nullptr);
  struct Case {
    UserFrame frame;
    std::string name;
  };
  UserFrame unresolved;
  unresolved.address = 0xdead;
  const Case cases[] = {
      {Frame(proc::MappingKind::kFile, "/usr/lib/libc.so.6", 0x7f00, 0x29d90), "libc.so.6+0x29d90"},
      {Frame(proc::MappingKind::kDeleted, "/tmp/a.out (deleted)", 0x7f00, 0x10), "a.out+0x10"},
      {Frame(proc::MappingKind::kVdso, "[vdso]", 0x7f00, 0x9a0), "[vdso]+0x9a0"},
      {Frame(proc::MappingKind::kJit, "", 0x7f00, 0x7f00), "[jit]+0x7f00"},
      {Frame(proc::MappingKind::kAnonymous, "[anon:x]", 0x7f00, 0x7f00), "[anon]+0x7f00"},
      {unresolved, "[unknown]+0xdead"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::string> out;
    namer.NameUser(c.frame, &out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], c.name);
  }
  EXPECT_EQ(namer.NameKernel(0xffffffff81000000), "0xffffffff81000000");
}

TEST(FoldedPrinter, UserRootFirstThenKernelWithSuffix) {
  Result<proc::KernelSymbols> ks =
      proc::KernelSymbols::Parse("ffffffff81000000 T entry_SYSCALL_64\nffffffff81000100 T ksys_read\n");
  ASSERT_TRUE(ks.ok());
  OffsetFrameNamer namer(&*ks);
  ResolvedSample s;
  s.comm = "app";
  s.user = {Frame(proc::MappingKind::kFile, "/bin/app", 1, 0x30),   // leaf
            Frame(proc::MappingKind::kFile, "/bin/app", 2, 0x20),
            Frame(proc::MappingKind::kFile, "/bin/app", 3, 0x10)};  // root
  s.kernel = {0xffffffff81000110, 0xffffffff81000005};                 // leaf first
  EXPECT_EQ(FoldedPrinter::Frames(s, namer),
            (std::vector<std::string>{"app", "app+0x10", "app+0x20", "app+0x30",
                                      "entry_SYSCALL_64+0x5_[k]", "ksys_read+0x10_[k]"}));
}

}  // namespace
}  // namespace flamestream::agent
