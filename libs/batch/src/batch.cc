#include "flamestream/batch/batch.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace flamestream::batch {
namespace {

constexpr size_t kTraceIdBytes = 16;
constexpr size_t kSpanIdBytes = 8;

// Checks strx < strings.size(); `what` names the field for the error message.
Status CheckStrx(const v1::SampleBatch& b, uint32_t strx, std::string_view what) {
  if (strx >= static_cast<uint32_t>(b.strings_size())) {
    return DataLoss("{} {} >= {} strings", what, strx, b.strings_size());
  }
  return OkStatus();
}

Status ValidateTables(const v1::SampleBatch& b) {
  if (b.strings_size() == 0) return DataLoss("strings is empty (strings[0] must be \"\")");
  if (!b.strings(0).empty()) return DataLoss(R"(strings[0] is "{}", must be "")", b.strings(0));

  for (int i = 0; i < b.mappings_size(); ++i) {
    FS_RETURN_IF_ERROR(
        CheckStrx(b, b.mappings(i).path_strx(), fmt::format("mappings[{}].path_strx", i)));
  }

  const auto num_mappings = static_cast<uint32_t>(b.mappings_size());
  for (int i = 0; i < b.locations_size(); ++i) {
    const v1::Location& loc = b.locations(i);
    if (loc.mapping_index() > num_mappings) {
      return DataLoss("locations[{}].mapping_index {} > {} mappings", i, loc.mapping_index(),
                      num_mappings);
    }
    FS_RETURN_IF_ERROR(
        CheckStrx(b, loc.symbol_strx(), fmt::format("locations[{}].symbol_strx", i)));
    for (int j = 0; j < loc.lines_size(); ++j) {
      const v1::Line& line = loc.lines(j);
      FS_RETURN_IF_ERROR(CheckStrx(b, line.function_strx(),
                                   fmt::format("locations[{}].lines[{}].function_strx", i, j)));
      FS_RETURN_IF_ERROR(CheckStrx(b, line.system_name_strx(),
                                   fmt::format("locations[{}].lines[{}].system_name_strx", i, j)));
      FS_RETURN_IF_ERROR(
          CheckStrx(b, line.file_strx(), fmt::format("locations[{}].lines[{}].file_strx", i, j)));
    }
  }

  const auto num_locations = static_cast<uint32_t>(b.locations_size());
  for (int i = 0; i < b.stacks_size(); ++i) {
    const v1::Stack& stack = b.stacks(i);
    for (int j = 0; j < stack.location_indices_size(); ++j) {
      if (stack.location_indices(j) >= num_locations) {
        return DataLoss("stacks[{}].location_indices[{}] {} >= {} locations", i, j,
                        stack.location_indices(j), num_locations);
      }
    }
  }

  for (int i = 0; i < b.spans_size(); ++i) {
    const v1::SpanRef& span = b.spans(i);
    if (span.trace_id().size() != kTraceIdBytes) {
      return DataLoss("spans[{}].trace_id has {} bytes, want {}", i, span.trace_id().size(),
                      kTraceIdBytes);
    }
    if (span.span_id().size() != kSpanIdBytes) {
      return DataLoss("spans[{}].span_id has {} bytes, want {}", i, span.span_id().size(),
                      kSpanIdBytes);
    }
  }
  return OkStatus();
}

Status ValidateSamples(const v1::SampleBatch& b) {
  const v1::Samples& s = b.samples();
  const int n = s.stack_index_size();
  struct Column {
    const char* name;
    int size;
    bool optional;  // may be empty instead of n long
  };
  // Which encoding (samples.proto): the compact columns, when present, replace plain ones.
  // With n == 0 every column is empty and either reading is right.
  const bool compact_threads = s.thread_index_size() > 0;
  const bool compact_times = s.timestamp_ticks_size() > 0 || s.timestamp_rest_size() > 0;
  const Column columns[] = {
      {"pid", s.pid_size(), compact_threads},
      {"tid", s.tid_size(), compact_threads},
      {"thread_index", s.thread_index_size(), true},
      {"cpu", s.cpu_size(), false},
      {"timestamp_delta_ns", s.timestamp_delta_ns_size(), compact_times},
      {"timestamp_ticks", s.timestamp_ticks_size(), !compact_times},
      {"timestamp_rest", s.timestamp_rest_size(), !compact_times},
      {"value_ns", s.value_ns_size(), true},
      {"span_index", s.span_index_size(), true},
      {"profile_type", s.profile_type_size(), true},
  };
  for (const Column& c : columns) {
    if (c.size != n && !(c.optional && c.size == 0)) {
      return DataLoss("samples.{} has {} entries, stack_index has {}{}", c.name, c.size, n,
                      c.optional ? " (must be equal or empty)" : "");
    }
  }
  if (compact_threads && s.pid_size() + s.tid_size() > 0) {
    return DataLoss("samples has both thread_index and pid/tid columns");
  }
  if (compact_times && s.timestamp_delta_ns_size() > 0) {
    return DataLoss("samples has both timestamp_ticks/rest and timestamp_delta_ns columns");
  }
  if (compact_times && b.timestamp_unit_ns() <= 0) {
    return DataLoss("timestamp_unit_ns is {} with compact timestamps (must be > 0)",
                    b.timestamp_unit_ns());
  }
  const auto num_threads = static_cast<uint32_t>(b.threads_size());
  for (int i = 0; i < s.thread_index_size(); ++i) {
    if (s.thread_index(i) >= num_threads) {
      return DataLoss("samples.thread_index[{}] {} >= {} threads", i, s.thread_index(i),
                      num_threads);
    }
  }

  const auto num_stacks = static_cast<uint32_t>(b.stacks_size());
  for (int i = 0; i < n; ++i) {
    if (s.stack_index(i) >= num_stacks) {
      return DataLoss("samples.stack_index[{}] {} >= {} stacks", i, s.stack_index(i), num_stacks);
    }
  }
  const auto num_spans = static_cast<uint32_t>(b.spans_size());
  for (int i = 0; i < s.profile_type_size(); ++i) {
    if (!v1::ProfileType_IsValid(s.profile_type(i))) {
      return DataLoss("samples.profile_type[{}] {} is not a known profile type", i,
                      static_cast<int>(s.profile_type(i)));
    }
  }
  for (int i = 0; i < s.span_index_size(); ++i) {
    if (s.span_index(i) > num_spans) {
      return DataLoss("samples.span_index[{}] {} > {} spans", i, s.span_index(i), num_spans);
    }
  }
  if (n > 0 && s.value_ns_size() == 0 && b.period_ns() <= 0) {
    return InvalidArgument("samples.value_ns is empty and period_ns is {} (must be > 0)",
                           b.period_ns());
  }
  return OkStatus();
}

}  // namespace

