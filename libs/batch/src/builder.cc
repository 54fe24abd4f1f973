#include "flamestream/batch/builder.h"

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
                       .span_index = row.span_index});
  }
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
  const int n = static_cast<int>(rows_.size());
  const int64_t period = batch_->period_ns();
  bool need_values = false;
  bool need_spans = false;
  for (const SampleInput& r : rows_) {
    need_values = need_values || (r.value_ns != 0 && r.value_ns != period);
    need_spans = need_spans || r.span_index != 0;
  }
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

  v1::SampleBatch out = std::move(*batch_);
  Reset();
  return out;
}

}  // namespace flamestream::batch
