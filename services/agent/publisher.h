// Kafka mode's sink: batches processed samples into STAGE_RAW SampleBatches on
// flamestream.samples.raw.v1 (key "<cluster>/<node>") and announces each process once on the
// compacted flamestream.processes.v1, where a tombstone (null value) retires it when it exits.
// While Kafka is unreachable batches go to an on-disk spool and drain from it, oldest first,
// when it comes back.
//
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<Publisher> pub,
//                       Publisher::Create({.cluster = "prod", .node = "node-1", ...,
//                                          .kafka = {{"bootstrap.servers", "k:9092"}}},
//                                         &clock, &ksyms, &ctx.metrics));
//   SampleProcessor processor(..., pub.get());      // OnProcess/OnSample never block
//   ...
//   sampler->Stop();                                // every sample has reached the publisher
//   pub->Stop(std::chrono::seconds(10));            // last batch, bounded drain, rest spooled
//
// Threads: OnProcess/OnSample (the sampler's dispatch thread) only append to a bounded queue
// (samples beyond it are dropped and counted); encoding, producing and the spool live on the
// publisher's own thread, so the ring-buffer reader never waits for Kafka.
//
// Order: at most one raw batch is in flight. Batches wait behind it in a short in-memory
// backlog; when that overflows or a delivery fails, the backlog moves to the spool and new
// batches follow it there (so one of the two is always empty, and the spool holds the oldest).
// The spool's head is produced only after the batch before it was acknowledged, and a failed
// batch returns to the spool (its sequence is the lowest there), so the topic sees sequence
// numbers strictly increasing per agent. Delivery is at least once: a batch whose ack did
// not arrive before Stop()'s deadline stays spooled and may be sent twice (consumers
// deduplicate by batch id, agent_id/sequence).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "flamestream/bpf/clock_offset.h"
#include "flamestream/common/status.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/types.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/proc/kallsyms.h"
#include "flamestream/v1/processes.pb.h"
#include "processor.h"
#include "raw_batch.h"
#include "spool.h"

namespace flamestream::agent {

struct PublisherOptions {
  std::string cluster = "default";  // lower-cased into keys and batches
  std::string node;
  std::string agent_id;  // "<cluster>/<node>/<boot id prefix>"
  uint32_t frequency_hz = 19;
  std::chrono::nanoseconds batch_interval = std::chrono::seconds(1);
  uint64_t batch_max_samples = 10000;
  batch::SampleEncoding encoding{
      .compact = true, .timestamp_unit_ns = 1000, .sort_locations = true};
  // Samples (and process announcements) queued for the publisher thread before dropping.
  uint64_t queue_capacity = 16384;
  SpoolOptions spool;
  // After a failed delivery, wait this long before producing from the spool again.
  std::chrono::nanoseconds retry_backoff = std::chrono::seconds(1);
  // Records librdkafka may hold (batches + process records) before new batches are spooled.
  int max_outstanding = 1000;
  // Batches waiting in memory behind the one in flight (a slow ack) before they all go to
  // the spool.
  size_t max_backlog = 5;
  kafka::Properties kafka;  // librdkafka properties (config kafka.*)
};

// Running totals, readable from any thread.
struct PublisherStats {
  std::atomic<uint64_t> published{0};        // raw batches acknowledged by Kafka
  std::atomic<uint64_t> spooled{0};          // raw batches written to the spool
  std::atomic<uint64_t> dropped{0};          // raw batches lost (spool full or unwritable)
  std::atomic<uint64_t> dropped_samples{0};  // samples lost because the queue was full
  std::atomic<uint64_t> process_records{0};  // ProcessRecords acknowledged
  std::atomic<uint64_t> process_failures{0};
  std::atomic<uint64_t> process_tombstones{0};  // tombstones (process exits) acknowledged
  std::atomic<uint64_t> first_sequence{0};  // sequence of this run's first batch
  std::atomic<uint64_t> next_sequence{0};   // sequence the next batch will get
};

class Publisher : public SampleWriter {
 public:
  // Opens the spool (batches a previous run left are sent first; sequences continue after
  // them), creates the producer and starts the publisher thread. `clock`, `kernel` (may be
  // null) and `metrics` must outlive the publisher.
  static Result<std::unique_ptr<Publisher>> Create(PublisherOptions options,
                                                   const bpf::ClockOffset* clock,
                                                   const proc::KernelSymbols* kernel,
                                                   obs::Registry* metrics);
  ~Publisher() override;  // Stop(0) if Stop() was not called

  void OnProcess(const proc::ProcessInfo& process) override;
  void OnSample(const ResolvedSample& sample, const proc::ProcessInfo& process) override;
  // Retires the process on flamestream.processes.v1: a tombstone (null value) under its key.
  void OnExit(const proc::ProcessInfo& process) override;

