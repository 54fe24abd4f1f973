#include "flamestream/common/identity.h"

#include <fmt/format.h>

#include "flamestream/common/strings.h"

namespace flamestream::common {

NodeKey NodeKey::Of(std::string_view cluster, std::string_view node) {
  return {ToLower(cluster), ToLower(node)};
}

Result<NodeKey> NodeKey::Parse(std::string_view key) {
  const size_t slash = key.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == key.size()) {
    return InvalidArgument("record key \"{}\" is not <cluster>/<node>", key);
  }
  return Of(key.substr(0, slash), key.substr(slash + 1));
}

std::string NodeKey::str() const { return fmt::format("{}/{}", cluster, node); }

Result<ProcessKey> ProcessKey::Parse(std::string_view key) {
  const std::vector<std::string> parts = Split(key, '/');
  if (parts.size() != 4 || parts[0].empty() || parts[1].empty()) {
    return InvalidArgument("processes record key \"{}\" is not <cluster>/<node>/<pid>/<ticks>",
                           key);
  }
  Result<uint32_t> pid = ParseInt<uint32_t>(parts[2]);
  if (!pid.ok() || *pid == 0) {
    return InvalidArgument("processes record key \"{}\": bad pid", key);
  }
  Result<uint64_t> ticks = ParseInt<uint64_t>(parts[3]);
  if (!ticks.ok()) {
    return InvalidArgument("processes record key \"{}\": bad start ticks", key);
  }
  return ProcessKey{NodeKey::Of(parts[0], parts[1]), *pid, *ticks};
}

std::string ProcessKey::str() const {
  return fmt::format("{}/{}/{}", node.str(), pid, start_ticks);
}

std::string ProcessKey::PidKey() const { return fmt::format("{}/{}", node.str(), pid); }

}  // namespace flamestream::common
