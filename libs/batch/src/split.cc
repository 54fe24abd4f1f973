#include "flamestream/batch/split.h"

#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <utility>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"

namespace flamestream::batch {
namespace {

// Measuring a piece with this as its last part number bounds its final size from above:
// the real number (1-based piece index) has a varint at most as long.
constexpr uint32_t kPartPlaceholder = std::numeric_limits<uint32_t>::max();

// Old table index -> index in the piece being built, for one table. The vector spans the
// whole table and is reused for every piece; only the entries a piece touched are reset
// after it, so a piece costs its own size, not the batch's table sizes (a batch cut into
// thousands of one-sample pieces must not clear 100k-entry vectors thousands of times).
class IndexMap {
 public:
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

  explicit IndexMap(int size) : map_(static_cast<size_t>(size), kNone) {}

  // The piece's index for old index i, or kNone.
  [[nodiscard]] uint32_t Get(uint32_t i) const { return map_[i]; }
  void Set(uint32_t i, uint32_t value) {
    map_[i] = value;
    touched_.push_back(i);
  }
  void Reset() {
    for (uint32_t i : touched_) map_[i] = kNone;
    touched_.clear();
  }

 private:
  std::vector<uint32_t> map_;
  std::vector<uint32_t> touched_;
};

// Cuts one validated batch into pieces. Holds the decoded samples and the per-table maps;
// pieces are built one at a time.
class Splitter {
 public:
  Splitter(const v1::SampleBatch& batch, size_t max_bytes)
      : in_(batch),
        max_bytes_(max_bytes),
        rows_(DecodeSamples(batch)),
        encoding_(EncodingOf(batch)),
        strings_(batch.strings_size()),
        mappings_(batch.mappings_size()),
        locations_(batch.locations_size()),
        stacks_(batch.stacks_size()),
        spans_(batch.spans_size()),
        processes_(batch.processes_size()),
        threads_(batch.threads_size()) {
    // Everything but the tables and the samples. Copying the whole batch (rather than
    // listing header fields) keeps fields added to SampleBatch later, and unknown fields of
    // a newer writer, in every piece. base_timestamp_ns and the compact timestamp unit/tick
    // are set again by BatchBuilder::Finish().
    header_ = batch;
    header_.clear_strings();
    header_.clear_mappings();
    header_.clear_locations();
    header_.clear_stacks();
    header_.clear_processes();
    header_.clear_threads();
    header_.clear_samples();
    header_.clear_spans();
    header_.clear_base_timestamp_ns();
    header_.clear_timestamp_unit_ns();
    header_.clear_timestamp_tick();
    header_.mutable_id()->add_part(kPartPlaceholder);

    // The order samples are cut in: by stack, stacks ordered root frame first, ties in stored
    // order. A piece then holds a run of stacks that share call-tree prefixes, so a table
    // entry lands in few pieces. Cutting in stored order instead duplicates the tables once
    // per CPU for a compact batch (stored by (cpu, time): every CPU's run references most of
    // the batch's stacks), 4x the input on a 4-CPU test batch and worse on large machines.
    const int num_stacks = batch.stacks_size();
    std::vector<uint32_t> stack_order(static_cast<size_t>(num_stacks));
    std::iota(stack_order.begin(), stack_order.end(), 0u);
    std::stable_sort(stack_order.begin(), stack_order.end(), [&](uint32_t a, uint32_t b) {
      const auto& x = batch.stacks(static_cast<int>(a)).location_indices();
      const auto& y = batch.stacks(static_cast<int>(b)).location_indices();
      return std::lexicographical_compare(x.rbegin(), x.rend(), y.rbegin(), y.rend());
    });
    std::vector<uint32_t> stack_rank(static_cast<size_t>(num_stacks));
    for (int i = 0; i < num_stacks; ++i) {
      stack_rank[stack_order[static_cast<size_t>(i)]] = static_cast<uint32_t>(i);
    }
    order_.resize(rows_.size());
    std::iota(order_.begin(), order_.end(), 0u);
    std::stable_sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) {
      return stack_rank[rows_[a].stack_index] < stack_rank[rows_[b].stack_index];
    });

    for (int i = batch.processes_size() - 1; i >= 0; --i) {  // first entry of a pid wins
      process_of_pid_[batch.processes(i).host_pid()] = static_cast<uint32_t>(i);
    }
    for (int i = batch.threads_size() - 1; i >= 0; --i) {
      const v1::Thread& t = batch.threads(i);
      thread_of_[ThreadKey(t.pid(), t.tid())] = static_cast<uint32_t>(i);
    }

    // The compact encoding rounds times down to its unit. A batch from BatchBuilder has
    // only multiples of it; should another writer's base_timestamp_ns not be one, the
    // pieces use unit 1 (exact) rather than move those samples' times.
    if (encoding_.compact) {
      const int64_t unit = encoding_.timestamp_unit_ns;
      if (std::any_of(rows_.begin(), rows_.end(),
                      [unit](const SampleRow& r) { return r.timestamp_ns % unit != 0; })) {
        encoding_.timestamp_unit_ns = 1;
      }
    }
  }

