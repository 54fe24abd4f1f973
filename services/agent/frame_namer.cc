#include "frame_namer.h"

#include <fmt/format.h>

namespace flamestream::agent {

std::string SanitizeFrameName(std::string name) {
  for (char& c : name) {
    if (c == ';') {
      c = ':';
    } else if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  return name;
}

void OffsetFrameNamer::NameUser(const UserFrame& frame, std::vector<std::string>* out) {
  if (!frame.resolved) {
    out->push_back(fmt::format("[unknown]+{:#x}", frame.address));
    return;
  }
  const proc::Location& loc = frame.location;
  switch (loc.kind) {
    case proc::MappingKind::kFile:
    case proc::MappingKind::kDeleted: {
      std::string_view path = loc.path;
      if (path.ends_with(" (deleted)")) path.remove_suffix(10);
      const size_t slash = path.rfind('/');
      std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
      out->push_back(fmt::format("{}+{:#x}", base, loc.file_offset));
      return;
    }
    case proc::MappingKind::kVdso:
      out->push_back(fmt::format("[vdso]+{:#x}", loc.file_offset));
      return;
    case proc::MappingKind::kJit:
      out->push_back(fmt::format("[jit]+{:#x}", frame.address));
      return;
    case proc::MappingKind::kVsyscall:
      out->push_back(fmt::format("[vsyscall]+{:#x}", frame.address - loc.mapping_start));
      return;
    case proc::MappingKind::kAnonymous:
      out->push_back(fmt::format("[anon]+{:#x}", frame.address));
      return;
  }
}

std::string OffsetFrameNamer::NameKernel(uint64_t address) {
  if (kernel_ == nullptr) {
    return fmt::format("{:#x}", address);
  }
  return kernel_->Name(address);
}

}  // namespace flamestream::agent
