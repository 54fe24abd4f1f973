#include "flamestream/batch/builder.h"

#include <algorithm>
#include <utility>

#include "flamestream/batch/batch.h"

namespace flamestream::batch {

StringInterner::StringInterner(google::protobuf::RepeatedPtrField<std::string>* table)
    : table_(table) {
  if (table_->empty()) table_->Add();  // strings[0] = ""
  index_.reserve(static_cast<size_t>(table_->size()));
  for (int i = 0; i < table_->size(); ++i) {
    index_.try_emplace(table_->Get(i), static_cast<uint32_t>(i));  // first copy wins
  }
}

uint32_t StringInterner::Intern(std::string_view s) {
  if (s.empty()) return 0;
  auto [it, inserted] = index_.try_emplace(std::string(s), static_cast<uint32_t>(table_->size()));
  if (inserted) table_->Add(std::string(s));
  return it->second;
}

SampleEncoding EncodingOf(const v1::SampleBatch& batch) {
  if (batch.samples().thread_index_size() > 0 || batch.samples().timestamp_ticks_size() > 0) {
    return {.compact = true,
            .timestamp_unit_ns = std::max<int64_t>(batch.timestamp_unit_ns(), 1),
            .sort_locations = false};
  }
  return {};
}

BatchBuilder::BatchBuilder() { Reset(); }
BatchBuilder::BatchBuilder(BatchBuilder&&) noexcept = default;
BatchBuilder& BatchBuilder::operator=(BatchBuilder&&) noexcept = default;
BatchBuilder::~BatchBuilder() = default;

void BatchBuilder::Reset() {
  batch_ = std::make_unique<v1::SampleBatch>();
  batch_->set_stage(v1::STAGE_RAW);
  strings_ = std::make_unique<StringInterner>(batch_->mutable_strings());
  mappings_.clear();
  locations_.clear();
  stacks_.clear();
  spans_.clear();
  processes_.clear();
  threads_.clear();
  rows_.clear();
}

Result<BatchBuilder> BatchBuilder::FromBatch(v1::SampleBatch batch) {
  FS_RETURN_IF_ERROR(Validate(batch));
  BatchBuilder b;
  b.rows_.reserve(static_cast<size_t>(SampleCount(batch)));
  SampleCursor cursor(batch);
  SampleRow row;
  while (cursor.Next(&row)) {
    b.rows_.push_back({.stack_index = row.stack_index,
                       .pid = row.pid,
                       .tid = row.tid,
                       .cpu = row.cpu,
                       .timestamp_ns = row.timestamp_ns,
                       .value_ns = row.value_ns,
                       .span_index = row.span_index,
                       .profile_type = row.profile_type});
  }
  b.encoding_ = EncodingOf(batch);
  batch.clear_samples();
  *b.batch_ = std::move(batch);
  b.Reindex();
  return b;
}

void BatchBuilder::Reindex() {
  strings_ = std::make_unique<StringInterner>(batch_->mutable_strings());
  for (int i = 0; i < batch_->mappings_size(); ++i) {
    mappings_.try_emplace(batch_->mappings(i).SerializeAsString(), static_cast<uint32_t>(i + 1));
  }
  for (int i = 0; i < batch_->locations_size(); ++i) {
    locations_.try_emplace(batch_->locations(i).SerializeAsString(), static_cast<uint32_t>(i));
  }
  for (int i = 0; i < batch_->stacks_size(); ++i) {
    const auto& ids = batch_->stacks(i).location_indices();
    stacks_.try_emplace(std::vector<uint32_t>(ids.begin(), ids.end()), static_cast<uint32_t>(i));
  }
  for (int i = 0; i < batch_->spans_size(); ++i) {
    const v1::SpanRef& s = batch_->spans(i);
    spans_.try_emplace(s.trace_id() + s.span_id(), static_cast<uint32_t>(i + 1));
  }
  for (int i = 0; i < batch_->processes_size(); ++i) {
    processes_.try_emplace(batch_->processes(i).host_pid(), i);
  }
  for (int i = 0; i < batch_->threads_size(); ++i) {
    const v1::Thread& t = batch_->threads(i);
    threads_.try_emplace(uint64_t{t.pid()} << 32 | t.tid(), i);
  }
}

void BatchBuilder::SetHeader(std::string agent_id, uint64_t sequence, std::string cluster,
                             std::string node) {
  batch_->mutable_id()->set_agent_id(std::move(agent_id));
  batch_->mutable_id()->set_sequence(sequence);
  batch_->set_cluster(std::move(cluster));
  batch_->set_node(std::move(node));
}

// Mappings and locations are small messages without map fields, so their serialization is
// deterministic and serves as an exact "all fields equal" key.
uint32_t BatchBuilder::InternMapping(const v1::Mapping& mapping) {
  auto [it, inserted] = mappings_.try_emplace(mapping.SerializeAsString(),
                                              static_cast<uint32_t>(batch_->mappings_size() + 1));
  if (inserted) *batch_->add_mappings() = mapping;
  return it->second;
}

uint32_t BatchBuilder::InternLocation(const v1::Location& location) {
  auto [it, inserted] = locations_.try_emplace(location.SerializeAsString(),
                                               static_cast<uint32_t>(batch_->locations_size()));
  if (inserted) *batch_->add_locations() = location;
  return it->second;
}

uint32_t BatchBuilder::InternStack(std::span<const uint32_t> location_indices) {
  auto [it, inserted] =
      stacks_.try_emplace(std::vector<uint32_t>(location_indices.begin(), location_indices.end()),
                          static_cast<uint32_t>(batch_->stacks_size()));
  if (inserted) {
    batch_->add_stacks()->mutable_location_indices()->Add(location_indices.begin(),
                                                          location_indices.end());
  }
  return it->second;
}

uint32_t BatchBuilder::InternSpan(const v1::SpanRef& span) {
  auto [it, inserted] = spans_.try_emplace(span.trace_id() + span.span_id(),
                                           static_cast<uint32_t>(batch_->spans_size() + 1));
  if (inserted) *batch_->add_spans() = span;
  return it->second;
}

void BatchBuilder::AddProcess(const v1::Process& process) {
  auto [it, inserted] = processes_.try_emplace(process.host_pid(), batch_->processes_size());
  if (inserted) {
    *batch_->add_processes() = process;
  } else {
    *batch_->mutable_processes(it->second) = process;
  }
}

void BatchBuilder::AddThread(uint32_t pid, uint32_t tid, std::string_view name) {
  auto [it, inserted] = threads_.try_emplace(uint64_t{pid} << 32 | tid, batch_->threads_size());
  v1::Thread* t = inserted ? batch_->add_threads() : batch_->mutable_threads(it->second);
  t->set_pid(pid);
  t->set_tid(tid);
  t->set_name(std::string(name));
}

void BatchBuilder::AddSample(const SampleInput& sample) { rows_.push_back(sample); }

v1::SampleBatch BatchBuilder::Finish() {
  v1::Samples* s = batch_->mutable_samples();
  s->Clear();
  const int64_t period = batch_->period_ns();
  bool need_values = false;
  bool need_spans = false;
  bool need_types = false;
  for (const SampleInput& r : rows_) {
    need_values = need_values || (r.value_ns != 0 && r.value_ns != period);
    need_spans = need_spans || r.span_index != 0;
    need_types = need_types || r.profile_type != 0;
  }
  if (encoding_.sort_locations) SortLocations();
  if (encoding_.compact) {
    EncodeCompact(s, need_values, need_spans);
  } else {
    EncodePlain(s, need_values, need_spans);
  }
  // Last: EncodeCompact reorders rows_ by (cpu, time), and this column follows that order.
  if (need_types) {
    s->mutable_profile_type()->Reserve(static_cast<int>(rows_.size()));
    for (const SampleInput& r : rows_) {
      s->add_profile_type(static_cast<v1::ProfileType>(r.profile_type));
    }
  }
  v1::SampleBatch out = std::move(*batch_);
  Reset();
  return out;
}

void BatchBuilder::SortLocations() {
  auto* locations = batch_->mutable_locations();
  const int n = locations->size();
  std::vector<uint32_t> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[static_cast<size_t>(i)] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const v1::Location& x = locations->Get(static_cast<int>(a));
    const v1::Location& y = locations->Get(static_cast<int>(b));
    return x.mapping_index() != y.mapping_index() ? x.mapping_index() < y.mapping_index()
                                                  : x.address() < y.address();
  });
  std::vector<uint32_t> new_index(static_cast<size_t>(n));
  google::protobuf::RepeatedPtrField<v1::Location> sorted;
  sorted.Reserve(n);
  for (int i = 0; i < n; ++i) {
    new_index[order[static_cast<size_t>(i)]] = static_cast<uint32_t>(i);
    *sorted.Add() = std::move(*locations->Mutable(static_cast<int>(order[static_cast<size_t>(i)])));
  }
  locations->Swap(&sorted);
  for (v1::Stack& stack : *batch_->mutable_stacks()) {
    for (uint32_t& li : *stack.mutable_location_indices()) li = new_index[li];
  }
  locations_.clear();  // stale now; Finish() resets the builder anyway
}

