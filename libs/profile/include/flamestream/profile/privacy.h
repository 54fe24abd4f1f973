// What a profile may reveal: which labels leave the exporter, and how file paths are rewritten
// before any sink sees them. Applied where windows are built (Aggregator), so the file,
// Pyroscope and OTLP sinks all send the same scrubbed data, and removed labels merge series.
//
//   profile::Privacy p({.deny = {"k8s_pod_uid", "container_*"},
//                       .paths = {{.from = "/home/*/", .to = "/home/<user>/"}}});
//   p.Keeps("node");                              // true
//   p.Keeps("container_id");                      // false
//   p.ScrubPath("/home/alice/src/app/main.cc");   // "/home/<user>/src/app/main.cc"
//
// Label names are the ones users see in Pyroscope (kLabelNames). A pattern is an exact name or
// a prefix ending in '*'. With `allow` non-empty only matching labels are kept; `deny` removes
// labels whatever `allow` says. service_name is the series identity: it is always kept.
//
// Path rules: `from` is a path prefix in which each '*' stands for one path segment (no '/');
// the first rule whose prefix matches replaces it with `to`. They apply to function (source
// file) paths, mapping (binary) paths, and the frame names built from them for unsymbolized
// frames.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::profile {

// Every label the exporter can attach: series labels, then sample labels.
inline constexpr std::string_view kLabelNames[] = {"service_name", "cluster",     "node",
                                                   "container_id", "k8s_pod_uid", "thread_name",
                                                   "span_id",      "trace_id",    "span_name"};

struct PathRule {
  std::string from;  // prefix; '*' = one path segment
  std::string to;
};

struct PrivacyPolicy {
  std::vector<std::string> allow;  // empty: every label
  std::vector<std::string> deny;
  std::vector<PathRule> paths;
};

// Parses "from=to" (config exporter.paths.rewrite). Errors say what is wrong, not which key.
Result<PathRule> ParsePathRule(std::string_view rule);
// Label patterns of an allow (deny = false) or deny list: unknown names (typos) are errors, and
// so is denying service_name.
Status ValidateLabelPatterns(const std::vector<std::string>& patterns, bool deny);

class Privacy {
 public:
  explicit Privacy(PrivacyPolicy policy = {});

  [[nodiscard]] bool Keeps(std::string_view label) const;
  // `path` rewritten by the first matching rule, or unchanged.
  [[nodiscard]] std::string ScrubPath(std::string_view path) const;
  [[nodiscard]] bool rewrites_paths() const { return !policy_.paths.empty(); }
  [[nodiscard]] const PrivacyPolicy& policy() const { return policy_; }

 private:
  PrivacyPolicy policy_;
};

}  // namespace flamestream::profile
