#include "flamestream/bpf/sampler.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <cstdarg>
#include <cstring>
#include <deque>
#include <fstream>
#include <limits>
#include <mutex>
#include <thread>

#include "flamestream/bpf/capabilities.h"
#include "flamestream/common/fd.h"
#include "flamestream/log/log.h"
#include "profile.h"
#include "profile.skel.h"

namespace flamestream::bpf {
namespace {

// RAII for libbpf handles.
struct SkelDeleter {
  void operator()(profile_bpf* skel) const { profile_bpf__destroy(skel); }
};
using ProfileSkel = std::unique_ptr<profile_bpf, SkelDeleter>;
struct LinkDeleter {
  void operator()(bpf_link* link) const { bpf_link__destroy(link); }
};
using BpfLink = std::unique_ptr<bpf_link, LinkDeleter>;
struct RingDeleter {
  void operator()(ring_buffer* rb) const { ring_buffer__free(rb); }
};
using RingBuffer = std::unique_ptr<ring_buffer, RingDeleter>;

constexpr int kPollTimeoutMs = 100;

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  // Verifier logs run to megabytes; keep the end, where the reason is.
  constexpr size_t kMaxMessage = size_t{16} * 1024;
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string buf(n > 0 ? static_cast<size_t>(n) + 1 : 1, '\0');
  (void)std::vsnprintf(buf.data(), buf.size(), format, args);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  std::string_view msg(buf);
  if (msg.size() > kMaxMessage) msg.remove_prefix(msg.size() - kMaxMessage);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
    msg.remove_suffix(1);
  }
  switch (level) {
    case LIBBPF_WARN:
      log::Warn("libbpf", {{"detail", msg}});
      break;
    case LIBBPF_INFO:
    case LIBBPF_DEBUG:
      log::Debug("libbpf", {{"detail", msg}});
      break;
  }
  return n;
}

uint64_t MaxEventBytes(uint32_t user_depth) {
  return sizeof(fs_event_header) + (FS_MAX_KERNEL_STACK + uint64_t{user_depth}) * sizeof(__u64);
}

uint64_t AutoRingBytes(int cpus, uint32_t hz, uint32_t user_depth) {
  // Half a second of worst-case samples on every CPU, plus the ring's 8-byte record headers.
  const uint64_t want = static_cast<uint64_t>(cpus) * hz * (MaxEventBytes(user_depth) + 8) / 2;
  return std::clamp<uint64_t>(std::bit_ceil(want), uint64_t{256} * 1024,
                              uint64_t{256} * 1024 * 1024);
}

// The unwinder's view of profile.bpf.c's three unwind maps, which stay owned by the skeleton
// (it must outlive this). Rows are written with map syscalls, not through an mmap of the pool:
// a BPF array's mmap maps every page at once, which would put the whole pool in the agent's
// RSS, used or not.
class BpfUnwindMaps final : public UnwindMaps {
 public:
  BpfUnwindMaps(int rows_fd, uint64_t row_capacity, int tables_fd, int procs_fd)
      : rows_fd_(rows_fd),
        row_capacity_(row_capacity),
        tables_fd_(tables_fd),
        procs_fd_(procs_fd) {}

