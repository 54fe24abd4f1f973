#include "raw_batch.h"

#include "flamestream/common/strings.h"

namespace flamestream::agent {
namespace {

v1::MappingKind ToKind(proc::MappingKind k) {
  switch (k) {
    case proc::MappingKind::kFile:
    case proc::MappingKind::kDeleted:
      return v1::MAPPING_KIND_FILE;
    case proc::MappingKind::kAnonymous:
      return v1::MAPPING_KIND_ANONYMOUS;
    case proc::MappingKind::kJit:
      return v1::MAPPING_KIND_JIT;
    case proc::MappingKind::kVdso:
    case proc::MappingKind::kVsyscall:
      return v1::MAPPING_KIND_VDSO;
  }
  return v1::MAPPING_KIND_UNSPECIFIED;
}

}  // namespace

v1::Process ToProcessMessage(const proc::ProcessInfo& p) {
  v1::Process m;
  m.set_host_pid(p.pid);
  m.set_ns_pid(p.ns_pid);
  m.set_container_id(p.cgroup.container_id);
  m.set_pod_uid(p.cgroup.pod_uid);
  m.set_comm(p.comm);
  m.set_exe(p.exe);
  m.set_start_time_unix_ns(static_cast<int64_t>(p.start_wall_ns));
  m.set_cgroup_path(p.cgroup.path);
  m.set_start_time_ticks(p.start_ticks);
  return m;
}

RawBatchEncoder::RawBatchEncoder(RawBatchOptions options, const bpf::ClockOffset* clock,
                                 const proc::KernelSymbols* kernel)
    : options_(std::move(options)),
      clock_(clock),
      kernel_(kernel),
      sequence_(options_.first_sequence) {
  builder_.set_encoding(options_.encoding);
}

void RawBatchEncoder::OnProcess(const proc::ProcessInfo& process) {
  (void)process;  // listed per batch in OnSample; the processes topic is the publisher's job
}

uint32_t RawBatchEncoder::UserLocation(const UserFrame& f) {
  v1::Location loc;
  loc.set_is_return_address(f.return_address);
  if (!f.resolved) {
    loc.set_address(f.address);
    return builder_.InternLocation(loc);
  }
  v1::Mapping m;
  const proc::Location& l = f.location;
  m.set_kind(ToKind(l.kind));
  if (l.kind == proc::MappingKind::kFile || l.kind == proc::MappingKind::kDeleted ||
      l.kind == proc::MappingKind::kVdso) {
    // File mappings are the same in every process: keep what identifies the file, not where
    // this process happened to map it, so one library dedups across all processes.
    std::string_view path = l.path;
    if (path.ends_with(" (deleted)")) path.remove_suffix(10);
    m.set_path_strx(builder_.InternString(path));
    if (Result<std::string> raw_id = common::HexDecode(l.build_id); raw_id.ok()) {
      m.set_build_id(std::move(*raw_id));
    }
    loc.set_address(l.file_offset);
  } else {
    // Anonymous/JIT code has no file: the address itself is all there is.
    m.set_memory_start(l.mapping_start);
    m.set_memory_limit(l.mapping_end);
    m.set_path_strx(builder_.InternString(l.path));
    loc.set_address(f.address);
  }
  loc.set_mapping_index(builder_.InternMapping(m));
  return builder_.InternLocation(loc);
}

uint32_t RawBatchEncoder::KernelLocation(uint64_t address) {
  v1::Location loc;
  loc.set_address(address);
  loc.set_is_return_address(false);  // kernel stacks from bpf_get_stack: symbolized as-is
  v1::Mapping m;
  m.set_kind(v1::MAPPING_KIND_KERNEL);
  std::string_view module = "[kernel]";
  if (kernel_ != nullptr) {
    if (std::optional<proc::KernelSymbol> s = kernel_->Resolve(address)) {
      loc.set_symbol_strx(builder_.InternString(s->name));
      loc.set_symbol_offset(s->offset);
      if (!s->module.empty()) {
        m.set_kind(v1::MAPPING_KIND_KERNEL_MODULE);
        module = s->module;
      }
    }
  }
  m.set_path_strx(builder_.InternString(module));
  loc.set_mapping_index(builder_.InternMapping(m));
  return builder_.InternLocation(loc);
}

void RawBatchEncoder::OnSample(const ResolvedSample& s, const proc::ProcessInfo& process) {
  std::lock_guard lock(mu_);
  if (!header_set_) {
    builder_.SetHeader(options_.agent_id, sequence_, options_.cluster, options_.node);
    v1::SampleBatch& b = builder_.mutable_batch();
    b.set_frequency_hz(options_.frequency_hz);
    b.set_period_ns(1'000'000'000 / std::max<uint32_t>(options_.frequency_hz, 1));
    header_set_ = true;
  }
  // Leaf first, as in pprof: the kernel part of the stack is the leaf end.
  scratch_.clear();
  for (uint64_t k : s.kernel) scratch_.push_back(KernelLocation(k));
  for (const UserFrame& f : s.user) scratch_.push_back(UserLocation(f));
  if (batch_pids_.insert(s.pid).second) {
    builder_.AddProcess(ToProcessMessage(process));
  }
  if (batch_threads_.insert(uint64_t{s.pid} << 32 | s.tid).second) {
    builder_.AddThread(s.pid, s.tid, s.comm);
  }
  builder_.AddSample({.stack_index = builder_.InternStack(scratch_),
                      .pid = s.pid,
                      .tid = s.tid,
                      .cpu = s.cpu,
                      .timestamp_ns = static_cast<int64_t>(s.wall_ns),
                      .value_ns = static_cast<int64_t>(s.value_ns),
                      .profile_type = s.off_cpu ? uint32_t{v1::PROFILE_TYPE_OFF_CPU}
                                                : uint32_t{v1::PROFILE_TYPE_CPU}});
}

std::optional<v1::SampleBatch> RawBatchEncoder::Flush() {
  std::lock_guard lock(mu_);
  if (builder_.sample_count() == 0) {
    return std::nullopt;
  }
  builder_.mutable_batch().set_clock_offset_ns(clock_->offset_ns());
  v1::SampleBatch b = builder_.Finish();
  ++sequence_;
  header_set_ = false;
  batch_pids_.clear();
  batch_threads_.clear();
  return b;
}

uint64_t RawBatchEncoder::ReserveSequences(uint64_t n) {
  std::lock_guard lock(mu_);
  const uint64_t first = sequence_;
  sequence_ += n;
  if (header_set_) {
    // The batch being built already carries the old next sequence: move it past the pieces.
    builder_.mutable_batch().mutable_id()->set_sequence(sequence_);
  }
  return first;
}

size_t RawBatchEncoder::pending_samples() const {
  std::lock_guard lock(mu_);
  return builder_.sample_count();
}

}  // namespace flamestream::agent