  // Encodes what is queued into a last batch, then keeps delivering (in-flight batch and
  // spool) until everything is acknowledged or `timeout` passes; what is left stays in the
  // spool for the next start. Idempotent.
  void Stop(std::chrono::nanoseconds timeout);

  [[nodiscard]] const PublisherStats& stats() const { return stats_; }
  [[nodiscard]] const std::string& key() const { return key_; }

  // The processes-topic key, "<cluster>/<node>/<host_pid>/<start_time_ticks>".
  static std::string ProcessKey(const std::string& cluster, const std::string& node,
                                const proc::ProcessInfo& p);
  // The record announcing `p` (build id read from /proc/<pid>/exe when readable).
  static v1::ProcessRecord ToProcessRecord(const std::string& cluster, const std::string& node,
                                           const proc::ProcessInfo& p);

 private:
  struct Event {
    std::shared_ptr<const proc::ProcessInfo> process;
    std::optional<ResolvedSample> sample;  // absent: announce `process` (or retire it, `exit`)
    bool exit = false;
  };
  enum class AckKind { kBatch, kProcess };
  struct Ack {
    AckKind kind;
    uint64_t sequence = 0;
    Status status;
    std::string key;  // process records: to retry
    std::optional<std::string> value;  // nullopt: a tombstone
  };
  // Shared with delivery callbacks, which may outlive the publisher inside librdkafka.
  struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Event> events;
    uint64_t queued_samples = 0;
    std::deque<Ack> acks;
    bool stop = false;
    std::chrono::steady_clock::time_point drain_deadline;
  };
  struct InFlight {
    uint64_t sequence = 0;
    bool from_spool = false;
    std::string bytes;
    int samples = 0;
  };
  struct Metrics {
    obs::Counter* published;
    obs::Counter* spooled;
    obs::Counter* dropped;
    obs::Counter* dropped_samples;
    obs::Counter* process_published;
    obs::Counter* process_failed;
    obs::Counter* process_tombstones;
    obs::Gauge* bytes_per_sample;
    obs::Gauge* spool_bytes;
    obs::Gauge* spool_batches;
  };

  Publisher(PublisherOptions options, const bpf::ClockOffset* clock,
            const proc::KernelSymbols* kernel, obs::Registry* metrics);
  void Run();
  void HandleAck(Ack& ack);
  void ApplyEvent(const Event& e);
  void FlushBatch();
  void Submit(uint64_t sequence, std::string bytes, int samples);
  void ToSpool(uint64_t sequence, const std::string& bytes);
  void SpillBacklog();
  void ProduceBatch(uint64_t sequence, std::string bytes, int samples, bool from_spool);
  // A batch Kafka will never take whole (over message.max.bytes, or refused by the broker as
  // too large): sent as pieces of at most `max_bytes`, each with a fresh sequence, ahead of
  // the backlog; dropped (counted) when one sample alone does not fit. Never spooled, so it
  // cannot block the spool's head.
  void SendInPieces(uint64_t sequence, const std::string& bytes, size_t max_bytes);
  // `value` nullopt produces a tombstone (null value).
  void ProduceProcess(std::string key, std::optional<std::string> value);
  void RetryProcess(std::string key, std::optional<std::string> value);
  void Pump();
  bool CanProduce() const;
  void UpdateSpoolMetrics();
  // Records `next` as where the next run starts numbering batches.
  void SaveSequence(uint64_t next);

  PublisherOptions options_;
  std::string key_;
  const bpf::ClockOffset* clock_;
  Metrics m_;
  PublisherStats stats_;
  std::shared_ptr<Mailbox> mail_ = std::make_shared<Mailbox>();

  // Dispatch thread only.
  std::unordered_map<uint32_t, std::shared_ptr<const proc::ProcessInfo>> infos_;

  // Publisher thread only (after Create).
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<RawBatchEncoder> encoder_;
  std::optional<InFlight> in_flight_;
  std::deque<InFlight> backlog_;  // ready batches not yet produced; empty while spooling
  std::chrono::steady_clock::time_point retry_at_{};
  bool outage_logged_ = false;
  // Sequences below this are promised to this run (saved ahead, so a crash never reuses one).
  uint64_t reserved_sequence_ = 0;
  uint64_t spool_dropped_seen_ = 0;
  std::deque<std::pair<std::string, std::optional<std::string>>> process_retry_;
  // Keys retired with a tombstone: a late retry of their announcement must not revive them.
  std::unordered_set<std::string> retired_keys_;
  std::unique_ptr<kafka::Producer> producer_;  // destroyed (flushed) before the spool

  std::once_flag stop_once_;
  std::thread thread_;
};

}  // namespace flamestream::agent
