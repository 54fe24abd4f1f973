// Encodes processed samples into flamestream.v1.SampleBatch (STAGE_RAW) — the value of a
// flamestream.samples.raw.v1 record. The Kafka Publisher will own one of these, call Flush()
// every batch interval (or when pending_samples() reaches its limit) and produce the result.
//
//   RawBatchEncoder enc({.agent_id = "prod/node-1/4f2a", .cluster = "prod", .node = "node-1",
//                        .frequency_hz = 99}, &clock, &kernel_symbols);
//   processor feeds enc (it is a SampleWriter) ...
//   if (std::optional<v1::SampleBatch> b = enc.Flush()) Produce(key, b->SerializeAsString());
//
// User frames become (mapping with path + build id, file offset, is_return_address); kernel
// frames keep their address plus the kallsyms function name and offset, under a "[kernel]"
// mapping (or the module's). Every process with samples in the batch is listed in it.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "flamestream/batch/builder.h"
#include "flamestream/bpf/clock_offset.h"
#include "flamestream/proc/kallsyms.h"
#include "processor.h"

namespace flamestream::agent {

struct RawBatchOptions {
  std::string agent_id;  // "<cluster>/<node>/<boot id prefix>", stable across restarts
  std::string cluster;
  std::string node;
  uint32_t frequency_hz = 19;
  uint64_t first_sequence = 0;  // restored from the spool on restart
  // Sample column layout (samples.proto): compact, sample times rounded down to whole
  // microseconds, unless configured otherwise.
  batch::SampleEncoding encoding{
      .compact = true, .timestamp_unit_ns = 1000, .sort_locations = true};
};

class RawBatchEncoder : public SampleWriter {
 public:
  // `clock` and `kernel` (may be null) must outlive the encoder.
  RawBatchEncoder(RawBatchOptions options, const bpf::ClockOffset* clock,
                  const proc::KernelSymbols* kernel);

  void OnProcess(const proc::ProcessInfo& process) override;
  void OnSample(const ResolvedSample& sample, const proc::ProcessInfo& process) override;

  // The batch built so far (sequence numbers increase by one per batch), or nullopt when no
  // sample arrived since the last flush.
  std::optional<v1::SampleBatch> Flush();
  [[nodiscard]] size_t pending_samples() const;
  // `n` fresh sequence numbers (the first is returned) for pieces of a batch too large to
  // send whole; the next batch comes after them.
  uint64_t ReserveSequences(uint64_t n);

 private:
  uint32_t UserLocation(const UserFrame& f);
  uint32_t KernelLocation(uint64_t address);

  RawBatchOptions options_;
  const bpf::ClockOffset* clock_;
  const proc::KernelSymbols* kernel_;
  mutable std::mutex mu_;  // OnSample (dispatch thread) vs Flush (publisher thread)
  batch::BatchBuilder builder_;
  uint64_t sequence_;
  bool header_set_ = false;
  std::vector<uint32_t> scratch_;
  std::unordered_set<uint32_t> batch_pids_;     // processes already listed in this batch
  std::unordered_set<uint64_t> batch_threads_;  // pid << 32 | tid
};

// Converts one process's metadata to the schema's Process message.
v1::Process ToProcessMessage(const proc::ProcessInfo& p);

}  // namespace flamestream::agent
