#include "symbolizer_namer.h"

#include <fmt/format.h>

namespace flamestream::agent {

Result<std::unique_ptr<SymbolizerFrameNamer>> SymbolizerFrameNamer::Create(
    const proc::KernelSymbols* kernel) {
  symbols::SymbolizerConfig cfg;
  cfg.lru_bytes = size_t{64} << 20;
  FS_ASSIGN_OR_RETURN(std::unique_ptr<symbols::Symbolizer> s, symbols::Symbolizer::Create(cfg));
  return std::unique_ptr<SymbolizerFrameNamer>(new SymbolizerFrameNamer(std::move(s), kernel));
}

void SymbolizerFrameNamer::NameUser(const UserFrame& frame, std::vector<std::string>* out) {
  const proc::Location& loc = frame.location;
  if (!frame.resolved ||
      (loc.kind != proc::MappingKind::kFile && loc.kind != proc::MappingKind::kDeleted)) {
    fallback_.NameUser(frame, out);
    return;
  }
  // The process's own view of its files (containers included); the build id guards against a
  // different file at the same path.
  const std::string path = fmt::format("/proc/{}/root{}", frame.pid, loc.path);
  const symbols::FrameRequest req{.build_id = loc.build_id,
                                  .path_hint = path,
                                  .file_offset = loc.file_offset,
                                  .is_return_address = frame.return_address};
  const std::vector<symbols::LocationPtr> res =
      symbolizer_->ResolveBatch(std::span<const symbols::FrameRequest>(&req, 1));
  if (res.empty() || !res[0]->resolved || res[0]->frames.empty()) {
    fallback_.NameUser(frame, out);
    return;
  }
  // Innermost first in the location; folded stacks go root first.
  for (auto it = res[0]->frames.rbegin(); it != res[0]->frames.rend(); ++it) {
    out->push_back(SanitizeFrameName(it->function));
  }
}

}  // namespace flamestream::agent
