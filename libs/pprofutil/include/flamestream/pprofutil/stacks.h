// Stacks of one or more pprof profiles, summed per distinct stack (root first), with inlined
// functions as frames of their own.
//
//   pprofutil::LoadOptions opts{.span_name = "GET /cart"};
//   FS_ASSIGN_OR_RETURN(std::vector<std::string> files,
//                       pprofutil::ExpandInputs({"./flamestream-out"}, /*service=*/"shop"));
//   FS_ASSIGN_OR_RETURN(pprofutil::StackSet set, pprofutil::LoadStacks(files, opts));
//   std::cout << pprofutil::ToFolded(set);          // "main;work;leaf 30000000\n..."
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "flamestream/common/status.h"
#include "pprof/profile.pb.h"

namespace flamestream::pprofutil {

struct LoadOptions {
  // Sample type to read ("cpu", "samples", ...); empty: the profile's default_sample_type,
  // else its last sample type (what `pprof` shows by default).
  std::string sample_type;
  // Keep only samples whose `span_name` label equals this (empty: all).
  std::string span_name;
  // Keep only samples whose `service_name` label, when they have one, equals this.
  std::string service;
};

struct StackSet {
  std::string sample_type;  // "cpu"
  std::string unit;         // "nanoseconds"
  // Frames root first -> summed value. A std::map keeps output order deterministic.
  std::map<std::vector<std::string>, int64_t> stacks;
  int64_t total = 0;
  // Sum of |value| over every sample added. AddProfile keeps it within int64, which bounds
  // every sum the reports take (per stack, per function, per flame-graph node).
  int64_t magnitude = 0;
  int profiles = 0;  // how many profiles were added
};

// Names the frames of a profile's samples: indexes its locations, functions and mappings
// once, so naming every sample costs one lookup per frame (the exporter's windows and a day
// of them read by `top` hold tens of thousands of locations). The profile must outlive it.
//
//   pprofutil::FrameNamer names(profile);
//   for (const auto& s : profile.sample()) use(names.LeafFirst(s));
class FrameNamer {
 public:
  explicit FrameNamer(const perftools::profiles::Profile& profile);

  // The frames of one sample, leaf first: for each location its lines in pprof order (the
  // innermost inlined function first, the function it was inlined into last). A location
  // without lines is named "<mapping basename>+0x<file offset>", or "0x<address>"; a function
  // without a name by its system name, else "0x<address>".
  [[nodiscard]] std::vector<std::string> LeafFirst(const perftools::profiles::Sample& sample) const;
  // The same, root first (the order of folded stacks and flame graphs).
  [[nodiscard]] std::vector<std::string> RootFirst(const perftools::profiles::Sample& sample) const;
  // DataLoss naming the first location or function id of `sample` the profile does not
  // define (LeafFirst names those "<unknown location N>" / "0x<address>"), for readers that
  // must refuse such a profile rather than draw it.
  [[nodiscard]] Status Check(const perftools::profiles::Sample& sample) const;
  // The string at `index` of the profile's string table ("" when out of range).
  [[nodiscard]] const std::string& Str(int64_t index) const;

 private:
  void AppendLocation(uint64_t id, std::vector<std::string>& leaf_first) const;

  const perftools::profiles::Profile& profile_;
  std::unordered_map<uint64_t, const perftools::profiles::Location*> locations_;
  std::unordered_map<uint64_t, const perftools::profiles::Function*> functions_;
  std::unordered_map<uint64_t, const perftools::profiles::Mapping*> mappings_;
};

// One sample's frames, leaf first (FrameNamer; builds the index, so for one-off use only).
std::vector<std::string> LeafFirstFrames(const perftools::profiles::Profile& profile,
                                         const perftools::profiles::Sample& sample);

// Adds `profile`'s samples (filtered by `options`) to `set`. The first profile fixes the
// sample type and unit; later ones must have a sample type of the same name and unit.
Status AddProfile(const perftools::profiles::Profile& profile, const LoadOptions& options,
                  StackSet& set);

// Reads every file (gzip or plain pprof) into one StackSet; errors name the file.
Result<StackSet> LoadStacks(const std::vector<std::string>& files, const LoadOptions& options);

// Turns arguments into pprof files: a file stays itself; a directory (the file sink's output
// `<out>/<service>/<window>.pb.gz`) becomes every *.pb.gz / *.pb / *.pprof file below it,
// sorted, restricted to `<dir>/<service>/` when `service` is not empty. NotFound when an
// argument does not exist or a directory holds no profile.
Result<std::vector<std::string>> ExpandInputs(const std::vector<std::string>& args,
                                              const std::string& service);

// Folded stacks, one line per distinct stack: "root;...;leaf <value>\n", sorted by stack.
std::string ToFolded(const StackSet& set);

}  // namespace flamestream::pprofutil