  [[nodiscard]] uint64_t row_capacity() const override { return row_capacity_; }
  void WriteRows(uint32_t first, std::span<const fs_unwind_row> rows) override {
    if (rows.empty() || first + rows.size() > row_capacity_) return;
    // Blocks are packed rows (96 bytes, no padding): the run is one byte range over the
    // blocks it touches. The first and last may hold a neighbouring table's rows: read them
    // first, so they are written back unchanged.
    const uint32_t b0 = first / FS_UNWIND_BLOCK_ROWS;
    const auto b1 = static_cast<uint32_t>((first + rows.size() - 1) / FS_UNWIND_BLOCK_ROWS);
    std::vector<fs_unwind_block> blocks(b1 - b0 + 1);
    std::vector<uint32_t> keys(blocks.size());
    for (size_t i = 0; i < keys.size(); ++i) keys[i] = b0 + static_cast<uint32_t>(i);
    (void)bpf_map_lookup_elem(rows_fd_, &keys.front(), &blocks.front());
    (void)bpf_map_lookup_elem(rows_fd_, &keys.back(), &blocks.back());
    std::memcpy(reinterpret_cast<char*>(blocks.data()) +
                    (first % FS_UNWIND_BLOCK_ROWS) * sizeof(fs_unwind_row),
                rows.data(), rows.size_bytes());
    auto count = static_cast<__u32>(blocks.size());
    if (bpf_map_update_batch(rows_fd_, keys.data(), blocks.data(), &count, nullptr) != 0) {
      // Kernels without batch updates of arrays: one block at a time.
      for (size_t i = 0; i < keys.size(); ++i) {
        (void)bpf_map_update_elem(rows_fd_, &keys[i], &blocks[i], BPF_ANY);
      }
    }
  }
  Status PutTable(uint32_t id, const fs_unwind_table& table) override {
    if (bpf_map_update_elem(tables_fd_, &id, &table, BPF_ANY) != 0) {
      return ErrnoError(errno, "update unwind_tables");
    }
    return OkStatus();
  }
  void DeleteTable(uint32_t id) override { (void)bpf_map_delete_elem(tables_fd_, &id); }
  Status PutProcess(uint32_t pid, const fs_unwind_proc& proc) override {
    if (bpf_map_update_elem(procs_fd_, &pid, &proc, BPF_ANY) != 0) {
      return ErrnoError(errno, "update unwind_procs");
    }
    return OkStatus();
  }
  void DeleteProcess(uint32_t pid) override { (void)bpf_map_delete_elem(procs_fd_, &pid); }

 private:
  int rows_fd_;
  uint64_t row_capacity_;
  int tables_fd_;
  int procs_fd_;
};

static_assert(sizeof(fs_unwind_block) == FS_UNWIND_BLOCK_ROWS * sizeof(fs_unwind_row),
              "blocks must be packed rows");
static_assert(sizeof(fs_unwind_block) % 8 == 0, "array elements are padded to 8 bytes");

int ReadMaxSampleRate() {
  std::ifstream in("/proc/sys/kernel/perf_event_max_sample_rate");
  int rate = 0;
  in >> rate;
  return rate;
}

}  // namespace

Result<RawSample> DecodeRecord(const void* data, size_t size) {
  if (data == nullptr || size < sizeof(fs_event_header)) {
    return DataLoss("record of {} bytes is shorter than its header", size);
  }
  fs_event_header hdr;
  std::memcpy(&hdr, data, sizeof(hdr));
  if (hdr.kind < FS_EVENT_SAMPLE || hdr.kind > FS_EVENT_OFF_CPU) {
    return DataLoss("unknown event kind {}", hdr.kind);
  }
  const size_t frames = (size - sizeof(hdr)) / sizeof(uint64_t);
  if (size_t{hdr.kernel_depth} + hdr.user_depth > frames ||
      hdr.kernel_depth > FS_MAX_KERNEL_STACK || hdr.user_depth > FS_MAX_USER_STACK) {
    return DataLoss("record claims {}+{} frames but holds {}", hdr.kernel_depth, hdr.user_depth,
                    frames);
  }
  RawSample s;
  s.kind = static_cast<EventKind>(hdr.kind);
  s.monotonic_ns = hdr.ts_ns;
  s.pid = hdr.pid;
  s.tid = hdr.tid;
  s.cpu = hdr.cpu;
  s.flags = hdr.flags;
  s.value_ns = hdr.value;
  s.comm.assign(hdr.comm, strnlen(hdr.comm, sizeof(hdr.comm)));
  const auto* bytes = static_cast<const uint8_t*>(data) + sizeof(hdr);
  // Element-wise: an empty vector's data() may be null, which memcpy must not be given.
  auto read_frames = [](const uint8_t* from, size_t n, std::vector<uint64_t>* to) {
    to->resize(n);
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(&(*to)[i], from + i * sizeof(uint64_t), sizeof(uint64_t));
    }
  };
  read_frames(bytes, hdr.kernel_depth, &s.kernel_frames);
  read_frames(bytes + hdr.kernel_depth * sizeof(uint64_t), hdr.user_depth, &s.user_frames);
  return s;
}

