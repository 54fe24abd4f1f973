// /proc/kallsyms (libs/proc KernelSymbols::Parse, Resolve, Name), as the agent and the
// symbolizer name kernel frames. Resolve() results lie at or below the address and within
// kMaxOffset; the probes are the addresses the input itself names, and their neighbours.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "flamestream/common/strings.h"
#include "flamestream/proc/kallsyms.h"
#include "fuzz_check.h"

namespace proc = flamestream::proc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  flamestream::Result<proc::KernelSymbols> syms = proc::KernelSymbols::Parse(text);
  if (!syms.ok()) return 0;
  std::vector<uint64_t> probes = {0, 1, 0xffffffff81000000ull, ~uint64_t{0}};
  std::string_view rest = text;
  while (!rest.empty() && probes.size() < 64) {
    const size_t nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    const std::string_view hex = line.substr(0, line.find(' '));
    if (auto a = flamestream::common::ParseInt<uint64_t>(hex, 16); a.ok()) {
      probes.push_back(*a);
      probes.push_back(*a + 1);
      probes.push_back(*a - 1);
    }
  }
  for (uint64_t addr : probes) {
    const std::optional<proc::KernelSymbol> s = syms->Resolve(addr);
    if (s.has_value()) {
      FS_FUZZ_CHECK(s->address <= addr && s->address + s->offset == addr, "Resolve(%llx)",
                    static_cast<unsigned long long>(addr));
      FS_FUZZ_CHECK(s->offset <= proc::KernelSymbols::kMaxOffset, "offset too large");
    }
    (void)syms->Name(addr);
  }
  return 0;
}
