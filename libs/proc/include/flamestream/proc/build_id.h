// GNU build ids (the NT_GNU_BUILD_ID ELF note), read from files and cached by (dev, inode).
//
//   Result<std::string> id = ReadBuildId("/proc/1234/root/usr/lib/libc.so.6");  // "3a5f..."
//   BuildIdCache cache;
//   id = cache.Get({.dev_major = 253, .dev_minor = 1, .inode = 4242},
//                  {"/proc/1234/map_files/7f00-7f10", "/proc/1234/root/usr/lib/libc.so.6"});
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::proc {

// Lower-case hex build id of an ELF image in memory (tests feed crafted images).
Result<std::string> BuildIdFromElfImage(std::string_view image);
// Same, from a file. NotFound when the file has no build-id note.
Result<std::string> ReadBuildId(const std::string& path);

struct FileKey {
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  friend auto operator<=>(const FileKey&, const FileKey&) = default;
};

class BuildIdCache {
 public:
  explicit BuildIdCache(size_t max_entries = 16384) : max_entries_(max_entries) {}
  // Tries each path in order (map_files first: it works for deleted files and across mount
  // namespaces). Failures are cached too, as "", so a stripped binary costs one read.
  Result<std::string> Get(const FileKey& key, const std::vector<std::string>& paths);
  [[nodiscard]] size_t size() const { return cache_.size(); }

 private:
  size_t max_entries_;
  std::map<FileKey, std::string> cache_;
};

}  // namespace flamestream::proc