void BatchBuilder::EncodePlain(v1::Samples* s, bool need_values, bool need_spans) {
  const int n = static_cast<int>(rows_.size());
  const int64_t period = batch_->period_ns();
  batch_->set_timestamp_unit_ns(0);
  batch_->set_timestamp_tick(0);
  s->mutable_stack_index()->Reserve(n);
  s->mutable_pid()->Reserve(n);
  s->mutable_tid()->Reserve(n);
  s->mutable_cpu()->Reserve(n);
  s->mutable_timestamp_delta_ns()->Reserve(n);
  if (need_values) s->mutable_value_ns()->Reserve(n);
  if (need_spans) s->mutable_span_index()->Reserve(n);

  const int64_t base = rows_.empty() ? 0 : rows_.front().timestamp_ns;
  batch_->set_base_timestamp_ns(base);
  int64_t prev = base;
  for (const SampleInput& r : rows_) {
    s->add_stack_index(r.stack_index);
    s->add_pid(r.pid);
    s->add_tid(r.tid);
    s->add_cpu(r.cpu);
    // Wrapping subtraction: the cursor's wrapping sum restores the exact value.
    s->add_timestamp_delta_ns(
        static_cast<int64_t>(static_cast<uint64_t>(r.timestamp_ns) - static_cast<uint64_t>(prev)));
    prev = r.timestamp_ns;
    if (need_values) s->add_value_ns(r.value_ns == 0 ? period : r.value_ns);
    if (need_spans) s->add_span_index(r.span_index);
  }
}

