// Builds a flamestream.v1.SampleBatch: interns strings, mappings, locations, stacks, spans and
// appends samples into the packed columns (timestamps delta-encoded).
//
//   BatchBuilder b;
//   b.SetHeader("prod/node-1/4f2a", /*sequence=*/42, "prod", "node-1");
//   b.mutable_batch().set_frequency_hz(99);
//   b.mutable_batch().set_period_ns(1'000'000'000 / 99);
//   v1::Mapping libc;  libc.set_build_id(build_id); libc.set_kind(v1::MAPPING_KIND_FILE);
//   libc.set_path_strx(b.InternString("/usr/lib/x86_64-linux-gnu/libc.so.6"));
//   uint32_t m = b.InternMapping(libc);                  // 1-based mapping_index
//   v1::Location leaf;  leaf.set_mapping_index(m);  leaf.set_address(0x29d90);
//   std::vector<uint32_t> frames = {b.InternLocation(leaf), ...};   // leaf first
//   b.AddSample({.stack_index = b.InternStack(frames), .pid = 1234, .tid = 1235, .cpu = 1,
//                .timestamp_ns = wall_ns});              // value_ns 0 = period_ns
//   v1::SampleBatch batch = b.Finish();                  // passes batch::Validate()
//
// Sample columns are plain by default; the agent writes the compact encoding (samples.proto):
//   b.set_encoding({.compact = true, .timestamp_unit_ns = 1000, .sort_locations = true});
// SampleCursor / DecodeSamples read both, so consumers never look at the columns themselves.
//
// A later stage extends a batch it received with BatchBuilder::FromBatch(batch): the tables
// are re-indexed so interning finds existing entries, and new ones are appended (indices of
// existing entries never change). To only add strings to a batch in place (e.g. the
// symbolizer filling Location.lines), use StringInterner on batch.mutable_strings().
#pragma once

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/batch/cursor.h"
#include "flamestream/common/status.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::batch {

// Deduplicating appender for a string table whose [0] is "" (adds "" if the table is empty).
// Holds a pointer: the table must outlive the interner and only grow through it.
class StringInterner {
 public:
  explicit StringInterner(google::protobuf::RepeatedPtrField<std::string>* table);

  // Index of `s` in the table, appending it if new. "" is always 0.
  uint32_t Intern(std::string_view s);

 private:
  google::protobuf::RepeatedPtrField<std::string>* table_;
  absl::flat_hash_map<std::string, uint32_t> index_;
};

// How Finish() lays out the sample columns (see Samples in samples.proto).
struct SampleEncoding {
  // false: plain (pid, tid, timestamp_delta_ns; samples in the order added).
  // true: compact (thread_index, timestamp_ticks/rest; samples ordered by (cpu, time)).
  bool compact = false;
  // Compact only: timestamps are rounded down to a multiple of this many ns (1 = exact).
  int64_t timestamp_unit_ns = 1;
  // Finish() orders the location table by (mapping_index, address), renumbering the stacks'
  // location indices: neighbouring addresses then share their high bytes, which zstd
  // finds (~5% of a raw batch). Only for a batch built from scratch: it renumbers every
  // location, so FromBatch() never turns it on.
  bool sort_locations = false;
};

// The encoding a batch's samples use (compact with its timestamp unit, or plain); never
// sort_locations, which would renumber the batch's existing locations.
[[nodiscard]] SampleEncoding EncodingOf(const ::flamestream::v1::SampleBatch& batch);

// One sample to append; see SampleRow for the meaning of each field.
struct SampleInput {
  uint32_t stack_index = 0;
  uint32_t pid = 0;
  uint32_t tid = 0;
  uint32_t cpu = 0;
  int64_t timestamp_ns = 0;   // unix wall-clock ns (absolute; the builder delta-encodes)
  int64_t value_ns = 0;       // 0 = the batch's period_ns
  uint32_t span_index = 0;    // 1-based; 0 = none
  uint32_t profile_type = 0;  // v1::ProfileType; 0 = CPU
};

// A decoded row as the input that appends it again (a filter, a split, a re-written batch).
inline SampleInput ToSampleInput(const SampleRow& r) {
  return {.stack_index = r.stack_index,
          .pid = r.pid,
          .tid = r.tid,
          .cpu = r.cpu,
          .timestamp_ns = r.timestamp_ns,
          .value_ns = r.value_ns,
          .span_index = r.span_index,
          .profile_type = r.profile_type};
}

class BatchBuilder {
 public:
  BatchBuilder();
  BatchBuilder(BatchBuilder&&) noexcept;
  BatchBuilder& operator=(BatchBuilder&&) noexcept;
  BatchBuilder(const BatchBuilder&) = delete;
  BatchBuilder& operator=(const BatchBuilder&) = delete;
  ~BatchBuilder();

