// A DWARF reader that runs in the calling process (LLVM's DebugInfo/Symbolize). Only the
// flamestream::symbols_dwarf library provides one, and only it links LLVM: fs_symbols itself
// parses DWARF in the flamestream-dwarf-worker process, so the agent and the services that
// link it do not map the ~40 MiB of libLLVM-14.so.
//
//   // target_link_libraries(my_bench PRIVATE flamestream::symbols flamestream::symbols_dwarf)
//   SymbolizerConfig config;
//   config.dwarf_engine = LlvmDwarfEngine();
//   config.probe_debug_info = false;  // trusted debug info: parse in this process
//   auto symbolizer = Symbolizer::Create(config);
//
// With an engine, Symbolizer::Create also falls back to a fork of this process as the worker
// when the worker executable is not found; without one that is an error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "flamestream/common/status.h"
#include "flamestream/symbols/location.h"

namespace flamestream::symbols {

// One debug file opened in this process. Not thread-safe.
class DwarfFile {
 public:
  virtual ~DwarfFile() = default;
  // The inlining chain at a virtual address, exactly as `llvm-symbolizer --inlining` reports
  // it (one "??" frame when nothing is known).
  [[nodiscard]] virtual Result<Location> Symbolize(uint64_t address) = 0;
};

class DwarfEngine {
 public:
  virtual ~DwarfEngine() = default;
  // Opens (maps) `path`; DWARF is parsed lazily on the first lookups.
  [[nodiscard]] virtual Result<std::unique_ptr<DwarfFile>> Open(const std::string& path) const = 0;
  // Serves the DWARF worker's socket protocol on `fd` until it closes, then exits the process
  // (what a forked worker runs).
  [[noreturn]] virtual void Serve(int fd) const = 0;
};

// LLVM's symbolizer (the code inside flamestream-dwarf-worker and llvm-symbolizer).
// Defined in flamestream::symbols_dwarf.
std::shared_ptr<const DwarfEngine> LlvmDwarfEngine();

}  // namespace flamestream::symbols