namespace {

// floor(t / unit) * unit, also for negative t.
int64_t FloorTo(int64_t t, int64_t unit) {
  int64_t q = t / unit;
  if (t % unit != 0 && t < 0) --q;
  return q * unit;
}

// round(a / b) for b > 0, halves away from zero; no overflow anywhere in int64.
int64_t RoundDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  const int64_t r = a % b;
  if (r >= b - r) ++q;   // r > 0 and r >= b / 2
  if (-r >= b + r) --q;  // r < 0 and -r >= b / 2
  return q;
}

}  // namespace

void BatchBuilder::EncodeCompact(v1::Samples* s, bool need_values, bool need_spans) {
  const int n = static_cast<int>(rows_.size());
  const int64_t period = batch_->period_ns();
  const int64_t unit = std::max<int64_t>(encoding_.timestamp_unit_ns, 1);
  const int64_t tick = std::max<int64_t>(period / unit, 1);
  batch_->set_timestamp_unit_ns(unit);
  batch_->set_timestamp_tick(tick);
  for (SampleInput& r : rows_) r.timestamp_ns = FloorTo(r.timestamp_ns, unit);
  // One CPU's samples in time order: gaps of ~one period (see samples.proto).
  std::stable_sort(rows_.begin(), rows_.end(), [](const SampleInput& a, const SampleInput& b) {
    return a.cpu != b.cpu ? a.cpu < b.cpu : a.timestamp_ns < b.timestamp_ns;
  });
  s->mutable_stack_index()->Reserve(n);
  s->mutable_thread_index()->Reserve(n);
  s->mutable_cpu()->Reserve(n);
  s->mutable_timestamp_ticks()->Reserve(n);
  s->mutable_timestamp_rest()->Reserve(n);
  if (need_values) s->mutable_value_ns()->Reserve(n);
  if (need_spans) s->mutable_span_index()->Reserve(n);

  const int64_t base = rows_.empty() ? 0 : rows_.front().timestamp_ns;
  batch_->set_base_timestamp_ns(base);
  int64_t prev = base;
  for (const SampleInput& r : rows_) {
    auto [it, inserted] =
        threads_.try_emplace(uint64_t{r.pid} << 32 | r.tid, batch_->threads_size());
    if (inserted) {
      v1::Thread* t = batch_->add_threads();
      t->set_pid(r.pid);
      t->set_tid(r.tid);
    }
    s->add_stack_index(r.stack_index);
    s->add_thread_index(static_cast<uint32_t>(it->second));
    s->add_cpu(r.cpu);
    // Both times are multiples of unit, so the delta in units is exact. With unit 1 it wraps
    // like the plain encoding's; the cursor's wrapping sum restores the exact value either way.
    const int64_t delta = unit == 1 ? static_cast<int64_t>(static_cast<uint64_t>(r.timestamp_ns) -
                                                           static_cast<uint64_t>(prev))
                                    : r.timestamp_ns / unit - prev / unit;
    const int64_t ticks = RoundDiv(delta, tick);
    s->add_timestamp_ticks(ticks);
    s->add_timestamp_rest(static_cast<int64_t>(
        static_cast<uint64_t>(delta) - static_cast<uint64_t>(ticks) * static_cast<uint64_t>(tick)));
    prev = r.timestamp_ns;
    if (need_values) s->add_value_ns(r.value_ns == 0 ? period : r.value_ns);
    if (need_spans) s->add_span_index(r.span_index);
  }
}

Status RewriteSamples(v1::SampleBatch& batch,
                      const std::function<bool(SampleInput& in, size_t index)>& edit) {
  const std::vector<SampleRow> rows = DecodeSamples(batch);
  const SampleEncoding encoding = EncodingOf(batch);
  batch.clear_samples();
  FS_ASSIGN_OR_RETURN(BatchBuilder builder, BatchBuilder::FromBatch(std::move(batch)));
  builder.set_encoding(encoding);
  for (size_t i = 0; i < rows.size(); ++i) {
    SampleInput in = ToSampleInput(rows[i]);
    if (edit(in, i)) builder.AddSample(in);
  }
  batch = builder.Finish();
  return OkStatus();
}

}  // namespace flamestream::batch
