// The one consume -> handle -> produce loop every Kafka stage runs on. The loop owns the
// consumer, the producer, ack tracking (an input is committed only once everything it led to
// is acknowledged), the failure latch, the DLQ, lag metrics, pause/resume, caught-up detection
// (replay), commit-on-revoke and the drain on stop. A stage supplies a Handler: what to do with
// a record, and optionally on assignment, on every tick, on revocation and when draining.
//
//   class Upper : public stage::Handler {
//     Status Record(stage::Loop& loop, const kafka::Message& in) override {
//       if (in.value().empty()) return InvalidArgument("empty record");   // -> DLQ, goes on
//       return loop.Emit(in, {{.topic = "out", .key = std::string(in.key()),
//                              .value = ToUpper(in.value())}});
//     }
//   };
//   stage::LoopConfig cfg{.stage = "upper", .group_id = "upper", .input_topics = {"in"},
//                         .kafka = props};
//   Upper handler;
//   return stage::RunLoop(cfg, ctx, handler);   // until ctx.stop, then drains
//
// Inputs finished later (a window that is delivered minutes after its records were read):
// `InputToken t = loop.Hold(in)` in Record, then `loop.EmitHeld(t, outputs)` or
// `loop.Release(t)` when done. Until then the input's offset (and every later one of its
// partition) stays uncommitted, so a restart reads it again: at-least-once, with batch ids to
// drop repeats downstream.
//
// Stages with their own restart protocol (the correlator) shape every commit in
// Handler::PrepareCommit (drop partitions, add metadata), pause single partitions through
// consumer().Pause/Resume (the loop's own pause composes with them), and move a partition's
// position with Loop::Seek, which lets the re-read records through again.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/types.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/service/service.h"
#include "flamestream/stage/output.h"
#include "flamestream/stage/oversize.h"

namespace flamestream::stage {

// Unacknowledged outputs above which a stage pauses its input; every stage's default.
inline constexpr int kDefaultMaxInFlight = 2000;

struct LoopConfig {
  std::string stage;  // metrics label (fs_*{stage=...}) and the DLQ's `stage` header
  std::string group_id;
  std::vector<std::string> input_topics;
  kafka::Properties kafka;  // librdkafka properties for both clients (config `kafka.*`)
  kafka::Assignor assignor = kafka::Assignor::kRange;
  std::string auto_offset_reset = "earliest";
  std::chrono::milliseconds poll_timeout{100};
  std::chrono::milliseconds commit_interval{1000};
  // Outputs queued or in flight above which input is paused (bounded memory); resumed at half.
  int max_in_flight = kDefaultMaxInFlight;
  // How long draining may wait for outstanding outputs.
  std::chrono::milliseconds drain_timeout{20000};
  // Replay: once partitions are assigned, seek them to the first record at or after this
  // time (Unix ms; 0 = no seek). Where the broker cannot say, they start at the earliest
  // retained record, so handlers must filter by event time anyway.
  int64_t seek_to_timestamp_ms = 0;
  // Replay: return (after draining) once every assigned partition has been read to the end,
  // nothing arrived for `caught_up_idle` and the handler has nothing pending (Handler::Idle).
  bool stop_when_caught_up = false;
  std::chrono::milliseconds caught_up_idle{3000};
  // Splits an output larger than Kafka takes (see oversize.h); without one such an output
  // sends its input to the DLQ.
  Splitter split;
  // The producer's settings beyond `kafka` (queue_full_timeout, ...); properties are `kafka`.
  kafka::ProducerConfig producer;
};

// An input whose completion the handler reports later (Loop::Hold / Loop::Release).
struct InputToken {
  InputPosition position;
};

class Loop;

// What a stage does. Every method runs on the loop's thread (Release may be called from any).
class Handler {
 public:
  virtual ~Handler() = default;
  // One input record. An error sends the record to `<topic>.dlq` with the error's text (the
  // stage goes on); OK means the handler emitted, held, or finished the record.
  virtual Status Record(Loop& loop, const kafka::Message& in) = 0;
  // After every poll, record or not (windows closing, periodic flushes).
  virtual void Tick(Loop& /*loop*/) {}
  virtual void Assigned(Loop& /*loop*/, const kafka::TopicPartitions& /*parts*/) {}
  // After the loop flushed and committed what is acknowledged (unless `lost`).
  virtual void Revoked(Loop& /*loop*/, const kafka::TopicPartitions& /*parts*/, bool /*lost*/) {}
  // Stopping: finish what can be finished (deliver open windows, ...) before the final flush
  // and commit. Whatever stays held is read again by the next owner.
  virtual void Drain(Loop& /*loop*/) {}
  // Once the clients exist, before the first poll: an error stops the stage before it reads
  // anything (a precondition on the topics).
  virtual Status Started(Loop& /*loop*/) { return OkStatus(); }
  // Before every commit (periodic, before a revocation, on drain) with the offsets the acks
  // allow: the handler may drop entries, add some and set their metadata. Committed() gets
  // the outcome (periodic commits: inside a later poll, on the loop's thread).
  virtual void PrepareCommit(Loop& /*loop*/, kafka::TopicPartitions& /*offsets*/) {}
  virtual void Committed(Loop& /*loop*/, const kafka::TopicPartitions& /*offsets*/,
                         const Status& /*result*/) {}
  // Replay's stop condition also waits for this (nothing buffered, nothing in delivery).
  [[nodiscard]] virtual bool Idle() const { return true; }
  // Pause input while true (a sink that is behind), besides the loop's own in-flight limit.
  [[nodiscard]] virtual bool WantsPause() const { return false; }
};

class Loop {
 public:
  virtual ~Loop() = default;

