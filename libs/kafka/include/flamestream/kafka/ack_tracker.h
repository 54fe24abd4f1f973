// Which input offsets may be committed, given that outputs are acknowledged out of order.
//
//   AckTracker acks;
//   acks.Track(tp, msg.offset(), /*outputs=*/2);          // input 10 produced two records
//   producer->Produce(..., [&, tp, off](auto& r) { if (r.status.ok()) acks.Ack(tp, off); });
//   ...
//   TopicPartitions offsets = acks.CommittableOffsets();   // {tp, 11} once both are acked
//   if (consumer->Commit(offsets).ok()) acks.MarkCommitted(offsets);
//
// Per partition, the committable offset is one past the highest input below which every
// input's outputs are acknowledged: it never moves past an unacknowledged record, however
// the acks arrive. An input with zero outputs (filtered, or written to nothing) is ackable at
// once. Inputs must be tracked in increasing offset order per partition (gaps are fine:
// compaction and transaction markers leave holes). Thread-safe: delivery callbacks call Ack()
// on the producer's poll thread while the consumer thread tracks and commits.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "flamestream/kafka/types.h"

namespace flamestream::kafka {

class AckTracker {
 public:
  // Records input `offset` of (topic, partition) with the number of outputs it produced.
  // Returns false (and ignores it) when `offset` is not above the last tracked offset.
  bool Track(const std::string& topic, int32_t partition, int64_t offset, uint32_t outputs);
  // One output (or `n`) of that input was acknowledged. Returns false for an unknown input
  // (already committed, forgotten on revoke) or more acks than outputs.
  bool Ack(const std::string& topic, int32_t partition, int64_t offset, uint32_t n = 1);
  // That input has `n` more outputs than tracked (an output was split after the fact).
  // Returns false for an unknown input.
  bool Extend(const std::string& topic, int32_t partition, int64_t offset, uint32_t n);

  // Partitions whose committable offset is past the last MarkCommitted() one.
  [[nodiscard]] TopicPartitions CommittableOffsets() const;
  // Records a successful commit, so those offsets are not offered again.
  void MarkCommitted(const TopicPartitions& offsets);
  // Drops the state of revoked partitions.
  void Forget(const TopicPartitions& partitions);
  // The partition is read again from an earlier offset (a seek back): its tracked inputs are
  // dropped, so the re-read ones can be tracked; what was committed is kept, so the
  // committable offset does not move back past it.
  void Rewind(const std::string& topic, int32_t partition);
  // Inputs tracked but not yet fully acknowledged (all partitions).
  [[nodiscard]] size_t Pending() const;

 private:
  struct Input {
    int64_t offset;
    uint32_t remaining;
  };
  struct PartitionState {
    std::deque<Input> inputs;  // increasing offsets, front is the oldest unacked
    int64_t last_tracked = -1;
    int64_t committable = kOffsetInvalid;  // next offset to read, once known
    int64_t committed = kOffsetInvalid;
  };
  using Key = std::pair<std::string, int32_t>;

  static void Advance(PartitionState& st);
  // The tracked input at `offset` (and its partition's state), or nullptr. Holds mu_.
  Input* FindLocked(const std::string& topic, int32_t partition, int64_t offset,
                    PartitionState** state);

  mutable std::mutex mu_;
  std::map<Key, PartitionState> parts_;
};

}  // namespace flamestream::kafka
