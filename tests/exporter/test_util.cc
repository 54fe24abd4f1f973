#include "test_util.h"

#include <stdlib.h>

#include <filesystem>

#include "flamestream/profile/test_batches.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::exporter_test {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "fs-exporter-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

Result<std::string> RunCommand(const std::vector<std::string>& argv,
                               std::chrono::milliseconds timeout, bool merge_stderr) {
  FS_ASSIGN_OR_RETURN(std::unique_ptr<testing::Subprocess> proc,
                      testing::Subprocess::Start({.argv = argv, .capture_stderr = merge_stderr}));
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return DeadlineExceeded("{} timed out", argv[0]);
    Result<std::string> line = proc->ReadLine(left);
    if (!line.ok()) {
      if (line.status().code() == StatusCode::kNotFound) break;
      return line.status();
    }
    out += *line + "\n";
  }
  FS_ASSIGN_OR_RETURN(testing::ExitStatus st, proc->Wait(std::chrono::seconds(10)));
  if (!st.exited || st.code != 0) {
    return InternalError("{} exited {} (signal {}): {}", argv[0], st.code, st.signal, out);
  }
  return out;
}

std::vector<std::unique_ptr<profile::Window>> Aggregate(const std::vector<v1::SampleBatch>& batches,
                                                        profile::AggregatorOptions options) {
  profile::Aggregator agg(options);
  for (const auto& b : batches) (void)agg.Add(b);
  return agg.TakeAll();
}

std::vector<v1::SampleBatch> StandardBatches() {
  std::vector<v1::SampleBatch> out;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    out.push_back(profile::testing::MakeCorrelatedBatch(
        {.sequence = seq, .samples = 600, .start_ns = kT0 + 8'000'000'000LL,
         .spread_ns = 4'000'000'000LL}));
  }
  return out;
}

}  // namespace flamestream::exporter_test
