// fs_symbols pieces that need no corpus: the LRU, the cache value encoding, offset mapping.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "flamestream/symbols/elf_file.h"
#include "flamestream/symbols/location.h"
#include "flamestream/symbols/symbol_cache.h"

namespace flamestream::symbols {
namespace {

LocationPtr MakeLocation(std::string fn) {
  auto loc = std::make_shared<Location>();
  loc->resolved = true;
  loc->frames.push_back({fn, "_Z" + fn, "/src/a.cc", 12, 7});
  loc->display_name = fn;
  return loc;
}

TEST(LruSymbolCache, ReturnsWhatWasPutAndMissesTheRest) {
  LruSymbolCache lru(1 << 20, 1);
  lru.Put({"aa", 1}, MakeLocation("f"));
  EXPECT_EQ(lru.Get({"aa", 1})->frames[0].function, "f");
  EXPECT_EQ(lru.Get({"aa", 2}), nullptr);
  EXPECT_EQ(lru.Get({"bb", 1}), nullptr);
  EXPECT_EQ(lru.stats().hits, 1u);
  EXPECT_EQ(lru.stats().misses, 2u);
}

TEST(LruSymbolCache, EvictsLeastRecentlyUsedWhenOverBytes) {
  size_t one = 128 + 2 + MakeLocation("f0")->ByteSize();
  LruSymbolCache lru(one * 3, 1);  // room for three entries
  for (uint64_t i = 0; i < 3; ++i) lru.Put({"aa", i}, MakeLocation(fmt::format("f{}", i)));
  ASSERT_NE(lru.Get({"aa", 0}), nullptr);  // 0 becomes most recent; 1 is now the oldest
  lru.Put({"aa", 3}, MakeLocation("f3"));
  EXPECT_NE(lru.Get({"aa", 0}), nullptr);
  EXPECT_EQ(lru.Get({"aa", 1}), nullptr);
  EXPECT_NE(lru.Get({"aa", 2}), nullptr);
  EXPECT_NE(lru.Get({"aa", 3}), nullptr);
  EXPECT_EQ(lru.stats().evictions, 1u);
  EXPECT_LE(lru.stats().bytes, one * 3);
}

TEST(LruSymbolCache, DropBuildIdForgetsOnlyThatBuildId) {
  LruSymbolCache lru(1 << 20);
  lru.Put({"aa", 1}, MakeLocation("f"));
  lru.Put({"bb", 1}, MakeLocation("g"));
  lru.DropBuildId("aa");
  EXPECT_EQ(lru.Get({"aa", 1}), nullptr);
  EXPECT_NE(lru.Get({"bb", 1}), nullptr);
}

TEST(LocationEncoding, RoundTripsAndRejectsGarbage) {
  Location loc;
  loc.resolved = true;
  loc.display_name = "ns::F(int)";
  loc.frames = {{"ns::Inner()", "_ZN2ns5InnerEv", "/src/a.h", 3, 9},
                {"ns::F(int)", "_ZN2ns1FEi", "/src/a.cc", 40, 0}};
  std::string bytes = EncodeLocation(loc);
  Location back;
  ASSERT_TRUE(DecodeLocation(bytes, &back));
  EXPECT_EQ(back.frames, loc.frames);
  EXPECT_EQ(back.display_name, loc.display_name);
  EXPECT_TRUE(back.resolved);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    SCOPED_TRACE(cut);
    Location partial;
    EXPECT_FALSE(DecodeLocation(std::string_view(bytes).substr(0, cut), &partial));
  }
}

TEST(UnresolvedName, UsesBasenameElseBuildId) {
  EXPECT_EQ(UnresolvedName("/usr/lib/libfoo.so", "ab", 0x1a2b), "libfoo.so+0x1a2b");
  EXPECT_EQ(UnresolvedName("", "abcd", 0x10), "abcd+0x10");
  EXPECT_EQ(UnresolvedName("", "", 0), "??+0x0");
}

TEST(ElfInfo, FileOffsetToVaddrUsesTheSegmentHoldingTheOffset) {
  ElfInfo info;
  info.path = "x";
  info.segments_have_file_data = true;
  info.segments = {{0x0, 0x400000, 0x1000, 0x1000}, {0x1000, 0x401000, 0x500, 0x500},
                   {0x1dd0, 0x402dd0, 0x200, 0x300}};
  struct Case {
    uint64_t offset;
    uint64_t vaddr;
  };
  for (const Case& c : {Case{0x10, 0x400010}, Case{0x1234, 0x401234}, Case{0x1dd8, 0x402dd8}}) {
    SCOPED_TRACE(c.offset);
    auto v = info.FileOffsetToVaddr(c.offset);
    ASSERT_TRUE(v.ok()) << v.error();
    EXPECT_EQ(*v, c.vaddr);
  }
  EXPECT_FALSE(info.FileOffsetToVaddr(0x1600).ok());  // between segments
  info.segments_have_file_data = false;
  EXPECT_FALSE(info.FileOffsetToVaddr(0x10).ok());
}

TEST(ReadElfInfo, RejectsMissingAndNonElfFiles) {
  EXPECT_EQ(ReadElfInfo("/nonexistent").error().code(), StatusCode::kNotFound);
  EXPECT_FALSE(ReadElfInfo("/etc/hostname").ok());
  auto self = ReadElfInfo("/proc/self/exe");
  ASSERT_TRUE(self.ok()) << self.error();
  EXPECT_FALSE(self->build_id.empty());
  EXPECT_TRUE(self->segments_have_file_data);
}

}  // namespace
}  // namespace flamestream::symbols