class Sampler::Impl {
 public:
  Impl(SamplerConfig config, Callback callback)
      : config_(std::move(config)), callback_(std::move(callback)) {}

  ~Impl() { Stop(); }

  Status Open();
  Status Attach();
  Status Start();
  void Stop();
  Status UpdatePid(uint32_t pid, bool add);
  SamplerStats Stats() const;
  int num_cpus() const { return static_cast<int>(perf_fds_.size()); }
  Unwinder* unwinder() const { return unwinder_.get(); }

 private:
  static int OnRecord(void* ctx, void* data, size_t size);
  void ReadLoop();
  void DispatchLoop();

  SamplerConfig config_;
  Callback callback_;
  ProfileSkel skel_;
  // Perf fds until attached; each BpfLink then owns its fd (libbpf closes it on destroy).
  std::vector<common::UniqueFd> perf_fds_;
  std::vector<BpfLink> links_;
  RingBuffer ring_;
  common::UniqueFd stats_fd_;
  uint64_t ring_bytes_ = 0;
  // Declared after skel_: destroyed first, while the maps it writes still exist.
  std::unique_ptr<Unwinder> unwinder_;

  std::atomic<bool> stop_reader_{false};
  std::thread reader_;
  std::thread dispatcher_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RawSample> queue_;  // guarded by mu_
  bool draining_ = false;        // guarded by mu_
  std::atomic<uint64_t> queue_drops_{0};
  std::atomic<uint64_t> decode_errors_{0};
  std::atomic<uint64_t> delivered_{0};
  bool attached_ = false;
  bool started_ = false;
};

