#include "flamestream/proc/kallsyms.h"

#include <algorithm>
#include <unordered_map>

#include "flamestream/common/strings.h"
#include "flamestream/proc/process.h"

namespace flamestream::proc {

Result<KernelSymbols> KernelSymbols::Parse(std::string_view content) {
  KernelSymbols ks;
  std::unordered_map<std::string, uint16_t> module_index;
  bool any_nonzero = false;
  size_t lines = 0;
  while (!content.empty()) {
    const size_t nl = content.find('\n');
    std::string_view line = content.substr(0, nl);
    content.remove_prefix(nl == std::string_view::npos ? content.size() : nl + 1);
    // "ffffffff81000000 T _stext" or "ffffffffc0a01000 t helper\t[mod]"
    const size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 + 3 > line.size() || line[sp1 + 2] != ' ') {
      continue;
    }
    ++lines;
    const char type = line[sp1 + 1];
    // Only code: text symbols (t/T) and weak ones (w/W) that alias code.
    if (type != 't' && type != 'T' && type != 'w' && type != 'W') {
      continue;
    }
    Result<uint64_t> addr = common::ParseInt<uint64_t>(line.substr(0, sp1), 16);
    if (!addr.ok()) {
      continue;
    }
    any_nonzero = any_nonzero || *addr != 0;
    std::string_view rest = line.substr(sp1 + 3);
    std::string_view module;
    if (const size_t tab = rest.find('\t'); tab != std::string_view::npos) {
      module = common::Trim(rest.substr(tab + 1));
      rest = rest.substr(0, tab);
      if (module.size() >= 2 && module.front() == '[' && module.back() == ']') {
        module = module.substr(1, module.size() - 2);
      }
    }
    if (rest.empty() || rest.size() > 0xffff || ks.names_.size() > 0xffffffffu - rest.size()) {
      continue;
    }
    uint16_t mod = 0;
    if (!module.empty()) {
      auto [it, inserted] =
          module_index.emplace(std::string(module), static_cast<uint16_t>(ks.modules_.size()));
      if (inserted) {
        if (ks.modules_.size() >= 0xffff) continue;
        ks.modules_.emplace_back(module);
      }
      mod = it->second;
    }
    ks.symbols_.push_back({*addr, static_cast<uint32_t>(ks.names_.size()),
                           static_cast<uint16_t>(rest.size()), mod});
    ks.names_.append(rest);
  }
  if (lines > 0 && !any_nonzero) {
    return FailedPrecondition(
        "kallsyms addresses are hidden (need CAP_SYSLOG and kernel.kptr_restrict < 2)");
  }
  if (ks.symbols_.empty()) {
    return InvalidArgument("kallsyms has no text symbols");
  }
  std::stable_sort(ks.symbols_.begin(), ks.symbols_.end(),
                   [](const Entry& a, const Entry& b) { return a.address < b.address; });
  return ks;
}

Result<KernelSymbols> KernelSymbols::Load(const std::string& path) {
  FS_ASSIGN_OR_RETURN(std::string content, ReadProcFile(path, 256 << 20));
  return Parse(content);
}

std::optional<KernelSymbol> KernelSymbols::Resolve(uint64_t addr) const {
  auto it = std::upper_bound(symbols_.begin(), symbols_.end(), addr,
                             [](uint64_t a, const Entry& e) { return a < e.address; });
  if (it == symbols_.begin()) {
    return std::nullopt;
  }
  const Entry& e = *std::prev(it);
  if (addr - e.address > kMaxOffset) {
    return std::nullopt;
  }
  return KernelSymbol{.name = std::string_view(names_).substr(e.name_offset, e.name_size),
                      .module = modules_[e.module],
                      .address = e.address,
                      .offset = addr - e.address};
}

std::string KernelSymbols::Name(uint64_t addr) const {
  std::optional<KernelSymbol> s = Resolve(addr);
  if (!s) {
    return fmt::format("{:#x}", addr);
  }
  if (s->module.empty()) {
    return fmt::format("{}+{:#x}", s->name, s->offset);
  }
  return fmt::format("{}+{:#x} [{}]", s->name, s->offset, s->module);
}

}  // namespace flamestream::proc
