#include "flamestream/proc/build_id.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "flamestream/proc/process.h"

namespace flamestream::proc {
namespace {

// The build id as readelf prints it: "    Build ID: 3a5f...".
std::string ReadelfBuildId(const std::string& path) {
  std::string cmd = "readelf -n " + path + " 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (f && fgets(buf, sizeof(buf), f)) out += buf;
  if (f) pclose(f);
  const size_t at = out.find("Build ID: ");
  if (at == std::string::npos) return "";
  return out.substr(at + 10, out.find('\n', at) - at - 10);
}

TEST(BuildId, MatchesReadelfForOwnExecutable) {
  // readelf must see our binary, not its own /proc/self/exe.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string expected = ReadelfBuildId(self);
  ASSERT_FALSE(expected.empty()) << "readelf found no build id";
  Result<std::string> id = ReadBuildId("/proc/self/exe");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, expected);
}

TEST(BuildId, ImageWithoutNoteIsNotFound) {
  Result<std::string> self = ReadProcFile("/proc/self/exe", 64 << 20);
  ASSERT_TRUE(self.ok());
  EXPECT_TRUE(BuildIdFromElfImage(*self).ok());
  EXPECT_EQ(BuildIdFromElfImage("not an elf").error().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(ReadBuildId("/nonexistent/file").ok());
}

TEST(BuildId, TruncatedImagesNeverCrash) {
  Result<std::string> self = ReadProcFile("/proc/self/exe", 64 << 20);
  ASSERT_TRUE(self.ok());
  for (size_t len : {0ul, 4ul, 16ul, 52ul, 64ul, 100ul, 200ul, 400ul, 1000ul, 4096ul}) {
    SCOPED_TRACE(len);
    (void)BuildIdFromElfImage(std::string_view(*self).substr(0, len));
  }
  // Corrupt the program-header area byte by byte.
  std::string img = self->substr(0, std::min<size_t>(self->size(), 8192));
  for (size_t i = 0; i < 1024; i += 3) {
    std::string bad = img;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    (void)BuildIdFromElfImage(bad);
  }
}

TEST(BuildIdCache, CachesByInodeAndFallsBackAcrossPaths) {
  BuildIdCache cache;
  const FileKey key{.dev_major = 1, .dev_minor = 2, .inode = 3};
  Result<std::string> a = cache.Get(key, {"/nonexistent/x", "/proc/self/exe"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(cache.size(), 1u);
  // Cached: even unreadable paths now give the same answer.
  Result<std::string> b = cache.Get(key, {"/nonexistent/y"});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);
  // Unreachable files are not cached.
  EXPECT_FALSE(cache.Get({.inode = 4}, {"/nonexistent/z"}).ok());
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace flamestream::proc