  // Starts from an existing batch (which must pass Validate()), keeping every table entry
  // and sample; interning then reuses its entries. The encoding stays the batch's own
  // (compact with its timestamp unit, or plain).
  [[nodiscard]] static Result<BatchBuilder> FromBatch(::flamestream::v1::SampleBatch batch);

  // Sample column layout for Finish(); plain by default. Kept across Finish().
  void set_encoding(const SampleEncoding& encoding) { encoding_ = encoding; }
  [[nodiscard]] const SampleEncoding& encoding() const { return encoding_; }

  // Sets id, cluster and node; stage defaults to STAGE_RAW.
  void SetHeader(std::string agent_id, uint64_t sequence, std::string cluster, std::string node);

  // Header fields (stage, clock_offset_ns, period_ns, frequency_hz, symbol_epoch, ...).
  // Do not touch strings/mappings/locations/stacks/spans/samples through it while building:
  // use the methods below so the indexes stay in sync. (Editing Location.lines of existing
  // locations is fine.)
  ::flamestream::v1::SampleBatch& mutable_batch() { return *batch_; }
  const ::flamestream::v1::SampleBatch& batch() const { return *batch_; }

  // Index in strings; "" is 0.
  uint32_t InternString(std::string_view s) { return strings_->Intern(s); }
  // 1-based mapping_index of a mapping equal in every field (appended if new).
  uint32_t InternMapping(const ::flamestream::v1::Mapping& mapping);
  // 0-based index of a location equal in every field (appended if new). Its mapping_index
  // and strx must already refer to this batch.
  uint32_t InternLocation(const ::flamestream::v1::Location& location);
  // 0-based index of the stack with these location indices, leaf first (appended if new).
  uint32_t InternStack(std::span<const uint32_t> location_indices);
  // 1-based span_index of a span with this span id and trace id (appended if new; name and
  // service of the first one win).
  uint32_t InternSpan(const ::flamestream::v1::SpanRef& span);
  // Adds process metadata; a second call for the same host_pid replaces the first.
  void AddProcess(const ::flamestream::v1::Process& process);
  // Adds thread metadata; a second call for the same (pid, tid) replaces the name.
  void AddThread(uint32_t pid, uint32_t tid, std::string_view name);

  // Appends one sample. Indices are not checked here; Finish() output is validated in tests
  // and by consumers.
  void AddSample(const SampleInput& sample);
  // Number of samples appended so far.
  [[nodiscard]] size_t sample_count() const { return rows_.size(); }
  // Approximate number of distinct stacks so far (for batch-size limits).
  [[nodiscard]] size_t stack_count() const { return static_cast<size_t>(batch_->stacks_size()); }

  // Encodes the samples and returns the batch; the builder is empty (as if new, keeping the
  // encoding) afterwards. base_timestamp_ns becomes the first stored sample's time (so the
  // first delta is 0); value_ns is omitted when every value equals period_ns, span_index
  // when every sample has 0. Compact: every sample's (pid, tid) gets a threads entry (with
  // an empty name if AddThread() was not called for it).
  [[nodiscard]] ::flamestream::v1::SampleBatch Finish();

 private:
  void Reset();
  void Reindex();  // rebuilds the interning maps from batch_'s tables
  void SortLocations();
  void EncodePlain(::flamestream::v1::Samples* s, bool need_values, bool need_spans);
  void EncodeCompact(::flamestream::v1::Samples* s, bool need_values, bool need_spans);

  // Heap-allocated so the interner's pointer to its string table survives moves.
  std::unique_ptr<::flamestream::v1::SampleBatch> batch_;
  std::unique_ptr<StringInterner> strings_;
  absl::flat_hash_map<std::string, uint32_t> mappings_;   // serialized Mapping -> index+1
  absl::flat_hash_map<std::string, uint32_t> locations_;  // serialized Location -> index
  absl::flat_hash_map<std::vector<uint32_t>, uint32_t> stacks_;
  absl::flat_hash_map<std::string, uint32_t> spans_;  // trace_id + span_id -> index+1
  absl::flat_hash_map<uint32_t, int> processes_;      // host_pid -> position
  absl::flat_hash_map<uint64_t, int> threads_;        // pid << 32 | tid -> position
  std::vector<SampleInput> rows_;
  SampleEncoding encoding_;
};

// Rebuilds `batch`'s samples in place through `edit`, which sees each row in order as the
// input that would append it and may change it, or drop it by returning false. Tables, header
// and sample encoding stay as they were (FromBatch); the result passes Validate when the input
// did and `edit` keeps indices valid.
//
//   RewriteSamples(batch, [](SampleInput& in, size_t i) { return in.pid != 42; });  // a filter
Status RewriteSamples(::flamestream::v1::SampleBatch& batch,
                      const std::function<bool(SampleInput& in, size_t index)>& edit);

}  // namespace flamestream::batch
