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
  int profiles = 0;  // how many profiles were added
};

// The frames of one sample, leaf first: for each location its lines in pprof order (the
// innermost inlined function first, the function it was inlined into last). A location
// without lines is named "<mapping basename>+0x<file offset>", or "0x<address>".
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
