// Kernel address -> "function+0xoff" from /proc/kallsyms (which includes loaded modules).
//
//   FS_ASSIGN_OR_RETURN(KernelSymbols ksyms, KernelSymbols::Load());
//   std::string name = ksyms.Name(0xffffffff81234567);   // "do_sys_openat2+0x57"
//   std::optional<KernelSymbol> sym = ksyms.Resolve(addr); // name, module ("" for vmlinux), offset
//
// Without CAP_SYSLOG (or with kptr_restrict) every address reads as 0; Load() then fails with
// FailedPrecondition so the caller can log the reason once and fall back to raw addresses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::proc {

struct KernelSymbol {
  std::string_view name;
  std::string_view module;  // "" for the core kernel
  uint64_t address = 0;     // start of the function
  uint64_t offset = 0;      // the looked-up address minus `address`
};

class KernelSymbols {
 public:
  // Parses kallsyms text; lines that do not parse are skipped.
  static Result<KernelSymbols> Parse(std::string_view content);
  static Result<KernelSymbols> Load(const std::string& path = "/proc/kallsyms");

  // The text symbol at or below `addr`; nullopt below the first symbol, above the last
  // one's end, or when the nearest symbol is more than kMaxOffset away.
  [[nodiscard]] std::optional<KernelSymbol> Resolve(uint64_t addr) const;
  // "func+0x1f", "func+0x1f [module]"; "0xffff..." when unresolved.
  [[nodiscard]] std::string Name(uint64_t addr) const;
  [[nodiscard]] size_t size() const { return symbols_.size(); }

  static constexpr uint64_t kMaxOffset = 1 << 20;

 private:
  struct Entry {
    uint64_t address;
    uint32_t name_offset;  // into names_
    uint16_t name_size;
    uint16_t module;       // index into modules_, 0 = kernel
  };
  std::vector<Entry> symbols_;  // sorted by address
  std::string names_;
  std::vector<std::string> modules_{""};
};

}  // namespace flamestream::proc
