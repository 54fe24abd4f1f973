// Helpers shared by the exporter tests.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/profile/aggregator.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::exporter_test {

// A fresh empty directory under $TMPDIR, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs argv to completion and returns its stdout (and stderr when `merge_stderr`, else the
// child's stderr goes to the test log); error on non-zero exit.
Result<std::string> RunCommand(const std::vector<std::string>& argv,
                               std::chrono::milliseconds timeout = std::chrono::seconds(60),
                               bool merge_stderr = true);

// Aggregates the batches and returns every window (oldest first).
std::vector<std::unique_ptr<profile::Window>> Aggregate(const std::vector<v1::SampleBatch>& batches,
                                                        profile::AggregatorOptions options);

// Three batches in two 10 s windows (some samples straddle the boundary).
std::vector<v1::SampleBatch> StandardBatches();

// Window-aligned base time used by the tests.
inline constexpr int64_t kT0 = 1'700'000'000LL * 1'000'000'000LL;

}  // namespace flamestream::exporter_test