Status Validate(const v1::SampleBatch& batch) {
  if (batch.id().agent_id().empty()) return InvalidArgument("id.agent_id is empty");
  if (batch.stage() == v1::STAGE_UNSPECIFIED) {
    return InvalidArgument("stage is STAGE_UNSPECIFIED");
  }
  FS_RETURN_IF_ERROR(ValidateTables(batch));
  return ValidateSamples(batch);
}

std::string BatchIdString(const v1::BatchId& id) {
  if (id.part_size() == 0) return fmt::format("{}/{}", id.agent_id(), id.sequence());
  return fmt::format("{}/{}#{}", id.agent_id(), id.sequence(), fmt::join(id.part(), "."));
}

const v1::Mapping* MappingOf(const v1::SampleBatch& batch, const v1::Location& loc) {
  const uint32_t i = loc.mapping_index();
  if (i == 0 || i > static_cast<uint32_t>(batch.mappings_size())) return nullptr;
  return &batch.mappings(static_cast<int>(i - 1));
}

const v1::SpanRef* SpanOf(const v1::SampleBatch& batch, uint32_t span_index) {
  if (span_index == 0 || span_index > static_cast<uint32_t>(batch.spans_size())) return nullptr;
  return &batch.spans(static_cast<int>(span_index - 1));
}

const std::string& StringAt(const v1::SampleBatch& batch, uint32_t strx) {
  static const std::string kEmpty;
  if (strx >= static_cast<uint32_t>(batch.strings_size())) return kEmpty;
  return batch.strings(static_cast<int>(strx));
}

}  // namespace flamestream::batch