  Result<std::vector<v1::SampleBatch>> Run() {
    if (rows_.empty()) {
      return OutOfRange("batch {} is {} bytes, more than max_bytes {}, and has no samples to split",
                        BatchIdString(in_.id()), in_.ByteSizeLong(), max_bytes_);
    }
    std::vector<v1::SampleBatch> pieces;
    FS_RETURN_IF_ERROR(Split(0, rows_.size(), in_.ByteSizeLong(), &pieces));
    // Number the pieces in the order they were cut. The placeholder they were measured with is the
    // largest possible number, so no piece grows past max_bytes here.
    for (size_t i = 0; i < pieces.size(); ++i) {
      v1::BatchId* id = pieces[i].mutable_id();
      id->set_part(id->part_size() - 1, static_cast<uint32_t>(i + 1));
    }
    return pieces;
  }

 private:
  static uint64_t ThreadKey(uint32_t pid, uint32_t tid) { return uint64_t{pid} << 32 | tid; }

  // Appends the pieces of the samples order_[begin, end), whose batch is `size` bytes
  // (> max_bytes_), in order. Cutting into about size / max parts at once saves building the
  // levels in between when a batch is many times too large; parts that still do not fit
  // (each carries its own tables) are cut again.
  Status Split(size_t begin, size_t end, size_t size, std::vector<v1::SampleBatch>* out) {
    const size_t count = end - begin;
    // Parts of 7/8 of max_bytes: the tables each part keeps a copy of make the parts add up
    // to more than `size`, and a part aimed at max_bytes that misses is halved (a 10%
    // overshoot would double the number of pieces).
    const size_t target = max_bytes_ - max_bytes_ / 8;
    const size_t parts =
        std::min(count, std::max<size_t>(2, target == 0 ? count : (size + target - 1) / target));
    for (size_t k = 0; k < parts; ++k) {
      const size_t lo = begin + count * k / parts;
      const size_t hi = begin + count * (k + 1) / parts;
      v1::SampleBatch piece = BuildPiece(lo, hi);
      const size_t piece_size = piece.ByteSizeLong();
      if (piece_size <= max_bytes_) {
        out->push_back(std::move(piece));
      } else if (hi - lo == 1) {
        const SampleRow& r = rows_[order_[lo]];
        return OutOfRange(
            "batch {}: sample {} (stack of {} frames, pid {}, tid {}) alone makes a {}-byte "
            "piece, more than max_bytes {}; it cannot be split further",
            BatchIdString(in_.id()), order_[lo],
            in_.stacks(static_cast<int>(r.stack_index)).location_indices_size(), r.pid, r.tid,
            piece_size, max_bytes_);
      } else {
        FS_RETURN_IF_ERROR(Split(lo, hi, piece_size, out));
      }
    }
    return OkStatus();
  }

  // A batch of the samples order_[begin, end) with the header and exactly the table entries
  // they use, interned through BatchBuilder in order of first use (so it is deterministic).
  // The samples go in in stored order: a plain piece keeps the batch's order, a compact one
  // its (cpu, time) order.
  v1::SampleBatch BuildPiece(size_t begin, size_t end) {
    piece_rows_.assign(order_.begin() + static_cast<std::ptrdiff_t>(begin),
                       order_.begin() + static_cast<std::ptrdiff_t>(end));
    std::sort(piece_rows_.begin(), piece_rows_.end());
    BatchBuilder b;
    b.set_encoding(encoding_);
    // Merging into the builder's fresh batch (strings = [""]) keeps its string interner in
    // step with the table; the header's tables are all empty.
    b.mutable_batch().MergeFrom(header_);
    for (uint32_t row : piece_rows_) {
      const SampleRow& r = rows_[row];
      uint32_t span = 0;
      if (r.span_index != 0) {
        span = spans_.Get(r.span_index - 1);
        if (span == IndexMap::kNone) {
          span = b.InternSpan(in_.spans(static_cast<int>(r.span_index - 1)));
          spans_.Set(r.span_index - 1, span);
        }
      }
      if (auto it = process_of_pid_.find(r.pid); it != process_of_pid_.end()) {
        if (processes_.Get(it->second) == IndexMap::kNone) {
          b.AddProcess(in_.processes(static_cast<int>(it->second)));
          processes_.Set(it->second, 1);
        }
      }
      if (auto it = thread_of_.find(ThreadKey(r.pid, r.tid)); it != thread_of_.end()) {
        if (threads_.Get(it->second) == IndexMap::kNone) {
          const v1::Thread& t = in_.threads(static_cast<int>(it->second));
          b.AddThread(t.pid(), t.tid(), t.name());
          threads_.Set(it->second, 1);
        }
      }
      SampleInput in = ToSampleInput(r);
      in.stack_index = MapStack(b, r.stack_index);
      in.span_index = span;
      b.AddSample(in);
    }
    strings_.Reset();
    mappings_.Reset();
    locations_.Reset();
    stacks_.Reset();
    spans_.Reset();
    processes_.Reset();
    threads_.Reset();
    return b.Finish();
  }

