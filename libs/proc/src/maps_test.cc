#include "flamestream/proc/maps.h"

#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace flamestream::proc {
namespace {

TEST(ParseMapsLine, ParsesEveryField) {
  Result<Mapping> m = ParseMapsLine(
      "55d0c0de0000-55d0c0de2000 r-xp 00001000 fd:01 1234567                    "
      "/usr/bin/my prog");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->start, 0x55d0c0de0000u);
  EXPECT_EQ(m->end, 0x55d0c0de2000u);
  EXPECT_EQ(m->offset, 0x1000u);
  EXPECT_TRUE(m->readable);
  EXPECT_FALSE(m->writable);
  EXPECT_TRUE(m->executable);
  EXPECT_FALSE(m->shared);
  EXPECT_EQ(m->dev_major, 0xfdu);
  EXPECT_EQ(m->dev_minor, 1u);
  EXPECT_EQ(m->inode, 1234567u);
  EXPECT_EQ(m->path, "/usr/bin/my prog");
  EXPECT_EQ(m->kind, MappingKind::kFile);
  EXPECT_EQ(m->FileOffset(0x55d0c0de0010), 0x1010u);
}

TEST(ParseMapsLine, ClassifiesSpecialMappings) {
  struct Case {
    const char* line;
    MappingKind kind;
  };
  const Case cases[] = {
      {"7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]",
       MappingKind::kVdso},
      {"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0          [vsyscall]",
       MappingKind::kVsyscall},
      {"7f0000000000-7f0000100000 rwxp 00000000 00:00 0 ", MappingKind::kAnonymous},
      {"7f0000000000-7f0000100000 rw-p 00000000 00:00 0                  [heap]",
       MappingKind::kAnonymous},
      {"7f0000000000-7f0000100000 rw-p 00000000 00:00 0                  [anon:v8]",
       MappingKind::kAnonymous},
      {"7f0000000000-7f0000100000 r-xs 00000000 00:01 77                 /memfd:jit (deleted)",
       MappingKind::kAnonymous},
      {"7f0000000000-7f0000100000 r-xp 00000000 00:01 5                  //anon",
       MappingKind::kAnonymous},
      {"7f0000000000-7f0000100000 r-xp 00002000 08:01 99                 /tmp/x (deleted)",
       MappingKind::kDeleted},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    Result<Mapping> m = ParseMapsLine(c.line);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(MappingKindName(m->kind), MappingKindName(c.kind));
  }
}

TEST(ParseMaps, SkipsAndCountsMalformedLinesAndSorts) {
  ParsedMaps p = ParseMaps(
      "2000-3000 r-xp 00000000 08:01 2 /b\n"
      "garbage\n"
      "\n"
      "1000-2000 r--p 00000000 08:01 1 /a\n"
      "3000-2000 r--p 00000000 08:01 1 /backwards\n"
      "4000-5000 r--p zz 08:01 1 /badoffset\n");
  ASSERT_EQ(p.mappings.size(), 2u);
  EXPECT_EQ(p.mappings[0].path, "/a");
  EXPECT_EQ(p.mappings[1].path, "/b");
  EXPECT_EQ(p.malformed_lines, 3u);
}

// A fake /proc tree lets the cache's reload logic be checked without real processes.
class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("fs_proc_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(root_ / "7");
    WriteStat(100);
    WriteMaps("1000-2000 r-xp 00000000 08:01 5 /nonexistent/bin\n");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void WriteStat(uint64_t start) {
    std::ofstream(root_ / "7" / "stat")
        << "7 (a b) S 1 7 7 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 " << start << " 0 0\n";
  }
  void WriteMaps(const std::string& text) { std::ofstream(root_ / "7" / "maps") << text; }
  std::filesystem::path root_;
};

TEST_F(FakeProc, ReloadsWhenAddressIsOutsideKnownMappings) {
  MapsCache cache({.proc_root = root_.string(), .min_reload_interval = std::chrono::milliseconds(0)});
  Result<Location> a = cache.Resolve(7, 0x1100);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->path, "/nonexistent/bin");
  EXPECT_EQ(a->file_offset, 0x100u);
  EXPECT_EQ(a->kind, MappingKind::kFile);
  EXPECT_EQ(a->build_id, "");  // the file does not exist
  EXPECT_EQ(cache.stats().loads, 1u);

  WriteMaps("1000-2000 r-xp 00000000 08:01 5 /nonexistent/bin\n"
            "5000-6000 r-xp 00003000 08:01 6 /nonexistent/lib.so\n");
  Result<Location> b = cache.Resolve(7, 0x5010);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->path, "/nonexistent/lib.so");
  EXPECT_EQ(b->file_offset, 0x3010u);
  EXPECT_EQ(cache.stats().loads, 2u);

  EXPECT_FALSE(cache.Resolve(7, 0x9000).ok());
  EXPECT_EQ(cache.stats().unknown_addresses, 1u);
}

TEST_F(FakeProc, UnknownAddressReloadIsRateLimited) {
  MapsCache cache({.proc_root = root_.string(), .min_reload_interval = std::chrono::hours(1)});
  ASSERT_TRUE(cache.Resolve(7, 0x1100).ok());
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(cache.Resolve(7, 0x9000).ok());
  }
  EXPECT_EQ(cache.stats().loads, 1u);
  cache.OnExec(7);  // exec always reloads
  WriteMaps("9000-a000 r-xp 00000000 00:00 0 /new\n");
  Result<Location> c = cache.Resolve(7, 0x9000);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->path, "/new");
  EXPECT_EQ(cache.stats().loads, 2u);
}

TEST_F(FakeProc, ExitForgetsProcess) {
  MapsCache cache({.proc_root = root_.string()});
  ASSERT_TRUE(cache.Resolve(7, 0x1100).ok());
  EXPECT_EQ(cache.size(), 1u);
  cache.OnExit(7);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.Resolve(8, 0x1100).error().code(), StatusCode::kNotFound);
}

TEST(MapsCache, ResolvesOwnCodeToExecutableWithBuildId) {
  MapsCache cache;
  const auto addr = reinterpret_cast<uint64_t>(&ParseMapsLine);
  Result<Location> loc = cache.Resolve(static_cast<uint32_t>(::getpid()), addr);
  ASSERT_TRUE(loc.ok()) << loc.status();
  EXPECT_EQ(loc->kind, MappingKind::kFile);
  EXPECT_EQ(loc->path, std::filesystem::read_symlink("/proc/self/exe").string());
  EXPECT_EQ(loc->build_id.size(), 40u);  // sha1 build id (GCC's default)
  EXPECT_EQ(loc->file_offset, addr - loc->mapping_start + loc->mapping_offset);
}

TEST(MapsCache, MarksVdso) {
  MapsCache cache;
  auto maps = cache.Mappings(static_cast<uint32_t>(::getpid()));
  ASSERT_TRUE(maps.ok());
  bool found = false;
  for (const Mapping& m : *maps) {
    if (m.path == "[vdso]") {
      found = true;
      Result<Location> loc = cache.Resolve(static_cast<uint32_t>(::getpid()), m.start + 0x10);
      ASSERT_TRUE(loc.ok());
      EXPECT_EQ(loc->kind, MappingKind::kVdso);
      EXPECT_EQ(loc->file_offset, 0x10u);
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace flamestream::proc
