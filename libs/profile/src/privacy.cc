#include "flamestream/profile/privacy.h"

#include <algorithm>
#include <optional>

namespace flamestream::profile {
namespace {

bool Matches(std::string_view pattern, std::string_view name) {
  if (pattern.ends_with('*')) return name.starts_with(pattern.substr(0, pattern.size() - 1));
  return pattern == name;
}

bool AnyMatches(const std::vector<std::string>& patterns, std::string_view name) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return Matches(p, name); });
}

bool KnownPattern(std::string_view pattern) {
  return std::any_of(std::begin(kLabelNames), std::end(kLabelNames),
                     [&](std::string_view n) { return Matches(pattern, n); });
}

// Length of the prefix of `path` that `from` matches ('*' = one segment), or nullopt.
std::optional<size_t> MatchPrefix(std::string_view from, std::string_view path) {
  size_t p = 0;
  for (size_t f = 0; f < from.size(); ++f) {
    if (from[f] == '*') {
      while (p < path.size() && path[p] != '/') ++p;
      continue;
    }
    if (p >= path.size() || path[p] != from[f]) return std::nullopt;
    ++p;
  }
  return p;
}

}  // namespace

Result<PathRule> ParsePathRule(std::string_view rule) {
  const size_t eq = rule.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return InvalidArgument("expected from=to (a path prefix, '*' for one segment), got '{}'", rule);
  }
  PathRule out{std::string(rule.substr(0, eq)), std::string(rule.substr(eq + 1))};
  if (out.from.find("**") != std::string::npos) {
    return InvalidArgument("'**' is not supported ('*' stands for one path segment): '{}'", rule);
  }
  return out;
}

Status ValidateLabelPatterns(const std::vector<std::string>& patterns, bool deny) {
  for (const std::string& p : patterns) {
    if (p.empty() || p == "*" || !KnownPattern(p)) {
      std::string known;
      for (std::string_view n : kLabelNames) {
        known += (known.empty() ? "" : ", ") + std::string(n);
      }
      return InvalidArgument("'{}' names no label (labels: {}; a trailing '*' matches a prefix)", p,
                             known);
    }
  }
  if (deny && AnyMatches(patterns, "service_name")) {
    return InvalidArgument("service_name is the series identity and cannot be removed");
  }
  return OkStatus();
}

Privacy::Privacy(PrivacyPolicy policy) : policy_(std::move(policy)) {}

bool Privacy::Keeps(std::string_view label) const {
  if (label == "service_name") return true;
  if (AnyMatches(policy_.deny, label)) return false;
  return policy_.allow.empty() || AnyMatches(policy_.allow, label);
}

std::string Privacy::ScrubPath(std::string_view path) const {
  for (const PathRule& r : policy_.paths) {
    if (std::optional<size_t> n = MatchPrefix(r.from, path)) {
      return r.to + std::string(path.substr(*n));
    }
  }
  return std::string(path);
}

}  // namespace flamestream::profile
