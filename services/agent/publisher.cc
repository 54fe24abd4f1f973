#include "publisher.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "flamestream/common/clock.h"
#include "flamestream/batch/batch.h"
#include "flamestream/batch/split.h"
#include "flamestream/common/identity.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/log/log.h"
#include "flamestream/proc/build_id.h"
#include "flamestream/service/service.h"

namespace flamestream::agent {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxProcessRetries = 10000;
constexpr std::string_view kNextSequenceFile = "next-sequence";
// Sequences reserved at a time in the next-sequence file: after a crash the next run starts
// past every sequence this one may have used (a gap, never a reused batch id).
constexpr uint64_t kSequenceLease = 1024;
// What a raw record costs against message.max.bytes beyond its value (key, framing).
constexpr size_t kRecordOverhead = 512;


}  // namespace

std::string Publisher::ProcessKey(const std::string& cluster, const std::string& node,
                                  const proc::ProcessInfo& p) {
  return common::ProcessKey{common::NodeKey::Of(cluster, node), static_cast<uint32_t>(p.pid),
                            static_cast<uint64_t>(p.start_ticks)}
      .str();
}

v1::ProcessRecord Publisher::ToProcessRecord(const std::string& cluster, const std::string& node,
                                             const proc::ProcessInfo& p) {
  v1::ProcessRecord r;
  r.set_cluster(common::ToLower(cluster));
  r.set_node(common::ToLower(node));
  r.set_host_pid(p.pid);
  r.set_ns_pid(p.ns_pid);
  for (uint32_t n : p.nspids) r.add_ns_pids(n);
  r.set_container_id(p.cgroup.container_id);
  r.set_pod_uid(p.cgroup.pod_uid);
  r.set_comm(p.comm);
  r.set_exe(p.exe);
  // ProcessInfo joins argv with spaces (only filled when agent.cmdline is on).
  if (!p.cmdline.empty()) {
    for (std::string& arg : common::Split(p.cmdline, ' ')) r.add_cmdline(std::move(arg));
  }
  r.set_cgroup_path(p.cgroup.path);
  r.set_start_time_unix_ns(static_cast<int64_t>(p.start_wall_ns));
  r.set_start_time_ticks(p.start_ticks);
  if (!p.exe.empty()) {
    if (Result<std::string> id = proc::ReadBuildId(fmt::format("/proc/{}/exe", p.pid)); id.ok()) {
      if (Result<std::string> raw = common::HexDecode(*id); raw.ok()) {
        r.set_exe_build_id(std::move(*raw));
      }
    }
  }
  r.set_observed_unix_ns(UnixNowNs());
  return r;
}

Publisher::Publisher(PublisherOptions options, const bpf::ClockOffset* clock,
                     const proc::KernelSymbols* kernel, obs::Registry* metrics)
    : options_(std::move(options)),
      key_(common::NodeKey::Of(options_.cluster, options_.node).str()),
      clock_(clock) {
  (void)kernel;
  obs::Registry& r = *metrics;
  const std::string batches = "fs_agent_batches_total";
  const std::string batches_help = "raw sample batches by outcome";
  m_.published = &r.Counter(batches, batches_help, {{"result", "published"}});
  m_.spooled = &r.Counter(batches, batches_help, {{"result", "spooled"}});
  m_.dropped = &r.Counter(batches, batches_help, {{"result", "dropped"}});
  m_.dropped_samples =
      &r.Counter("fs_agent_dropped_samples_total", "samples dropped", {{"where", "publisher"}});
  m_.process_published = &r.Counter("fs_agent_process_records_total", "process records by outcome",
                                    {{"result", "published"}});
  m_.process_failed = &r.Counter("fs_agent_process_records_total", "process records by outcome",
                                 {{"result", "failed"}});
  m_.process_tombstones = &r.Counter("fs_agent_process_records_total", "process records by outcome",
                                     {{"result", "tombstone"}});
  m_.bytes_per_sample = &r.Gauge("fs_agent_bytes_per_sample",
                                 "serialized raw batch bytes per sample (before compression)");
  m_.spool_bytes = &r.Gauge("fs_agent_spool_bytes", "bytes of batches in the spool");
  m_.spool_batches = &r.Gauge("fs_agent_spool_batches", "batches in the spool");
}

