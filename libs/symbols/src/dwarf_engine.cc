// LlvmDwarfEngine: LocalModule (LLVM in this process) behind the DwarfEngine interface, for
// callers that link flamestream::symbols_dwarf (in-process parsing, fork fallback).
#include "flamestream/symbols/dwarf_engine.h"

#include "dwarf_worker.h"

namespace flamestream::symbols {
namespace {

class LlvmEngine final : public DwarfEngine {
 public:
  Result<std::unique_ptr<DwarfFile>> Open(const std::string& path) const override {
    FS_ASSIGN_OR_RETURN(std::unique_ptr<LocalModule> m, LocalModule::Open(path));
    return std::unique_ptr<DwarfFile>(std::move(m));
  }
  [[noreturn]] void Serve(int fd) const override { RunDwarfWorker(fd); }
};

}  // namespace

std::shared_ptr<const DwarfEngine> LlvmDwarfEngine() { return std::make_shared<LlvmEngine>(); }

}  // namespace flamestream::symbols
