// Helpers for the agent's Kafka tests: read back what the agent published.
//
//   Published got = ConsumeUntil(broker->bootstrap(), [&](const Published& p) {
//     return p.batches.size() >= expected;
//   }, std::chrono::seconds(30));
//   for (const RawRecord& r : got.batches) EXPECT_EQ(r.key, "default/node-1");
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "flamestream/v1/processes.pb.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::testing_agent_kafka {

struct RawRecord {
  std::string key;
  int32_t partition = 0;
  int64_t offset = 0;
  v1::SampleBatch batch;
};

struct Published {
  std::vector<RawRecord> batches;                      // consumption order
  std::map<std::string, v1::ProcessRecord> processes;  // by key (latest wins: compacted;
                                                       // a tombstone removes the key)
  // Every record on the processes topic by key, in order: true = a ProcessRecord, false = a
  // tombstone (null value).
  std::map<std::string, std::vector<bool>> process_history;
  int undecodable = 0;
};

// Consumes flamestream.samples.raw.v1 and flamestream.processes.v1 from the beginning with a
// fresh group until `done` holds or `timeout` passes.
Published ConsumeUntil(const std::string& bootstrap,
                       const std::function<bool(const Published&)>& done,
                       std::chrono::milliseconds timeout);

// Sequence numbers of the batches in consumption order.
std::vector<uint64_t> Sequences(const Published& p);

}  // namespace flamestream::testing_agent_kafka