Status Sampler::Impl::Open() {
  if (config_.frequency_hz < 1 || config_.frequency_hz > kMaxFrequencyHz) {
    return InvalidArgument("frequency {} Hz is outside 1..{}", config_.frequency_hz,
                           kMaxFrequencyHz);
  }
  if (config_.user_stack_depth < 1 || config_.user_stack_depth > kMaxUserStackDepth) {
    return InvalidArgument("user stack depth {} is outside 1..{}", config_.user_stack_depth,
                           kMaxUserStackDepth);
  }
  if (config_.ring_bytes != 0 &&
      (!std::has_single_bit(config_.ring_bytes) || config_.ring_bytes < 4096)) {
    return InvalidArgument("ring size {} is not a power of two >= 4096", config_.ring_bytes);
  }
  if (const int max_rate = ReadMaxSampleRate();
      max_rate > 0 && config_.frequency_hz > static_cast<uint32_t>(max_rate)) {
    return InvalidArgument("frequency {} Hz exceeds kernel.perf_event_max_sample_rate = {}",
                           config_.frequency_hz, max_rate);
  }
  static std::once_flag print_once;
  std::call_once(print_once, [] { libbpf_set_print(LibbpfPrint); });

  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) {
    return ErrnoError(-cpus, "libbpf_num_possible_cpus");
  }

  skel_.reset(profile_bpf__open());
  if (!skel_) {
    return ErrnoError(errno, "open BPF skeleton");
  }
  ring_bytes_ = config_.ring_bytes != 0
                    ? config_.ring_bytes
                    : AutoRingBytes(cpus, config_.frequency_hz, config_.user_stack_depth);
  auto* ro = skel_->rodata;
  ro->filter_pids = !config_.pids.empty();
  ro->user_stack_depth = config_.user_stack_depth;
  ro->kernel_stacks = config_.kernel_stacks;
  ro->user_stacks = config_.user_stacks;
  ro->exclude_tgid = config_.exclude_self ? static_cast<__u32>(::getpid()) : 0;
  ro->wakeup_bytes = ring_bytes_ / 4;
  if (int err = bpf_map__set_max_entries(skel_->maps.events, static_cast<__u32>(ring_bytes_));
      err != 0) {
    return ErrnoError(-err, "size ring buffer");
  }
  if (int err = bpf_map__set_max_entries(skel_->maps.target_pids,
                                         std::max<uint32_t>(config_.max_pids, 1));
      err != 0) {
    return ErrnoError(-err, "size pid filter");
  }
  const bool cfi = config_.unwind.enabled;
  uint64_t blocks = 1;
  if (cfi) {
    if (config_.unwind.max_table_bytes < sizeof(fs_unwind_block) ||
        config_.unwind.max_tables == 0 || config_.unwind.max_processes == 0) {
      return InvalidArgument("unwind table budget, table and process limits must be positive");
    }
    blocks = config_.unwind.max_table_bytes / sizeof(fs_unwind_block);
    if (blocks * FS_UNWIND_BLOCK_ROWS > std::numeric_limits<uint32_t>::max()) {
      return InvalidArgument("unwind table budget {} bytes is over the 48 GiB row limit",
                             config_.unwind.max_table_bytes);
    }
    ro->cfi_unwind = true;
    for (auto [map, n] :
         {std::pair{skel_->maps.unwind_rows, blocks},
          std::pair{skel_->maps.unwind_tables, uint64_t{config_.unwind.max_tables}},
          std::pair{skel_->maps.unwind_procs, uint64_t{config_.unwind.max_processes}}}) {
      if (int err = bpf_map__set_max_entries(map, static_cast<__u32>(n)); err != 0) {
        return ErrnoError(-err, fmt::format("size {}", bpf_map__name(map)));
      }
    }
  } else {
    bpf_program__set_autoload(skel_->progs.profile_fork, false);
  }
  ro->process_events = config_.process_events;
  ro->off_cpu_threshold_ns = config_.off_cpu_threshold_ns;
  if (config_.off_cpu_threshold_ns == 0) {
    bpf_program__set_autoload(skel_->progs.profile_switch, false);
  } else {
    if (int err = bpf_map__set_max_entries(skel_->maps.off_cpu_pending,
                                           std::max<uint32_t>(config_.off_cpu_max_threads, 1));
        err != 0) {
      return ErrnoError(-err, "size off_cpu_pending");
    }
  }
  if (!config_.process_events && !cfi) {
    bpf_program__set_autoload(skel_->progs.profile_exec, false);
    bpf_program__set_autoload(skel_->progs.profile_exit, false);
  }
  if (int err = profile_bpf__load(skel_.get()); err != 0) {
    return ErrnoError(-err, "load BPF program (see libbpf log above)");
  }
  if (cfi) {
    unwinder_ = std::make_unique<Unwinder>(
        config_.unwind, std::make_unique<BpfUnwindMaps>(bpf_map__fd(skel_->maps.unwind_rows),
                                                        blocks * FS_UNWIND_BLOCK_ROWS,
                                                        bpf_map__fd(skel_->maps.unwind_tables),
                                                        bpf_map__fd(skel_->maps.unwind_procs)));
    for (uint32_t pid : config_.pids) unwinder_->ScanBeforeStart(pid);
  }
  for (uint32_t pid : config_.pids) {
    FS_RETURN_IF_ERROR(UpdatePid(pid, true));
  }

  for (int cpu = 0; cpu < cpus; ++cpu) {
    perf_event_attr attr{};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.freq = 1;
    attr.sample_freq = config_.frequency_hz;
    attr.disabled = 1;
    // pid = -1, cpu = N: every task on that CPU. Per-task events deliver no samples on some
    // virtualized hosts, and per-CPU events are one fd per CPU instead of one per thread.
    const int fd =
        static_cast<int>(::syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
    if (fd < 0) {
      if (errno == ENODEV) {
        continue;  // possible but offline CPU
      }
      return ErrnoError(errno, fmt::format("perf_event_open(cpu-clock, cpu {})", cpu));
    }
    perf_fds_.emplace_back(fd);
  }
  if (perf_fds_.empty()) {
    return Unavailable("no online CPU accepted a cpu-clock perf event");
  }

  ring_.reset(ring_buffer__new(bpf_map__fd(skel_->maps.events), &Impl::OnRecord, this, nullptr));
  if (!ring_) {
    return ErrnoError(errno, "ring_buffer__new");
  }
  if (config_.bpf_stats) {
    if (HasCapability(Capability::kSysAdmin)) {
      const int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
      if (fd >= 0) {
        stats_fd_.reset(fd);
      } else {
        log::Info("BPF run-time stats unavailable", {{"error", ErrnoError(errno, "enable")}});
      }
    } else {
      log::Info("BPF run-time stats off", {{"reason", "no CAP_SYS_ADMIN"}});
    }
  }
  return OkStatus();
}

