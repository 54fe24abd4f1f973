// SpanRouter: turns decoded OTLP trace exports into KeyedSpan batches keyed "<cluster>/<node>"
// (the samples' key) and hands them to a SpanWriter (Kafka in production).
//
//   obs::Registry metrics;
//   KafkaSpanWriter writer(*producer);                    // -> flamestream.spans.keyed.v1
//   SpanRouter router({.default_cluster = "prod", .keep_attributes = {"http.route"}}, writer,
//                     metrics);
//   (void)router.ApplyProcessRecord(msg.key(), msg.value());   // flamestream.processes.v1
//   RouteResult r = router.Route(request, v1::SPAN_SOURCE_OTLP_HTTP, std::chrono::seconds(10));
//   if (!r.status.ok()) return Http503();   // Kafka did not acknowledge in time: retry later
//   // r.accepted spans are durable; r.rejected (invalid or unplaceable) with r.rejection
//
// Placement is libs/correlate's SpanPlacer (ARCHITECTURE.md, "Identity"): node from
// k8s.node.name, else the container/pod's node from the process table, else host.name. Spans
// that cannot be placed, or whose ids are malformed, are rejected (OTLP partial success) and
// counted by reason in fs_spans_rejected_total{reason}; they are never guessed.
//
// Thread-safe: receivers call Route() from many threads; the placement table is guarded by a
// mutex (placement is a few hash lookups, far cheaper than the Kafka round trip).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/correlate/placement.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/spans/decode.h"
#include "flamestream/v1/spans.pb.h"

namespace flamestream::config {
class Schema;
}

namespace flamestream::spans {

// Where keyed span batches go. Production: KafkaSpanWriter; tests: a capturing fake.
class SpanWriter {
 public:
  using Done = std::function<void(const Status&)>;
  virtual ~SpanWriter() = default;
  // Writes one batch, all placed on `key` ("<cluster>/<node>"). `done` runs exactly once, on
  // any thread (possibly inside Write), with OK once the batch is durable (Kafka acks=all),
  // or the error (Unavailable / ResourceExhausted when Kafka is slow or down; OutOfRange when
  // the batch is larger than one Kafka message may be: the router then splits it).
  virtual void Write(const std::string& key, v1::SpanBatch batch, Done done) = 0;
};

struct SpanRouterConfig {
  // Cluster for spans without the k8s.cluster.name resource attribute.
  std::string default_cluster = "default";
  // Span or resource attributes copied (as text) into KeyedSpan.attributes; a span attribute
  // wins over a resource attribute of the same key.
  std::vector<std::string> keep_attributes;
  // BatchId.agent_id of the batches this router writes; empty -> "span-router/<host>/<pid>".
  std::string instance_id;
  // Tolerated difference between a process's recorded start and a span's start (pid reuse).
  std::chrono::nanoseconds start_time_tolerance = std::chrono::seconds(1);
  // Largest keyed span batch written as one record (serialized bytes): bigger ones are split
  // before they are written. Keep it under the keyed topic's max.message.bytes and the
  // producer's message.max.bytes (both ~1 MB by default). A batch Kafka still refuses as too
  // large (MSG_SIZE_TOO_LARGE) is split in halves and written again; a single span too large
  // for any message is rejected (reason too_large_for_kafka).
  uint64_t max_batch_bytes = 900ull << 10;
  // Bound on the router's state: bytes of keyed spans written and not yet acknowledged. A
  // request that would go over it is refused with Unavailable (HTTP 503 / gRPC UNAVAILABLE,
  // the intake retries it), counted in fs_spans_refused_total{reason="router_full"}. 0: off.
  uint64_t max_inflight_bytes = 256ull << 20;

  // Declares spans.default_cluster, spans.keep_attributes, spans.max_batch_bytes,
  // spans.max_inflight_bytes under `prefix`.
  void Declare(config::Schema& schema, const std::string& prefix = "spans");
};

struct RouteResult {
  // OK when every accepted span is durable. Otherwise Unavailable (Kafka slow, down, or
  // did not acknowledge within the deadline): the caller should have the client retry.
  Status status;
  uint64_t accepted = 0;  // spans written to the writer (when status is OK)
  uint64_t rejected = 0;  // spans dropped: malformed ids, or not placeable on a node
  std::string rejection;  // why (the first reason, with the count of each kind)
  std::map<std::string, uint64_t> rejected_by;  // reason label -> spans
};

class SpanRouter {
 public:
  // `writer` and `metrics` must outlive the router.
  SpanRouter(SpanRouterConfig config, SpanWriter& writer, obs::Registry& metrics);
  ~SpanRouter();
  SpanRouter(const SpanRouter&) = delete;
  SpanRouter& operator=(const SpanRouter&) = delete;

  using RouteCallback = std::function<void(RouteResult)>;

  // Places and writes every span of `request`. `done` runs exactly once: when the writer has
  // acknowledged (or failed) every batch, or with Unavailable when `timeout` passes first.
  void RouteAsync(const otlp::ExportTraceServiceRequest& request, v1::SpanSource source,
                  std::chrono::milliseconds timeout, RouteCallback done);
  // RouteAsync and wait.
  RouteResult Route(const otlp::ExportTraceServiceRequest& request, v1::SpanSource source,
                    std::chrono::milliseconds timeout);

  // One record of flamestream.processes.v1 (key "<cluster>/<node>/<host_pid>/<start_ticks>",
  // value a ProcessRecord; nullopt value = tombstone). InvalidArgument on an undecodable one.
  Status ApplyProcessRecord(std::string_view key, std::optional<std::string_view> value);
  [[nodiscard]] size_t process_count() const;
  // Bytes of keyed spans written to the writer and not yet acknowledged.
  [[nodiscard]] uint64_t inflight_bytes() const;

 private:
  struct Pending;
  struct Extracted;
  struct Writer;
  void Extract(const otlp::ExportTraceServiceRequest& request, v1::SpanSource source,
               Extracted* out);
  void Reject(Extracted* out, const std::string& reason_label, const std::string& detail);
  void ArmTimeout(const std::shared_ptr<Pending>& pending, std::chrono::milliseconds timeout);
  static void WriteBatch(const std::shared_ptr<Writer>& w, const std::shared_ptr<Pending>& p,
                         const std::string& key, v1::SpanBatch batch);
  void RunTimers();

  SpanRouterConfig config_;
  SpanWriter& output_;
  obs::Registry& metrics_;
  std::unordered_set<std::string> keep_;

  mutable std::mutex table_mu_;
  correlate::ProcessTable table_;
  correlate::SpanPlacer placer_;
  // processes.v1 key -> (cluster, node, host pid) it wrote, so a tombstone for an older
  // incarnation of a reused pid does not remove the newer process.
  std::unordered_map<std::string, std::string> live_keys_;  // host key -> record key

  // What batch callbacks use (out, sequence, in-flight bytes): shared, so a callback running
  // after the router is gone touches nothing freed.
  std::shared_ptr<Writer> writer_;

  // Deadline timer for RouteAsync (one thread for all pending requests).
  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  std::multimap<std::chrono::steady_clock::time_point, std::weak_ptr<Pending>> timers_;
  bool stop_timers_ = false;
  std::thread timer_thread_;
};

// The key of a keyed span record: "<cluster>/<node>".
std::string SpanKey(const v1::KeyedSpan& span);

}  // namespace flamestream::spans
