// Symbolizer::Create with and without an in-process DwarfEngine (fs_symbols itself does not
// link LLVM): the missing-worker error, in-process parsing, the fork fallback, and that all
// three ways of parsing give the worker's exact answer for this test binary's own functions.
#include <link.h>
#include <stdlib.h>

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "flamestream/symbols/dwarf_engine.h"
#include "flamestream/symbols/symbolizer.h"

extern "C" __attribute__((noinline, used)) int FsEngineTestMarker(int x) {
  asm volatile("" : "+r"(x));
  return x * 3;
}

namespace fs_engine_test {
__attribute__((noinline, used)) int Twice(int x) {
  asm volatile("" : "+r"(x));
  return x * 2;
}
}  // namespace fs_engine_test

namespace flamestream::symbols {
namespace {

// ELF virtual address of code in this executable (runtime address minus the load bias).
uint64_t OwnVirtualAddress(const void* code) {
  uintptr_t bias = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        *static_cast<uintptr_t*>(out) = info->dlpi_addr;
        return 1;  // the first object is the executable
      },
      &bias);
  return reinterpret_cast<uintptr_t>(code) - bias;
}

std::string SelfPath() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

SymbolizerConfig Config() {
  SymbolizerConfig config;
  config.locator.debuginfod = false;
  return config;
}

TEST(SymbolizerEngine, MissingWorkerWithoutEngineIsAnErrorNamingThePath) {
  SymbolizerConfig config = Config();
  config.dwarf_worker = "/nonexistent/flamestream-dwarf-worker";
  auto created = Symbolizer::Create(config);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.error().code(), StatusCode::kNotFound);
  EXPECT_NE(created.error().message().find("dwarf_worker=/nonexistent/flamestream-dwarf-worker"),
            std::string::npos)
      << created.error().message();
}

TEST(SymbolizerEngine, MissingWorkerFromEnvironmentIsAnErrorNamingTheVariable) {
  ASSERT_EQ(::setenv("FLAMESTREAM_DWARF_WORKER", "/nonexistent/worker-from-env", 1), 0);
  auto created = Symbolizer::Create(Config());
  ::unsetenv("FLAMESTREAM_DWARF_WORKER");
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.error().code(), StatusCode::kNotFound);
  EXPECT_NE(created.error().message().find("$FLAMESTREAM_DWARF_WORKER=/nonexistent/worker-from-env"),
            std::string::npos)
      << created.error().message();
}

TEST(SymbolizerEngine, InProcessParsingWithoutEngineIsAnError) {
  SymbolizerConfig config = Config();
  config.probe_debug_info = false;
  auto created = Symbolizer::Create(config);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(created.error().message().find("dwarf_engine"), std::string::npos)
      << created.error().message();
}

TEST(SymbolizerEngine, WorkerInProcessAndForkGiveTheSameFrames) {
  const std::string self = SelfPath();
  struct Case {
    const char* name;
    bool probe;
    bool engine;
    std::string worker;  // "" = found in ../bin (built with fs_symbols)
    uint64_t want_worker_starts;
  };
  const Case cases[] = {
      {"worker executable", true, false, "", 1},
      {"in process", false, true, "", 0},
      {"fork fallback", true, true, "/nonexistent/flamestream-dwarf-worker", 1},
  };
  const struct {
    const void* code;
    const char* function;
    const char* system_name;
  } functions[] = {
      {reinterpret_cast<const void*>(&FsEngineTestMarker), "FsEngineTestMarker",
       "FsEngineTestMarker"},
      {reinterpret_cast<const void*>(&fs_engine_test::Twice), "fs_engine_test::Twice(int)",
       "_ZN14fs_engine_test5TwiceEi"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SymbolizerConfig config = Config();
    config.probe_debug_info = c.probe;
    config.dwarf_worker = c.worker;
    if (c.engine) {
      config.dwarf_engine = LlvmDwarfEngine();
    }
    auto created = Symbolizer::Create(config);
    ASSERT_TRUE(created.ok()) << created.error().message();
    Symbolizer& symbolizer = **created;
    for (const auto& f : functions) {
      SCOPED_TRACE(f.function);
      auto loc = symbolizer.ResolvePathAddress(self, OwnVirtualAddress(f.code));
      ASSERT_TRUE(loc.ok()) << loc.error().message();
      ASSERT_EQ(loc->frames.size(), 1u);
      EXPECT_TRUE(loc->resolved);
      EXPECT_EQ(loc->frames[0].function, f.function);
      EXPECT_EQ(loc->frames[0].system_name, f.system_name);
    }
    EXPECT_EQ(symbolizer.stats().worker_starts, c.want_worker_starts);
  }
}

// A worker that never answers (here a script that sleeps instead of serving) is killed after
// dwarf_timeout: the file becomes an error naming the hang, the process is gone (reaped, no
// leftover child), and asking again for that file answers from the error without waiting.
TEST(SymbolizerEngine, HungWorkerIsKilledAfterTheTimeoutAndItsFileBecomesAnError) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("fs-hung-worker-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::filesystem::path script = dir / "hung-worker";
  const std::filesystem::path pid_file = dir / "pid";
  {
    std::ofstream out(script);
    out << "#!/bin/sh\necho $$ > " << pid_file.string() << "\nexec sleep 600\n";
  }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  SymbolizerConfig config = Config();
  config.dwarf_worker = script.string();
  config.dwarf_timeout = std::chrono::milliseconds(300);
  auto created = Symbolizer::Create(config);
  ASSERT_TRUE(created.ok()) << created.error().message();
  Symbolizer& symbolizer = **created;
  const std::string self = SelfPath();
  const uint64_t address = OwnVirtualAddress(reinterpret_cast<const void*>(&FsEngineTestMarker));

  auto loc = symbolizer.ResolvePathAddress(self, address);
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.error().code(), StatusCode::kDataLoss);
  EXPECT_NE(loc.error().message().find("no answer within 300ms"), std::string::npos)
      << loc.error().message();
  EXPECT_EQ(symbolizer.stats().worker_crashes, 1u);
  // The hung process was killed and reaped.
  std::ifstream in(pid_file);
  pid_t pid = 0;
  ASSERT_TRUE(in >> pid);
  EXPECT_NE(::kill(pid, 0), 0) << "worker " << pid << " still exists";
  EXPECT_EQ(errno, ESRCH);

  // The same file again: the remembered error, no new worker, no second wait.
  auto again = symbolizer.ResolvePathAddress(self, address);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(symbolizer.stats().worker_crashes, 1u);
  EXPECT_EQ(symbolizer.stats().worker_starts, 1u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace flamestream::symbols
