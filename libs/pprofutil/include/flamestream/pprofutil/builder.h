// Builds pprof profiles with known content (tests, fixtures, tools).
//
//   pprofutil::ProfileBuilder b("cpu", "nanoseconds");
//   b.AddFolded("main;work;crc32", 30'000'000);                 // root first, one location each
//   b.Add({{"memcpy"}, {"inlined_helper", "caller"}, {"main"}}, 10, {{"span_name", "GET /"}});
//   b.AddUnsymbolized("/usr/lib/libfoo.so", 0x7f0000000000, 0x1234, 5);
//   perftools::profiles::Profile p = b.Build();
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "pprof/profile.pb.h"

namespace flamestream::pprofutil {

class ProfileBuilder {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  explicit ProfileBuilder(const std::string& type = "cpu", const std::string& unit = "nanoseconds");

  // `locations` leaf first; each location lists its functions innermost (inlined) first.
  ProfileBuilder& Add(const std::vector<std::vector<std::string>>& locations, int64_t value,
                      const Labels& labels = {});
  // "root;...;leaf": one location per frame.
  ProfileBuilder& AddFolded(const std::string& stack, int64_t value, const Labels& labels = {});
  // One frame without symbols in `file` mapped at `start` (file offset 0), at start + offset.
  ProfileBuilder& AddUnsymbolized(const std::string& file, uint64_t start, uint64_t offset,
                                  int64_t value);
  [[nodiscard]] perftools::profiles::Profile Build() const { return profile_; }

 private:
  int64_t Intern(const std::string& s);
  uint64_t FunctionId(const std::string& name);

  perftools::profiles::Profile profile_;
  std::map<std::string, int64_t> strings_;
  std::map<std::string, uint64_t> functions_;
};

}  // namespace flamestream::pprofutil
