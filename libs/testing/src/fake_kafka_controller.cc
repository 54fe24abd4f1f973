#include "flamestream/testing/fake_kafka_controller.h"

#include <stdlib.h>

#include <cerrno>
#include <fstream>
#include <system_error>
#include <utility>

namespace flamestream::testing {

Result<std::unique_ptr<FakeKafkaController>> FakeKafkaController::Start(
    std::vector<std::string> args, std::chrono::milliseconds timeout) {
  std::unique_ptr<FakeKafkaController> fake(new FakeKafkaController());
  std::string tmpl = (std::filesystem::temp_directory_path() / "fs-fake-kafka.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return ErrnoError(errno, "fake kafka controller: mkdtemp");
  }
  fake->dir_ = tmpl;
  std::vector<std::string> argv = {"python3", FS_FAKE_KAFKA_CONTROLLER, "--record",
                                   (fake->dir_ / "requests.jsonl").string()};
  argv.insert(argv.end(), std::make_move_iterator(args.begin()),
              std::make_move_iterator(args.end()));
  FS_ASSIGN_OR_RETURN(fake->proc_, Subprocess::Start({.argv = std::move(argv)}));
  static constexpr std::string_view kListening = "listening ";
  FS_ASSIGN_OR_RETURN(std::string line,
                      fake->proc_->WaitForLine(
                          [](std::string_view l) { return l.starts_with(kListening); }, timeout));
  fake->bootstrap_ = "127.0.0.1:" + line.substr(kListening.size());
  return fake;
}

FakeKafkaController::~FakeKafkaController() {
  proc_.reset();  // SIGKILL and reap before its record file goes
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::vector<std::string> FakeKafkaController::Requests() const {
  std::vector<std::string> out;
  std::ifstream in(dir_ / "requests.jsonl");
  for (std::string line; std::getline(in, line);) {
    out.push_back(std::move(line));
  }
  return out;
}

}  // namespace flamestream::testing