  uint32_t MapString(BatchBuilder& b, uint32_t strx) {
    if (strx == 0) return 0;
    uint32_t s = strings_.Get(strx);
    if (s == IndexMap::kNone) {
      s = b.InternString(in_.strings(static_cast<int>(strx)));
      strings_.Set(strx, s);
    }
    return s;
  }

  uint32_t MapMapping(BatchBuilder& b, uint32_t mapping_index) {  // 1-based, 0 = none
    if (mapping_index == 0) return 0;
    uint32_t m = mappings_.Get(mapping_index - 1);
    if (m == IndexMap::kNone) {
      v1::Mapping mapping = in_.mappings(static_cast<int>(mapping_index - 1));
      mapping.set_path_strx(MapString(b, mapping.path_strx()));
      m = b.InternMapping(mapping);
      mappings_.Set(mapping_index - 1, m);
    }
    return m;
  }

  uint32_t MapLocation(BatchBuilder& b, uint32_t index) {
    uint32_t l = locations_.Get(index);
    if (l == IndexMap::kNone) {
      v1::Location loc = in_.locations(static_cast<int>(index));
      loc.set_mapping_index(MapMapping(b, loc.mapping_index()));
      loc.set_symbol_strx(MapString(b, loc.symbol_strx()));
      for (v1::Line& line : *loc.mutable_lines()) {
        line.set_function_strx(MapString(b, line.function_strx()));
        line.set_system_name_strx(MapString(b, line.system_name_strx()));
        line.set_file_strx(MapString(b, line.file_strx()));
      }
      l = b.InternLocation(loc);
      locations_.Set(index, l);
    }
    return l;
  }

  uint32_t MapStack(BatchBuilder& b, uint32_t index) {
    uint32_t s = stacks_.Get(index);
    if (s == IndexMap::kNone) {
      const v1::Stack& stack = in_.stacks(static_cast<int>(index));
      frames_.clear();
      for (uint32_t li : stack.location_indices()) frames_.push_back(MapLocation(b, li));
      s = b.InternStack(frames_);
      stacks_.Set(index, s);
    }
    return s;
  }

  const v1::SampleBatch& in_;
  const size_t max_bytes_;
  const std::vector<SampleRow> rows_;
  SampleEncoding encoding_;
  v1::SampleBatch header_;
  absl::flat_hash_map<uint32_t, uint32_t> process_of_pid_;  // host_pid -> processes index
  absl::flat_hash_map<uint64_t, uint32_t> thread_of_;       // ThreadKey -> threads index
  IndexMap strings_, mappings_, locations_, stacks_, spans_;
  IndexMap processes_, threads_;      // 1 once the piece has the entry
  std::vector<uint32_t> order_;       // rows_ indices in the order pieces are cut
  std::vector<uint32_t> piece_rows_;  // scratch for BuildPiece()
  std::vector<uint32_t> frames_;      // scratch for MapStack()
};

// SplitBatch for a batch that passed Validate().
Result<std::vector<v1::SampleBatch>> SplitValidated(const v1::SampleBatch& batch,
                                                    size_t max_bytes) {
  if (batch.ByteSizeLong() <= max_bytes) return std::vector<v1::SampleBatch>{batch};
  return Splitter(batch, max_bytes).Run();
}

}  // namespace

Result<std::vector<v1::SampleBatch>> SplitBatch(const v1::SampleBatch& batch, size_t max_bytes) {
  FS_RETURN_IF_ERROR(Validate(batch));
  return SplitValidated(batch, max_bytes);
}

Result<std::vector<std::string>> SplitSerializedBatch(std::string_view bytes, size_t max_bytes) {
  v1::SampleBatch batch;
  if (bytes.size() > static_cast<size_t>(INT_MAX) ||
      !batch.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return DataLoss("not a flamestream.v1.SampleBatch ({} bytes)", bytes.size());
  }
  if (Status s = Validate(batch); !s.ok()) return s.WithContext(BatchIdString(batch.id()));
  // What the stage loop would send is these bytes: when they fit, they go as they are.
  if (bytes.size() <= max_bytes) return std::vector<std::string>{std::string(bytes)};
  FS_ASSIGN_OR_RETURN(std::vector<v1::SampleBatch> pieces, SplitValidated(batch, max_bytes));
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (const v1::SampleBatch& piece : pieces) {
    std::string& s = out.emplace_back();
    if (!piece.SerializeToString(&s)) {
      return InternalError("serializing piece {} of batch {} failed", BatchIdString(piece.id()),
                           BatchIdString(batch.id()));
    }
  }
  return out;
}

}  // namespace flamestream::batch
