// Helpers for the CLI tests: run build/bin/flamestream and collect its output, temp dirs.
//
//   CliRun r = RunCli({"top", dir});
//   EXPECT_EQ(r.exit, 0);
//   EXPECT_EQ(r.output, "...");
#pragma once

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::cli_test {

struct CliRun {
  int exit = -1;       // exit code, or 128 + signal
  std::string output;  // stdout (and stderr when merged), lines joined with '\n'
};

inline CliRun RunCli(const std::vector<std::string>& args, bool merge_stderr = false,
                     std::vector<std::pair<std::string, std::string>> env = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  CliRun run;
  Result<std::string> bin = testing::BinPath("flamestream");
  EXPECT_TRUE(bin.ok()) << bin.error();
  if (!bin.ok()) return run;
  std::vector<std::string> argv = {*bin};
  argv.insert(argv.end(), args.begin(), args.end());
  auto proc = testing::Subprocess::Start(
      {.argv = argv, .env = std::move(env), .capture_stderr = merge_stderr});
  EXPECT_TRUE(proc.ok()) << proc.error();
  if (!proc.ok()) return run;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    Result<std::string> line = (*proc)->ReadLine(left);
    if (!line.ok()) break;
    run.output += *line + "\n";
  }
  Result<testing::ExitStatus> st = (*proc)->Wait(std::chrono::seconds(5));
  EXPECT_TRUE(st.ok()) << st.error();
  if (st.ok()) run.exit = st->exited ? st->code : 128 + st->signal;
  return run;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fs_cli_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string operator/(const std::string& name) const {
    return (path_ / name).string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace flamestream::cli_test
