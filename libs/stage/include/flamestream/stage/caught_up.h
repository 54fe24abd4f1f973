// Replay's stop condition ("read everything there is, then exit"), shared by the map stage
// and the exporter so every replay stage agrees on what "caught up" means.
//
//   stage::CaughtUp caught_up(std::chrono::seconds(3));
//   ccfg.on_assigned = [&](const kafka::TopicPartitions&, bool) { caught_up.OnAssigned(); };
//   ...
//   auto polled = consumer->Poll(100ms);
//   if (polled->has_value()) caught_up.OnRecord();
//   else if (caught_up.Reached(*consumer)) break;   // then drain as on stop
//
// "Caught up" = partitions were assigned, nothing arrived for `idle` (a record the upstream
// flushed as it stopped may still be on its way), and every assigned partition's position is
// at the broker's high watermark (asked, not the fetcher's cached view) or it is empty.
#pragma once

#include <chrono>
#include <vector>

#include "flamestream/kafka/consumer.h"

namespace flamestream::stage {

// True when every partition is read to its end (or holds nothing).
bool AllAtEnd(const std::vector<kafka::PartitionLag>& lag);

class CaughtUp {
 public:
  explicit CaughtUp(std::chrono::milliseconds idle) : idle_(idle) {}

  void OnAssigned() { assigned_ = true; }
  void OnRecord() { last_record_ = std::chrono::steady_clock::now(); }
  // Call after an empty poll; asks the broker for the high watermarks once `idle` passed.
  [[nodiscard]] bool Reached(kafka::Consumer& consumer) const;

 private:
  std::chrono::milliseconds idle_;
  bool assigned_ = false;
  std::chrono::steady_clock::time_point last_record_ = std::chrono::steady_clock::now();
};

}  // namespace flamestream::stage
