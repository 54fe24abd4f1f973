// `flamestream folded|top|diff`: read pprof files (or the file sink's output directory, or a
// Pyroscope server, see pyroscope_source.h) and print folded stacks, a pprof-style top table, or the change of each function's share.
//
//   AnalyzeOptions o{.inputs = {"./flamestream-out"}, .service = "shop", .by = "self"};
//   int code = RunTop(o, std::cout, std::cerr);
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace flamestream::cli {

struct AnalyzeOptions {
  std::vector<std::string> inputs;  // files, directories or Pyroscope URLs (http[s]://...)
  std::string tenant;               // X-Scope-OrgID for Pyroscope URLs
  std::string service;              // directory <dir>/<service>/, and service_name labels
  std::string span;                 // span_name label filter
  std::string sample_type;          // empty: the profile's default
  std::string by = "self";          // self | total
  size_t limit = 20;                // rows; 0 = all
};

// Exit codes: 0 ok, 2 bad argument or unreadable input.
int RunFolded(const AnalyzeOptions& o, std::ostream& out, std::ostream& err);
int RunTop(const AnalyzeOptions& o, std::ostream& out, std::ostream& err);

struct DiffOptions {
  AnalyzeOptions before;  // inputs = {BEFORE}
  AnalyzeOptions after;   // inputs = {AFTER}
  std::string html;       // write the differential flame graph page here
};
int RunDiff(const DiffOptions& o, std::ostream& out, std::ostream& err);

}  // namespace flamestream::cli
