// One opened debug file and the LLVM symbolizer reading it (private to fs_symbols: LLVM headers
// stay out of the public API).
#pragma once

#include <cstdint>
#include <memory>

#include "flamestream/common/status.h"
#include "flamestream/symbols/debug_locator.h"
#include "flamestream/symbols/location.h"

namespace flamestream::symbols {

class LlvmModule {
 public:
  // Maps `files.debug` and prepares DWARF lookups (parsed lazily by LLVM on first use).
  // `probe`: walk the DWARF in a forked child first (see ProbeInChild in llvm_module.cc).
  [[nodiscard]] static Result<std::unique_ptr<LlvmModule>> Open(DebugFiles files, bool probe);
  ~LlvmModule();
  LlvmModule(const LlvmModule&) = delete;
  LlvmModule& operator=(const LlvmModule&) = delete;

  // The inlining chain at a virtual address, exactly as `llvm-symbolizer --inlining` reports
  // it (one "??" frame when nothing is known).
  [[nodiscard]] Result<Location> Symbolize(uint64_t address);

  [[nodiscard]] const DebugFiles& files() const { return files_; }
  [[nodiscard]] uint64_t bytes() const { return files_.debug.file_size; }

 private:
  class Llvm;
  LlvmModule(DebugFiles files, std::unique_ptr<Llvm> llvm);
  DebugFiles files_;
  std::unique_ptr<Llvm> llvm_;
};

}  // namespace flamestream::symbols