  // Produces `outputs` for `in` (fitted to the producer's message limit, split by
  // LoopConfig::split); `in` is committable once every one is acknowledged. No outputs: `in`
  // is done now. An error here is the producer refusing to queue: the stage stops.
  virtual Status Emit(const kafka::Message& in, std::vector<Output> outputs) = 0;
  // Sends `in` to `<topic>.dlq` with `reason`; committable once the DLQ has it. The DLQ
  // delivery failing stops the stage (never a silent hole in the commits).
  virtual Status DeadLetter(const kafka::Message& in, const Status& reason) = 0;
  // The same for a record no longer at hand (one the handler kept, see kafka::FailedRecord).
  virtual Status DeadLetter(const kafka::FailedRecord& in, const Status& reason) = 0;
  // `in` stays uncommitted until Release(token) (thread-safe).
  virtual InputToken Hold(const kafka::Message& in) = 0;
  virtual void Release(const InputToken& token) = 0;
  // Emit() for a held input, then Release(token) (loop thread). An output too large to fit
  // or split becomes a DLQ reference record (the output's key and headers, no value) to the
  // input, which stays in its topic.
  virtual Status EmitHeld(const InputToken& token, std::vector<Output> outputs) = 0;
  // Moves an assigned partition's read position (timeout 0: asynchronous). The records from
  // there on are handled even when this assignment handled them already; commits never move
  // back past what was committed.
  virtual Status Seek(const kafka::TopicPartition& to, std::chrono::milliseconds timeout) = 0;
  // Stops the stage with `error` (the first one wins); the loop drains and returns it.
  virtual void Fail(Status error) = 0;

  // True once the loop was asked to stop (a handler waiting on something gives up then).
  [[nodiscard]] virtual bool stopping() const = 0;
  // True while input is paused (the in-flight limit, or Handler::WantsPause).
  [[nodiscard]] virtual bool paused() const = 0;
  virtual kafka::Producer& producer() = 0;
  virtual kafka::Consumer& consumer() = 0;
  virtual obs::StageMetrics& metrics() = 0;
  [[nodiscard]] virtual const LoopConfig& config() const = 0;
};

// What a loop needs from the process: where its metrics go, when to stop, and /readyz.
struct LoopEnv {
  obs::Registry& metrics;
  std::stop_token stop;
  std::function<void(bool)> set_ready;  // may be empty
  // Tests: once set, stopping behaves like a crash (no drain, no commit, the group is not
  // left). May be null.
  const std::atomic<bool>* crash = nullptr;
};

// Runs until `stop` (or caught up with stop_when_caught_up, or a failure), then drains:
// Handler::Drain, flush, split what the broker refused, final commit, close. Returns the first
// failure, else OK.
Status RunLoop(const LoopConfig& config, const LoopEnv& env, Handler& handler);
inline Status RunLoop(const LoopConfig& config, service::Context& ctx, Handler& handler) {
  return RunLoop(config, LoopEnv{ctx.metrics, ctx.stop, ctx.set_ready}, handler);
}

}  // namespace flamestream::stage
