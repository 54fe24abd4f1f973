#include "processor.h"

#include <algorithm>

namespace flamestream::agent {

Result<std::unique_ptr<SampleProcessor>> SampleProcessor::Create(ProcessorOptions options,
                                                                 const bpf::ClockOffset* clock,
                                                                 SampleWriter* writer) {
  auto p = std::unique_ptr<SampleProcessor>(new SampleProcessor(std::move(options), clock, writer));
  if (!p->options_.comm.empty()) {
    try {
      p->comm_re_.emplace(p->options_.comm, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      return InvalidArgument("comm filter \"{}\" is not a valid regex: {}", p->options_.comm,
                             e.what());
    }
  }
  if (!p->options_.cgroup.empty()) {
    try {
      p->cgroup_re_.emplace(p->options_.cgroup, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      return InvalidArgument("cgroup filter \"{}\" is not a valid regex: {}", p->options_.cgroup,
                             e.what());
    }
  }
  return p;
}

SampleProcessor::SampleProcessor(ProcessorOptions options, const bpf::ClockOffset* clock,
                                 SampleWriter* writer)
    : options_(std::move(options)),
      clock_(clock),
      writer_(writer),
      maps_(proc::MapsCacheOptions{.proc_root = options_.proc_root}) {}

SampleProcessor::Process& SampleProcessor::Lookup(uint32_t pid, const std::string& comm) {
  auto it = processes_.find(pid);
  if (it != processes_.end()) {
    return it->second;
  }
  Process p;
  Result<proc::ProcessInfo> info =
      proc::ReadProcessInfo(pid, {.proc_root = options_.proc_root, .cmdline = options_.cmdline});
  if (info.ok()) {
    p.info = std::move(*info);
  } else {
    // Gone already (short-lived): keep what the sample itself says.
    stats_.process_read_failures.fetch_add(1, std::memory_order_relaxed);
    p.info.pid = pid;
    p.info.ns_pid = pid;
    p.info.nspids = {pid};
    p.info.comm = comm;
  }
  auto& slot = processes_[pid] = std::move(p);
  stats_.processes.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

bool SampleProcessor::Matches(Process& p, const std::string& thread_comm) {
  if (!p.process_match) {
    bool ok = true;
    if (!options_.container_ids.empty()) {
      const std::string& id = p.info.cgroup.container_id;
      ok = !id.empty() && std::any_of(options_.container_ids.begin(), options_.container_ids.end(),
                                      [&](const std::string& want) {
                                        return !want.empty() && id.rfind(want, 0) == 0;
                                      });
    }
    if (ok && cgroup_re_) {
      ok = std::regex_search(p.info.cgroup.path, *cgroup_re_);
    }
    p.process_match = ok;
  }
  if (!*p.process_match) {
    return false;
  }
  if (!comm_re_) {
    return true;
  }
  if (!p.comm_match) {
    const std::string_view exe = p.info.exe;
    const size_t slash = exe.rfind('/');
    const std::string exe_base(slash == std::string_view::npos ? exe : exe.substr(slash + 1));
    p.comm_match = std::regex_search(p.info.comm, *comm_re_) ||
                   (!exe_base.empty() && std::regex_search(exe_base, *comm_re_));
  }
  // Threads may rename themselves ("worker-3"); either name selects the process.
  return *p.comm_match || std::regex_search(thread_comm, *comm_re_);
}

void SampleProcessor::Retire(uint32_t pid) {
  maps_.OnExit(pid);
  auto it = processes_.find(pid);
  if (it == processes_.end()) return;
  if (it->second.announced) {
    stats_.exits.fetch_add(1, std::memory_order_relaxed);
    writer_->OnExit(it->second.info);
  }
  processes_.erase(it);
}

void SampleProcessor::CheckExits() {
  std::vector<uint32_t> gone;
  for (const auto& [pid, p] : processes_) {
    // One small read per known process per interval; start time tells a reused pid apart.
    Result<uint64_t> ticks = proc::ReadStartTicks(pid, options_.proc_root);
    if (!ticks.ok() || (p.info.start_ticks != 0 && *ticks != p.info.start_ticks)) {
      gone.push_back(pid);
    }
  }
  std::sort(gone.begin(), gone.end());  // deterministic order of the writer's OnExit calls
  for (uint32_t pid : gone) {
    if (processes_.at(pid).announced) {
      stats_.exits_found_by_check.fetch_add(1, std::memory_order_relaxed);
    }
    Retire(pid);
  }
}

void SampleProcessor::Handle(bpf::RawSample&& raw) {
  switch (raw.kind) {
    case bpf::EventKind::kExec:
      maps_.OnExec(raw.pid);
      processes_.erase(raw.pid);  // new exe, comm, maybe cgroup: re-read and re-announce
      return;
    case bpf::EventKind::kExit:
      Retire(raw.pid);
      return;
    case bpf::EventKind::kSample:
    case bpf::EventKind::kOffCpu:
      break;
  }
  if (raw.monotonic_ns >= next_exit_check_ns_) {
    if (next_exit_check_ns_ != 0) CheckExits();
    next_exit_check_ns_ =
        raw.monotonic_ns + static_cast<uint64_t>(options_.exit_check_interval.count());
  }
  Process& p = Lookup(raw.pid, raw.comm);
  if (!Matches(p, raw.comm)) {
    stats_.filtered_by_comm.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (!p.announced) {
    p.announced = true;
    writer_->OnProcess(p.info);
  }
  ResolvedSample s;
  s.monotonic_ns = raw.monotonic_ns;
  s.wall_ns = clock_->ToWallNs(raw.monotonic_ns);
  s.pid = raw.pid;
  s.tid = raw.tid;
  s.cpu = raw.cpu;
  s.flags = raw.flags;
  s.off_cpu = raw.kind == bpf::EventKind::kOffCpu;
  s.value_ns = s.off_cpu ? raw.value_ns : 0;
  s.comm = std::move(raw.comm);
  s.kernel = std::move(raw.kernel_frames);
  s.user.reserve(raw.user_frames.size());
  for (size_t i = 0; i < raw.user_frames.size(); ++i) {
    UserFrame f;
    f.pid = raw.pid;
    f.address = raw.user_frames[i];
    f.return_address = i > 0;
    Result<proc::Location> loc = maps_.Resolve(raw.pid, f.address);
    if (loc.ok()) {
      f.resolved = true;
      f.location = std::move(*loc);
    } else {
      stats_.unknown_mappings.fetch_add(1, std::memory_order_relaxed);
    }
    s.user.push_back(std::move(f));
  }
  writer_->OnSample(s, p.info);
  stats_.samples.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace flamestream::agent