Status Sampler::Impl::Attach() {
  if (attached_) {
    return OkStatus();
  }
  for (auto& fd : perf_fds_) {
    bpf_link* link = bpf_program__attach_perf_event(skel_->progs.profile_sample, fd.get());
    if (link == nullptr) {
      const int err = errno;
      links_.clear();
      return ErrnoError(err, "attach perf_event program");
    }
    (void)fd.release();  // the link owns it now
    links_.emplace_back(link);
  }
  if (config_.off_cpu_threshold_ns != 0) {
    bpf_link* sw = bpf_program__attach(skel_->progs.profile_switch);
    if (sw == nullptr) {
      const int err = errno;
      links_.clear();
      return ErrnoError(err, "attach sched_switch (off-CPU)");
    }
    links_.emplace_back(sw);
  }
  if (config_.process_events || unwinder_) {
    std::vector<bpf_program*> progs = {skel_->progs.profile_exec, skel_->progs.profile_exit};
    if (unwinder_) progs.push_back(skel_->progs.profile_fork);
    for (bpf_program* prog : progs) {
      bpf_link* link = bpf_program__attach(prog);
      if (link == nullptr) {
        log::Warn("process exec/exit tracking unavailable",
                  {{"program", bpf_program__name(prog)}, {"error", ErrnoError(errno, "attach")}});
        continue;
      }
      links_.emplace_back(link);
    }
  }
  attached_ = true;
  return OkStatus();
}

Status Sampler::Impl::Start() {
  if (started_) {
    return FailedPrecondition("sampler already started");
  }
  FS_RETURN_IF_ERROR(Attach());
  if (unwinder_) unwinder_->Start();
  started_ = true;
  stop_reader_ = false;
  dispatcher_ = std::thread([this] { DispatchLoop(); });
  reader_ = std::thread([this] { ReadLoop(); });
  return OkStatus();
}

void Sampler::Impl::Stop() {
  if (!started_) {
    return;
  }
  started_ = false;
  attached_ = false;
  links_.clear();  // no new samples from here on
  stop_reader_ = true;
  reader_.join();  // drains the ring once more before returning
  {
    std::lock_guard lock(mu_);
    draining_ = true;
  }
  cv_.notify_all();
  dispatcher_.join();
  if (unwinder_) unwinder_->Stop();
}

int Sampler::Impl::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<Impl*>(ctx);
  Result<RawSample> sample = DecodeRecord(data, size);
  if (!sample.ok()) {
    self->decode_errors_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  {
    std::lock_guard lock(self->mu_);
    if (self->queue_.size() >= self->config_.queue_capacity) {
      self->queue_drops_.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    self->queue_.push_back(std::move(sample).value());
  }
  self->cv_.notify_one();
  return 0;
}

void Sampler::Impl::ReadLoop() {
  while (!stop_reader_.load()) {
    // BPF wakes us only when a quarter of the ring is full; the timeout drains the rest.
    const int n = ring_buffer__poll(ring_.get(), kPollTimeoutMs);
    if (n == 0) {
      (void)ring_buffer__consume(ring_.get());
    } else if (n < 0 && n != -EINTR) {
      log::Error("ring buffer poll failed; sampling stops", {{"error", ErrnoError(-n, "poll")}});
      break;
    }
  }
  (void)ring_buffer__consume(ring_.get());
}

void Sampler::Impl::DispatchLoop() {
  std::deque<RawSample> batch;
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return !queue_.empty() || draining_; });
      if (queue_.empty() && draining_) {
        return;
      }
      batch.swap(queue_);
    }
    for (RawSample& s : batch) {
      if (unwinder_) {
        switch (s.kind) {
          case EventKind::kSample:
          case EventKind::kOffCpu:
            if ((s.flags & SampleFlags::kKernelThread) == 0) {
              unwinder_->OnSample(s.pid, (s.flags & SampleFlags::kUnwindNoProc) == 0,
                                  s.user_frames);
            }
            break;
          case EventKind::kExec:
            unwinder_->OnExec(s.pid);
            break;
          case EventKind::kExit:
            unwinder_->OnExit(s.pid);
            break;
        }
      }
      if ((s.kind == EventKind::kExec || s.kind == EventKind::kExit) && !config_.process_events) {
        continue;
      }
      callback_(std::move(s));
    }
    delivered_.fetch_add(batch.size(), std::memory_order_relaxed);
    batch.clear();
  }
}

