#include "flamestream/symbols/batch_symbolizer.h"

#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/common/strings.h"

namespace flamestream::symbols {

Status SymbolizeBatch(v1::SampleBatch& batch, Symbolizer& symbolizer,
                      BatchSymbolizeStats* stats) {
  BatchSymbolizeStats local;
  BatchSymbolizeStats& st = stats != nullptr ? *stats : local;
  FS_RETURN_IF_ERROR(batch::Validate(batch));
  if (batch.stage() != v1::STAGE_RAW) {
    return InvalidArgument("expected a raw batch (STAGE_RAW), got stage {}",
                           static_cast<int>(batch.stage()));
  }
  batch::StringInterner strings(batch.mutable_strings());

  // Build ids travel as raw bytes; the symbolizer and debuginfod speak lower-case hex.
  std::vector<std::string> build_ids(batch.mappings_size());
  for (int i = 0; i < batch.mappings_size(); ++i) {
    build_ids[i] = common::HexEncode(batch.mappings(i).build_id());
  }

  std::vector<FrameRequest> requests;
  std::vector<int> request_location;
  for (int i = 0; i < batch.locations_size(); ++i) {
    v1::Location& loc = *batch.mutable_locations(i);
    loc.clear_lines();
    const uint32_t mi = loc.mapping_index();
    const v1::Mapping* mapping = mi == 0 ? nullptr : &batch.mappings(static_cast<int>(mi - 1));
    const v1::MappingKind kind =
        mapping != nullptr ? mapping->kind() : v1::MAPPING_KIND_UNSPECIFIED;
    if (kind == v1::MAPPING_KIND_KERNEL || kind == v1::MAPPING_KIND_KERNEL_MODULE ||
        (mapping == nullptr && loc.symbol_strx() != 0)) {
      ++st.kernel_frames;
      if (loc.symbol_strx() != 0) {
        loc.add_lines()->set_function_strx(loc.symbol_strx());
        loc.set_symbol_status(v1::SYMBOL_STATUS_RESOLVED);
      } else {
        loc.set_symbol_status(v1::SYMBOL_STATUS_NO_DEBUG_INFO);
      }
      continue;
    }
    if (kind != v1::MAPPING_KIND_FILE) {
      ++st.other_frames;
      loc.set_symbol_status(v1::SYMBOL_STATUS_NO_DEBUG_INFO);
      continue;
    }
    ++st.user_frames;
    requests.push_back({.build_id = build_ids[mi - 1],
                        .path_hint = batch.strings(static_cast<int>(mapping->path_strx())),
                        .file_offset = loc.address(),
                        .is_return_address = loc.is_return_address()});
    request_location.push_back(i);
  }

  const std::vector<LocationPtr> resolved = symbolizer.ResolveBatch(requests);
  for (size_t r = 0; r < resolved.size(); ++r) {
    v1::Location& loc = *batch.mutable_locations(request_location[r]);
    const Location& res = *resolved[r];
    if (!res.resolved || res.frames.empty()) {
      ++st.unresolved;
      loc.set_symbol_status(v1::SYMBOL_STATUS_NO_DEBUG_INFO);
      continue;
    }
    ++st.resolved;
    for (const SourceFrame& f : res.frames) {
      v1::Line& line = *loc.add_lines();
      line.set_function_strx(strings.Intern(f.function));
      if (f.system_name != f.function) {
        line.set_system_name_strx(strings.Intern(f.system_name));
      }
      if (f.file != kUnknown) {
        line.set_file_strx(strings.Intern(f.file));
      }
      line.set_line(f.line);
      line.set_column(f.column);
    }
    loc.set_symbol_status(v1::SYMBOL_STATUS_RESOLVED);
  }
  batch.set_stage(v1::STAGE_SYMBOLIZED);
  return OkStatus();
}

}  // namespace flamestream::symbols
