// /proc/<pid>/maps (libs/proc ParseMaps, ParseMapsLine), as the agent's MapsCache reads it.
// Every mapping parsed is well formed (start < end, sorted), each line of a file parses the
// same alone, and the address -> file offset arithmetic holds inside a mapping.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "flamestream/common/strings.h"
#include "flamestream/proc/maps.h"
#include "fuzz_check.h"

namespace proc = flamestream::proc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const proc::ParsedMaps maps = proc::ParseMaps(text);
  for (size_t i = 0; i < maps.mappings.size(); ++i) {
    const proc::Mapping& m = maps.mappings[i];
    FS_FUZZ_CHECK(m.start < m.end, "mapping %zu: start >= end", i);
    FS_FUZZ_CHECK(i == 0 || maps.mappings[i - 1].start <= m.start, "mapping %zu not sorted", i);
    FS_FUZZ_CHECK(m.Contains(m.start) && !m.Contains(m.end), "Contains");
    (void)m.FileOffset(m.end - 1);
    (void)proc::MappingKindName(m.kind);
  }
  // Line by line, as the single-line parser sees them.
  size_t lines = 0;
  size_t ok = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (flamestream::common::Trim(line).empty()) continue;
    ++lines;
    if (proc::ParseMapsLine(line).ok()) ++ok;
  }
  FS_FUZZ_CHECK(ok == maps.mappings.size() && lines - ok == maps.malformed_lines,
                "%zu lines, %zu parse alone; ParseMaps: %zu mappings, %zu malformed", lines, ok,
                maps.mappings.size(), maps.malformed_lines);
  return 0;
}
