// Test input for the profile and sink tests: realistic correlated batches and an independent
// computation of what their folded stacks must be.
//
//   profile::testing::BatchSpec spec{.sequence = 1, .samples = 500, .start_ns = t0};
//   v1::SampleBatch batch = profile::testing::MakeCorrelatedBatch(spec);
//   profile::testing::Expected want = profile::testing::ExpectedOf({batch});
//   EXPECT_EQ(want.folded.at("checkout"), folded_text_from_sink);
//
// The batches cover every frame kind the sinks must name: resolved frames with inlined chains,
// unresolved user frames ("basename+0xoffset"), kernel frames from kallsyms (with and without
// a kernel mapping) and a frame with no mapping; processes with a service name from spans,
// with only an exe, with only comm; samples with and without spans; named threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "flamestream/v1/samples.pb.h"

namespace flamestream::profile::testing {

struct BatchSpec {
  std::string agent_id = "test/node-1/boot";
  uint64_t sequence = 1;
  std::string cluster = "test";
  std::string node = "node-1";
  int samples = 1000;
  int64_t start_ns = 1'700'000'000'000'000'000;  // first sample time
  int64_t spread_ns = 1'000'000'000;             // samples spread over this long
  uint32_t seed = 1;
  uint64_t symbol_epoch = 0;
};

// A STAGE_CORRELATED batch that passes batch::Validate().
v1::SampleBatch MakeCorrelatedBatch(const BatchSpec& spec);

struct Expected {
  // service -> "a;b;c count\n" lines (root first, merged, sorted), as profile::FoldedText.
  std::map<std::string, std::string> folded;
  // service -> total samples / total CPU ns.
  std::map<std::string, int64_t> count;
  std::map<std::string, int64_t> nanos;
  // span name -> samples
  std::map<std::string, int64_t> span_count;
  int64_t total_count = 0;
  int64_t total_nanos = 0;
};

// Computed from the batches directly (not through the aggregator), with duplicates by batch
// id counted once.
Expected ExpectedOf(const std::vector<v1::SampleBatch>& batches);

}  // namespace flamestream::profile::testing
