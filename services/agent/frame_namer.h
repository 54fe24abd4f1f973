// Turns resolved frames into the names folded stacks and flame graphs show.
//
//   OffsetFrameNamer namer(&kernel_symbols);       // kernel_symbols may be null
//   namer.NameUser(frame, &out);   // appends "libc.so.6+0x29d90"; a symbolizer may append
//                                  // several names for one frame (inlined calls, root first)
//   std::string k = namer.NameKernel(0xffffffff81234567);   // "do_sys_openat2+0x57"
//
// The symbolizer library plugs in here later as another FrameNamer; until then user frames are
// "<basename>+0x<file offset>", which is exactly what it will look up (with the build id).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flamestream/proc/kallsyms.h"
#include "flamestream/proc/maps.h"

namespace flamestream::agent {

struct UserFrame {
  uint32_t pid = 0;
  uint64_t address = 0;
  // False only for the leaf (the interrupted pc). Return addresses point after the call; a
  // symbolizer looks up address - 1 to name the calling line.
  bool return_address = true;
  bool resolved = false;  // `location` is valid
  proc::Location location;
};

class FrameNamer {
 public:
  virtual ~FrameNamer() = default;
  // Appends one or more names (root-most inlined frame first) for one user frame.
  virtual void NameUser(const UserFrame& frame, std::vector<std::string>* out) = 0;
  virtual std::string NameKernel(uint64_t address) = 0;
};

class OffsetFrameNamer : public FrameNamer {
 public:
  explicit OffsetFrameNamer(const proc::KernelSymbols* kernel) : kernel_(kernel) {}
  void NameUser(const UserFrame& frame, std::vector<std::string>* out) override;
  std::string NameKernel(uint64_t address) override;

 private:
  const proc::KernelSymbols* kernel_;
};

// Folded-stack frame names may not contain ';' (the separator) or line breaks.
std::string SanitizeFrameName(std::string name);

}  // namespace flamestream::agent