Status Sampler::Impl::UpdatePid(uint32_t pid, bool add) {
  if (config_.pids.empty() && !skel_->rodata->filter_pids) {
    return FailedPrecondition("sampler samples every process; create it with a pid list");
  }
  const int fd = bpf_map__fd(skel_->maps.target_pids);
  const __u8 one = 1;
  const int err =
      add ? bpf_map_update_elem(fd, &pid, &one, BPF_ANY) : bpf_map_delete_elem(fd, &pid);
  if (err != 0 && !(err == -ENOENT && !add)) {
    return ErrnoError(-err, fmt::format("{} pid {} in filter", add ? "add" : "remove", pid));
  }
  return OkStatus();
}

SamplerStats Sampler::Impl::Stats() const {
  SamplerStats st;
  st.queue_drops = queue_drops_.load();
  st.decode_errors = decode_errors_.load();
  st.delivered = delivered_.load();
  st.ring_bytes = ring_bytes_;
  if (!skel_) {
    return st;
  }
  const int cpus = libbpf_num_possible_cpus();
  std::vector<uint64_t> values(std::max(cpus, 1));
  auto sum = [&](uint32_t key) {
    uint64_t total = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.stats), &key, values.data()) == 0) {
      for (uint64_t v : values) {
        total += v;
      }
    }
    return total;
  };
  st.samples = sum(FS_STAT_SAMPLES);
  st.ring_drops = sum(FS_STAT_RING_DROPS);
  st.filtered = sum(FS_STAT_FILTERED);
  st.idle = sum(FS_STAT_IDLE);
  st.user_truncated = sum(FS_STAT_USER_TRUNCATED);
  st.kernel_truncated = sum(FS_STAT_KERNEL_TRUNCATED);
  st.user_read_failed = sum(FS_STAT_USER_READ_FAILED);
  st.cfi_frames = sum(FS_STAT_CFI_FRAMES);
  st.fp_frames = sum(FS_STAT_FP_FRAMES);
  st.unsupported_frames = sum(FS_STAT_UNSUPPORTED_FRAMES);
  st.table_missing = sum(FS_STAT_TABLE_MISSING);
  st.incomplete_stacks = sum(FS_STAT_INCOMPLETE_STACKS);
  st.no_proc = sum(FS_STAT_NO_PROC);
  st.off_cpu_events = sum(FS_STAT_OFF_CPU_EVENTS);
  st.off_cpu_short = sum(FS_STAT_OFF_CPU_SHORT);
  st.off_cpu_drops = sum(FS_STAT_OFF_CPU_DROPS);
  if (unwinder_) st.unwind = unwinder_->Stats();
  if (stats_fd_) {
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(skel_->progs.profile_sample), &info, &len) == 0) {
      st.bpf_run_ns = info.run_time_ns;
      st.bpf_run_count = info.run_cnt;
    }
  }
  return st;
}

Result<std::unique_ptr<Sampler>> Sampler::Create(const SamplerConfig& config, Callback callback) {
  if (!callback) {
    return InvalidArgument("sampler needs a callback");
  }
  auto impl = std::make_unique<Impl>(config, std::move(callback));
  FS_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<Sampler>(new Sampler(std::move(impl)));
}

Sampler::Sampler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sampler::~Sampler() = default;
Status Sampler::Attach() { return impl_->Attach(); }
Status Sampler::Start() { return impl_->Start(); }
void Sampler::Stop() { impl_->Stop(); }
Status Sampler::AddPid(uint32_t pid) { return impl_->UpdatePid(pid, true); }
Status Sampler::RemovePid(uint32_t pid) { return impl_->UpdatePid(pid, false); }
SamplerStats Sampler::Stats() const { return impl_->Stats(); }
int Sampler::num_cpus() const { return impl_->num_cpus(); }
Unwinder* Sampler::unwinder() const { return impl_->unwinder(); }

}  // namespace flamestream::bpf
