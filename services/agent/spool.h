// A bounded on-disk FIFO of encoded batches, used while Kafka is unreachable.
//
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<Spool> spool,
//                       Spool::Open({.dir = "/var/lib/flamestream/spool", .limit_bytes = 256 <<
//                       20}));
//   FS_RETURN_IF_ERROR(spool->Append(batch_sequence, bytes));   // oldest dropped when full
//   if (std::optional<Spool::Entry> head = spool->Front()) {
//     Produce(head->bytes); ... on ack: (void)spool->Remove(head->sequence);
//   }
//
// One file per batch, named by its sequence ("00000000000000000042.batch", so the directory
// lists in order), written to a temporary name, fsynced and renamed, so a crash leaves either
// the whole batch or nothing. Open() finds what a previous run left and serves it first.
// Not thread-safe: the publisher thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"

namespace flamestream::agent {

struct SpoolOptions {
  std::string dir;
  uint64_t limit_bytes = 256ull << 20;
};

struct SpoolStats {
  uint64_t appended = 0;  // batches written
  uint64_t dropped = 0;   // batches deleted unsent because the spool was full
  uint64_t dropped_bytes = 0;
};

class Spool {
 public:
  struct Entry {
    uint64_t sequence = 0;
    std::string bytes;
  };

  // Creates `dir` if needed, removes half-written temporaries, indexes existing batches.
  static Result<std::unique_ptr<Spool>> Open(SpoolOptions options);

  // Stores one batch; when the spool would exceed its limit, the oldest batches are dropped
  // (counted) to make room. A batch larger than the whole limit is dropped itself.
  Status Append(uint64_t sequence, std::string_view bytes);
  // The oldest batch (lowest sequence), read from disk; nullopt when empty. A file that can
  // no longer be read is dropped (counted) and the next one tried.
  std::optional<Entry> Front();
  // Deletes one batch (after Kafka acknowledged it). A batch already gone is not an error.
  Status Remove(uint64_t sequence);

  [[nodiscard]] bool empty() const { return files_.empty(); }
  [[nodiscard]] size_t count() const { return files_.size(); }
  [[nodiscard]] uint64_t bytes() const { return bytes_; }
  [[nodiscard]] std::optional<uint64_t> max_sequence() const;
  [[nodiscard]] const SpoolStats& stats() const { return stats_; }
  [[nodiscard]] const std::string& dir() const { return options_.dir; }

  // The file a batch lives in ("<dir>/<20-digit sequence>.batch").
  [[nodiscard]] std::string PathOf(uint64_t sequence) const;

 private:
  explicit Spool(SpoolOptions options) : options_(std::move(options)) {}
  void DropOldest();

  SpoolOptions options_;
  std::map<uint64_t, uint64_t> files_;  // sequence -> size
  uint64_t bytes_ = 0;
  SpoolStats stats_;
};

}  // namespace flamestream::agent
