// Names user frames with the symbolizer library, as the symbolizer stage would: functions
// (inlined calls as frames of their own, root-most first) instead of "basename+0xoffset".
//
//   FS_ASSIGN_OR_RETURN(auto namer, SymbolizerFrameNamer::Create(&kernel_symbols));
//   namer->NameUser(frame, &out);   // {"main", "outer", ...} per frame; offsets when unknown
//
// Print mode runs on the node, so the mapped files are read through /proc/<pid>/root (the
// process's own view, containers included) and the host's debug directories.
#pragma once

#include <memory>

#include "flamestream/common/status.h"
#include "flamestream/symbols/symbolizer.h"
#include "frame_namer.h"

namespace flamestream::agent {

class SymbolizerFrameNamer : public FrameNamer {
 public:
  static Result<std::unique_ptr<SymbolizerFrameNamer>> Create(const proc::KernelSymbols* kernel);
  void NameUser(const UserFrame& frame, std::vector<std::string>* out) override;
  std::string NameKernel(uint64_t address) override { return fallback_.NameKernel(address); }

 private:
  SymbolizerFrameNamer(std::unique_ptr<symbols::Symbolizer> symbolizer,
                       const proc::KernelSymbols* kernel)
      : symbolizer_(std::move(symbolizer)), fallback_(kernel) {}
  std::unique_ptr<symbols::Symbolizer> symbolizer_;
  OffsetFrameNamer fallback_;
};

}  // namespace flamestream::agent