Result<std::unique_ptr<Publisher>> Publisher::Create(PublisherOptions options,
                                                     const bpf::ClockOffset* clock,
                                                     const proc::KernelSymbols* kernel,
                                                     obs::Registry* metrics) {
  if (options.batch_max_samples == 0) return InvalidArgument("agent.batch.max_samples is 0");
  if (options.batch_interval <= std::chrono::nanoseconds::zero()) {
    return InvalidArgument("agent.batch.interval must be positive");
  }
  std::unique_ptr<Publisher> p(new Publisher(std::move(options), clock, kernel, metrics));
  FS_ASSIGN_OR_RETURN(p->spool_, Spool::Open(p->options_.spool));

  // Sequences continue after the previous run: past what it left in the spool and what it
  // recorded as next when it stopped.
  uint64_t first = 0;
  if (std::optional<uint64_t> max = p->spool_->max_sequence()) first = *max + 1;
  if (std::ifstream in(p->spool_->dir() + "/" + std::string(kNextSequenceFile)); in) {
    std::string text;
    std::getline(in, text);
    if (Result<uint64_t> saved = common::ParseInt<uint64_t>(common::Trim(text)); saved.ok()) {
      first = std::max(first, *saved);
    }
  }
  p->reserved_sequence_ = first + kSequenceLease;
  p->SaveSequence(p->reserved_sequence_);
  p->stats_.first_sequence = first;
  p->stats_.next_sequence = first;
  p->encoder_ = std::make_unique<RawBatchEncoder>(
      RawBatchOptions{.agent_id = p->options_.agent_id,
                      .cluster = common::ToLower(p->options_.cluster),
                      .node = common::ToLower(p->options_.node),
                      .frequency_hz = p->options_.frequency_hz,
                      .first_sequence = first,
                      .encoding = p->options_.encoding},
      clock, kernel);

  kafka::ProducerConfig pc;
  pc.properties = p->options_.kafka;
  // Bound how long one batch can hold the in-flight slot; after that it returns to the spool.
  pc.properties.try_emplace("message.timeout.ms", "30000");
  pc.queue_full_timeout = std::chrono::milliseconds(100);
  std::weak_ptr<Mailbox> weak = p->mail_;
  pc.on_fatal = [weak](const Status& s) {
    log::Error("kafka producer failed fatally; batches go to the spool", {{"error", s}});
    if (auto mail = weak.lock()) mail->cv.notify_all();
  };
  FS_ASSIGN_OR_RETURN(p->producer_, kafka::Producer::Create(std::move(pc)));
  p->UpdateSpoolMetrics();
  if (!p->spool_->empty()) {
    log::Info("spool holds batches from a previous run",
              {{"batches", p->spool_->count()}, {"bytes", p->spool_->bytes()}});
  }
  p->thread_ = std::thread([raw = p.get()] { raw->Run(); });
  return p;
}

Publisher::~Publisher() { Stop(std::chrono::nanoseconds::zero()); }

void Publisher::OnProcess(const proc::ProcessInfo& process) {
  auto info = std::make_shared<const proc::ProcessInfo>(process);
  if (infos_.size() > 65536) infos_.clear();  // exited processes; live ones are re-made below
  infos_[process.pid] = info;
  std::lock_guard lock(mail_->mu);
  if (mail_->stop) return;
  mail_->events.push_back({std::move(info), std::nullopt});
  mail_->cv.notify_one();
}

