#include "flamestream/kafka/ack_tracker.h"

#include <algorithm>

namespace flamestream::kafka {

bool AckTracker::Track(const std::string& topic, int32_t partition, int64_t offset,
                       uint32_t outputs) {
  std::lock_guard<std::mutex> lock(mu_);
  PartitionState& st = parts_[{topic, partition}];
  if (offset < 0 || offset <= st.last_tracked) {
    return false;
  }
  st.last_tracked = offset;
  st.inputs.push_back({offset, outputs});
  Advance(st);
  return true;
}

AckTracker::Input* AckTracker::FindLocked(const std::string& topic, int32_t partition,
                                          int64_t offset, PartitionState** state) {
  auto it = parts_.find({topic, partition});
  if (it == parts_.end()) {
    return nullptr;
  }
  PartitionState& st = it->second;
  // Offsets are increasing, so the input is found by binary search.
  auto in = std::lower_bound(st.inputs.begin(), st.inputs.end(), offset,
                             [](const Input& i, int64_t o) { return i.offset < o; });
  if (in == st.inputs.end() || in->offset != offset) {
    return nullptr;
  }
  *state = &st;
  return &*in;
}

bool AckTracker::Ack(const std::string& topic, int32_t partition, int64_t offset, uint32_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  PartitionState* st = nullptr;
  Input* in = FindLocked(topic, partition, offset, &st);
  if (in == nullptr || in->remaining < n) {
    return false;
  }
  in->remaining -= n;
  Advance(*st);
  return true;
}

bool AckTracker::Extend(const std::string& topic, int32_t partition, int64_t offset, uint32_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  PartitionState* st = nullptr;
  Input* in = FindLocked(topic, partition, offset, &st);
  if (in == nullptr) {
    return false;
  }
  in->remaining += n;
  return true;
}

void AckTracker::Advance(PartitionState& st) {
  while (!st.inputs.empty() && st.inputs.front().remaining == 0) {
    st.committable = st.inputs.front().offset + 1;
    st.inputs.pop_front();
  }
}

TopicPartitions AckTracker::CommittableOffsets() const {
  std::lock_guard<std::mutex> lock(mu_);
  TopicPartitions out;
  for (const auto& [key, st] : parts_) {
    if (st.committable >= 0 && st.committable > st.committed) {
      out.push_back({key.first, key.second, st.committable});
    }
  }
  return out;
}

void AckTracker::MarkCommitted(const TopicPartitions& offsets) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const TopicPartition& tp : offsets) {
    auto it = parts_.find({tp.topic, tp.partition});
    if (it != parts_.end()) {
      it->second.committed = std::max(it->second.committed, tp.offset);
    }
  }
}

void AckTracker::Forget(const TopicPartitions& partitions) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const TopicPartition& tp : partitions) {
    parts_.erase({tp.topic, tp.partition});
  }
}

void AckTracker::Rewind(const std::string& topic, int32_t partition) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = parts_.find({topic, partition});
  if (it == parts_.end()) return;
  PartitionState& st = it->second;
  st.inputs.clear();
  st.last_tracked = -1;
  st.committable = kOffsetInvalid;
}

size_t AckTracker::Pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [key, st] : parts_) {
    n += static_cast<size_t>(std::count_if(st.inputs.begin(), st.inputs.end(),
                                           [](const Input& i) { return i.remaining > 0; }));
  }
  return n;
}

}  // namespace flamestream::kafka