void Publisher::OnSample(const ResolvedSample& sample, const proc::ProcessInfo& process) {
  std::shared_ptr<const proc::ProcessInfo>& info = infos_[sample.pid];
  if (!info || info->start_ticks != process.start_ticks || info->exe != process.exe) {
    info = std::make_shared<const proc::ProcessInfo>(process);
  }
  std::unique_lock lock(mail_->mu);
  if (mail_->stop || mail_->queued_samples >= options_.queue_capacity) {
    lock.unlock();
    stats_.dropped_samples.fetch_add(1, std::memory_order_relaxed);
    m_.dropped_samples->Inc();
    return;
  }
  mail_->events.push_back({info, sample});
  ++mail_->queued_samples;
  // Wake the publisher only when a batch is full; the interval timer covers the rest.
  if (mail_->queued_samples >= options_.batch_max_samples) mail_->cv.notify_one();
}

void Publisher::OnExit(const proc::ProcessInfo& process) {
  auto info = std::make_shared<const proc::ProcessInfo>(process);
  infos_.erase(process.pid);
  std::lock_guard lock(mail_->mu);
  if (mail_->stop) return;
  mail_->events.push_back({std::move(info), std::nullopt, /*exit=*/true});
}

void Publisher::Stop(std::chrono::nanoseconds timeout) {
  std::call_once(stop_once_, [&] {
    {
      std::lock_guard lock(mail_->mu);
      mail_->stop = true;
      mail_->drain_deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
      mail_->cv.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    log::Info("publisher stopped", {{"published", stats_.published.load()},
                                    {"spooled", stats_.spooled.load()},
                                    {"dropped", stats_.dropped.load()},
                                    {"dropped_samples", stats_.dropped_samples.load()},
                                    {"process_records", stats_.process_records.load()},
                                    {"process_tombstones", stats_.process_tombstones.load()},
                                    {"first_sequence", stats_.first_sequence.load()},
                                    {"next_sequence", stats_.next_sequence.load()},
                                    {"spool_batches", spool_ ? spool_->count() : 0},
                                    {"spool_bytes", spool_ ? spool_->bytes() : 0}});
  });
}

bool Publisher::CanProduce() const {
  return !in_flight_ && Clock::now() >= retry_at_ && producer_->FatalError().ok() &&
         producer_->OutstandingCount() <= options_.max_outstanding;
}

void Publisher::UpdateSpoolMetrics() {
  const uint64_t dropped = spool_->stats().dropped;
  if (dropped > spool_dropped_seen_) {
    stats_.dropped.fetch_add(dropped - spool_dropped_seen_);
  }
  obs::AddGrowth(*m_.dropped, dropped, spool_dropped_seen_);
  m_.spool_bytes->Set(static_cast<double>(spool_->bytes()));
  m_.spool_batches->Set(static_cast<double>(spool_->count()));
}

void Publisher::ToSpool(uint64_t sequence, const std::string& bytes) {
  if (Status s = spool_->Append(sequence, bytes); s.ok()) {
    stats_.spooled.fetch_add(1);
    m_.spooled->Inc();
  } else {
    log::Error("batch lost: cannot spool it", {{"sequence", sequence}, {"error", s}});
    if (s.code() != StatusCode::kResourceExhausted) {  // spool counted the too-big case
      stats_.dropped.fetch_add(1);
      m_.dropped->Inc();
    }
  }
  UpdateSpoolMetrics();
}

void Publisher::SendInPieces(uint64_t sequence, const std::string& bytes, size_t max_bytes) {
  Result<std::vector<v1::SampleBatch>> pieces = [&]() -> Result<std::vector<v1::SampleBatch>> {
    v1::SampleBatch b;
    if (!b.ParseFromString(bytes)) return DataLoss("not a SampleBatch");
    return batch::SplitBatch(b, max_bytes);
  }();
  if (!pieces.ok() || pieces->size() < 2) {
    const Status why = pieces.ok() ? OutOfRange("cannot be split further") : pieces.error();
    stats_.dropped.fetch_add(1);
    m_.dropped->Inc();
    log::Error("batch lost: too large for Kafka and cannot be split", {{"sequence", sequence},
                                                                       {"bytes", bytes.size()},
                                                                       {"max_bytes", max_bytes},
                                                                       {"error", why}});
    return;
  }
  // The agent numbers batches, so each piece is a batch of its own (no part path).
  const uint64_t first = encoder_->ReserveSequences(pieces->size() - 1);
  std::deque<InFlight> front;
  for (size_t i = 0; i < pieces->size(); ++i) {
    v1::SampleBatch& piece = (*pieces)[i];
    const uint64_t seq = i == 0 ? sequence : first + i - 1;
    piece.mutable_id()->clear_part();
    piece.mutable_id()->set_sequence(seq);
    front.push_back({seq, false, piece.SerializeAsString(), batch::SampleCount(piece)});
  }
  log::Warn("batch too large for Kafka; sending it in pieces", {{"sequence", sequence},
                                                                {"bytes", bytes.size()},
                                                                {"pieces", pieces->size()},
                                                                {"max_bytes", max_bytes}});
  stats_.next_sequence = std::max<uint64_t>(stats_.next_sequence, first + pieces->size() - 1);
  if (first + pieces->size() >= reserved_sequence_) {  // a crash must not reuse them
    reserved_sequence_ = first + pieces->size() + kSequenceLease;
    SaveSequence(reserved_sequence_);
  }
  for (auto it = front.rbegin(); it != front.rend(); ++it) backlog_.push_front(std::move(*it));
}

void Publisher::ProduceBatch(uint64_t sequence, std::string bytes, int samples, bool from_spool) {
  if (bytes.size() + kRecordOverhead > producer_->max_message_bytes()) {
    if (from_spool) (void)spool_->Remove(sequence);
    SendInPieces(sequence, bytes, producer_->max_message_bytes() - kRecordOverhead);
    UpdateSpoolMetrics();
    return;
  }
  std::weak_ptr<Mailbox> weak = mail_;
  Status s =
      producer_->Produce(kafka::topics::kSamplesRaw, key_, bytes, {},
                         [weak, sequence](const kafka::DeliveryReport& r) {
                           if (auto mail = weak.lock()) {
                             std::lock_guard lock(mail->mu);
                             mail->acks.push_back({AckKind::kBatch, sequence, r.status, {}, {}});
                             mail->cv.notify_one();
                           }
                         });
  if (!s.ok()) {
    if (!outage_logged_) {
      log::Warn("kafka unavailable; spooling batches", {{"error", s}});
      outage_logged_ = true;
    }
    if (!from_spool) ToSpool(sequence, bytes);
    SpillBacklog();
    retry_at_ = Clock::now() + options_.retry_backoff;
    return;
  }
  in_flight_ =
      InFlight{sequence, from_spool, from_spool ? std::string() : std::move(bytes), samples};
}

void Publisher::SpillBacklog() {
  for (const InFlight& b : backlog_) ToSpool(b.sequence, b.bytes);
  backlog_.clear();
}

void Publisher::Submit(uint64_t sequence, std::string bytes, int samples) {
  if (!spool_->empty()) {
    ToSpool(sequence, bytes);  // behind what is spooled: keeps the order
    return;
  }
  if (backlog_.empty() && CanProduce()) {
    ProduceBatch(sequence, std::move(bytes), samples, /*from_spool=*/false);
    return;
  }
  backlog_.push_back({sequence, false, std::move(bytes), samples});
  if (backlog_.size() > options_.max_backlog) SpillBacklog();
}

void Publisher::FlushBatch() {
  std::optional<v1::SampleBatch> b = encoder_->Flush();
  if (!b) return;
  const uint64_t sequence = b->id().sequence();
  stats_.next_sequence = sequence + 1;
  if (sequence + 1 >= reserved_sequence_) {
    reserved_sequence_ = sequence + 1 + kSequenceLease;
    SaveSequence(reserved_sequence_);
  }
  const int samples = batch::SampleCount(*b);
  Submit(sequence, b->SerializeAsString(), samples);
}

void Publisher::Pump() {
  if (!CanProduce()) return;
  if (!spool_->empty()) {
    if (std::optional<Spool::Entry> head = spool_->Front()) {
      ProduceBatch(head->sequence, std::move(head->bytes), 0, /*from_spool=*/true);
    }
    UpdateSpoolMetrics();
  } else if (!backlog_.empty()) {
    InFlight b = std::move(backlog_.front());
    backlog_.pop_front();
    ProduceBatch(b.sequence, std::move(b.bytes), b.samples, /*from_spool=*/false);
  }
}

void Publisher::RetryProcess(std::string key, std::optional<std::string> value) {
  if (value && retired_keys_.contains(key)) return;  // exited meanwhile: stay retired
  if (process_retry_.size() < kMaxProcessRetries) {
    process_retry_.emplace_back(std::move(key), std::move(value));
  }
}

void Publisher::ProduceProcess(std::string key, std::optional<std::string> value) {
  std::weak_ptr<Mailbox> weak = mail_;
  // A default string_view (null data) is a null Kafka value: the compaction tombstone.
  const std::string_view payload = value ? std::string_view(*value) : std::string_view();
  Status s =
      producer_->Produce(kafka::topics::kProcesses, key, payload, {},
                         [weak, key, value](const kafka::DeliveryReport& r) {
                           if (auto mail = weak.lock()) {
                             std::lock_guard lock(mail->mu);
                             mail->acks.push_back({AckKind::kProcess, 0, r.status, key, value});
                             mail->cv.notify_one();
                           }
                         });
  if (!s.ok()) {
    stats_.process_failures.fetch_add(1);
    m_.process_failed->Inc();
    RetryProcess(std::move(key), std::move(value));
  }
}

void Publisher::HandleAck(Ack& ack) {
  if (ack.kind == AckKind::kProcess) {
    if (ack.status.ok()) {
      if (ack.value) {
        stats_.process_records.fetch_add(1);
        m_.process_published->Inc();
      } else {
        stats_.process_tombstones.fetch_add(1);
        m_.process_tombstones->Inc();
      }
    } else {
      stats_.process_failures.fetch_add(1);
      m_.process_failed->Inc();
      RetryProcess(std::move(ack.key), std::move(ack.value));
    }
    return;
  }
  if (!in_flight_ || in_flight_->sequence != ack.sequence) {
    log::Warn("delivery report for a batch not in flight", {{"sequence", ack.sequence}});
    return;
  }
  InFlight done = std::move(*in_flight_);
  in_flight_.reset();
  if (ack.status.ok()) {
    stats_.published.fetch_add(1);
    m_.published->Inc();
    if (done.from_spool) {
      if (Status s = spool_->Remove(done.sequence); !s.ok()) {
        log::Warn("spool file not removed", {{"error", s}});
      }
      UpdateSpoolMetrics();
    } else if (done.samples > 0) {
      m_.bytes_per_sample->Set(static_cast<double>(done.bytes.size()) / done.samples);
    }
    if (outage_logged_) {
      log::Info("kafka reachable again", {{"spool_batches", spool_->count()}});
      outage_logged_ = false;
    }
    // Kafka is back: re-send process records that failed meanwhile.
    std::deque<std::pair<std::string, std::optional<std::string>>> retry;
    retry.swap(process_retry_);
    for (auto& [k, v] : retry) ProduceProcess(std::move(k), std::move(v));
    return;
  }
  if (ack.status.code() == StatusCode::kOutOfRange) {
    // The broker refuses it as too large (its limit is below ours): it would fail the same
    // way from the spool forever. Send it in halves instead.
    std::string bytes = std::move(done.bytes);
    if (done.from_spool) {
      if (std::optional<Spool::Entry> head = spool_->Front();
          head && head->sequence == done.sequence) {
        bytes = std::move(head->bytes);
      }
      (void)spool_->Remove(done.sequence);
      UpdateSpoolMetrics();
    }
    SendInPieces(done.sequence, bytes, bytes.size() / 2);
    return;
  }
  if (!outage_logged_) {
    log::Warn("batch delivery failed; spooling",
              {{"sequence", done.sequence}, {"error", ack.status}});
    outage_logged_ = true;
  }
  // Its sequence is below everything spooled meanwhile, so it becomes the head again.
  if (!done.from_spool) ToSpool(done.sequence, done.bytes);
  SpillBacklog();
  retry_at_ = Clock::now() + options_.retry_backoff;
}

void Publisher::ApplyEvent(const Event& e) {
  if (e.exit) {
    std::string key = ProcessKey(options_.cluster, options_.node, *e.process);
    // Announcements still waiting for a retry would revive the process after its tombstone.
    std::erase_if(process_retry_, [&](const auto& r) { return r.first == key && r.second; });
    if (retired_keys_.size() > 65536) retired_keys_.clear();
    retired_keys_.insert(key);
    ProduceProcess(std::move(key), std::nullopt);
    return;
  }
  if (!e.sample) {
    std::string key = ProcessKey(options_.cluster, options_.node, *e.process);
    retired_keys_.erase(key);  // exec of a process we thought gone: announce it again
    v1::ProcessRecord r = ToProcessRecord(options_.cluster, options_.node, *e.process);
    ProduceProcess(std::move(key), r.SerializeAsString());
    return;
  }
  encoder_->OnSample(*e.sample, *e.process);
  if (encoder_->pending_samples() >= options_.batch_max_samples) FlushBatch();
}

void Publisher::SaveSequence(uint64_t next) {
  const std::string path = spool_->dir() + "/" + std::string(kNextSequenceFile);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << next << "\n";
    if (!out) {
      log::Warn("cannot record the next batch sequence", {{"path", tmp}});
      return;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
}

void Publisher::Run() {
  const auto interval = std::chrono::duration_cast<Clock::duration>(options_.batch_interval);
  Clock::time_point next_flush = Clock::now() + interval;
  Clock::time_point deadline{};
  bool stopping = false;
  std::deque<Event> events;
  std::deque<Ack> acks;
  for (;;) {
    {
      std::unique_lock lock(mail_->mu);
      Clock::time_point wake =
          stopping ? std::min(deadline, Clock::now() + std::chrono::milliseconds(50)) : next_flush;
      if (!stopping && (!spool_->empty() || !backlog_.empty()) && !in_flight_) {
        wake = std::min(wake, retry_at_);
      }
      mail_->cv.wait_until(lock, wake, [&] {
        return !mail_->acks.empty() || (mail_->stop && !stopping) ||
               mail_->queued_samples >= options_.batch_max_samples;
      });
      events.swap(mail_->events);
      mail_->queued_samples = 0;
      acks.swap(mail_->acks);
      if (mail_->stop && !stopping) {
        stopping = true;
        deadline = mail_->drain_deadline;
      }
    }
    for (Ack& a : acks) HandleAck(a);
    acks.clear();
    for (const Event& e : events) ApplyEvent(e);
    events.clear();
    const Clock::time_point now = Clock::now();
    if (stopping || now >= next_flush) {
      FlushBatch();
      next_flush = now + interval;
    }
    if (stopping) {
      retry_at_ = std::min(retry_at_, now);  // no backoff while draining: time is bounded
      if ((!in_flight_ && spool_->empty() && backlog_.empty()) || now >= deadline) break;
    }
    Pump();
  }
  // Deadline: an unacknowledged new batch goes to the spool (it may still arrive: at least
  // once); nothing more is sent.
  if (in_flight_ && !in_flight_->from_spool) ToSpool(in_flight_->sequence, in_flight_->bytes);
  in_flight_.reset();
  SpillBacklog();
  // Process records may still be on their way: give them what is left of the drain time.
  if (const Clock::time_point now = Clock::now(); now < deadline) {
    (void)producer_->Flush(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
  }
  producer_->PurgeQueued();
  (void)producer_->Flush(std::chrono::milliseconds(100));
  SaveSequence(stats_.next_sequence.load());  // clean stop: the next run continues exactly
  UpdateSpoolMetrics();
}

}  // namespace flamestream::agent
