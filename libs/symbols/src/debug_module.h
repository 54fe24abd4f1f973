// One opened debug file, read in the DWARF worker process (or, with a DwarfEngine from
// flamestream::symbols_dwarf, in this process). Private to fs_symbols, which does not link LLVM.
//
//   FS_ASSIGN_OR_RETURN(auto worker, DwarfWorker::Create(executable, engine));  // per Symbolizer
//   FS_ASSIGN_OR_RETURN(auto module, DebugModule::Open(files, worker.get(), engine));
//   std::vector<Result<Location>> locs = module->SymbolizeMany(sorted_addresses);
//
// LLVM 14's DWARF reader trusts parts of its input: a corrupt .debug_abbrev or .debug_info can
// make it read through a bad DIE and crash. So by default DWARF is only ever parsed inside a
// DwarfWorker, the flamestream-dwarf-worker process (or a fork of this one when the caller
// passed an engine and the executable is missing) that keeps the files open and answers
// lookups over a socket. When it crashes or hangs, the request's file becomes an error for its
// build id, the worker is restarted on the next request, and files it had open are reopened
// lazily. With a null worker the file is parsed in this process by the engine (trusted debug
// info, benchmarks).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "flamestream/common/fd.h"
#include "flamestream/common/status.h"
#include "flamestream/symbols/debug_locator.h"
#include "flamestream/symbols/dwarf_engine.h"
#include "flamestream/symbols/location.h"

namespace flamestream::symbols {

inline constexpr const char* kDwarfWorkerName = "flamestream-dwarf-worker";
// The worker executable: `configured` if set, else $FLAMESTREAM_DWARF_WORKER, else
// flamestream-dwarf-worker next to this executable or in ../bin/. Empty when none is usable;
// `tried` (optional) receives the paths looked at, for the error message.
std::string FindDwarfWorkerBinary(const std::string& configured,
                                  std::vector<std::string>* tried = nullptr);

// The child process that parses DWARF. Not thread-safe (the Symbolizer serializes calls).
class DwarfWorker {
 public:
  // Starts the worker now: `executable` (flamestream-dwarf-worker, LLVM linked statically, so
  // it starts in a few ms) through posix_spawn, or when that is empty or fails and `engine` is
  // not null, a fork of this process serving `engine` (which must outlive the worker).
  // `timeout` bounds one request.
  [[nodiscard]] static Result<std::unique_ptr<DwarfWorker>> Create(
      std::string executable, const DwarfEngine* engine,
      std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~DwarfWorker();
  DwarfWorker(const DwarfWorker&) = delete;
  DwarfWorker& operator=(const DwarfWorker&) = delete;

  // Opens `path` in the worker; returns the handle that names it in later calls.
  [[nodiscard]] Result<uint64_t> Open(const std::string& path);
  // One result per address; the outer error means the worker died or hung on this file.
  [[nodiscard]] Result<std::vector<Result<Location>>> Symbolize(
      uint64_t handle, const std::string& path, std::span<const uint64_t> addresses);
  void Close(uint64_t handle);
  // Ends the worker now (later Close calls are no-ops): it frees nothing, it just exits.
  void Shutdown() { Stop(); }

  // Readable from any thread (Symbolizer::stats()).
  [[nodiscard]] uint64_t starts() const { return starts_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t crashes() const { return crashes_.load(std::memory_order_relaxed); }

 private:
  DwarfWorker(std::string executable, const DwarfEngine* engine,
              std::chrono::milliseconds timeout)
      : executable_(std::move(executable)), engine_(engine), timeout_(timeout) {}
  Status Start();
  pid_t Spawn(int child_fd);  // -1 on failure (then executable_ is cleared)
  pid_t Fork(int child_fd);
  Status OpenAs(uint64_t handle, const std::string& path);
  // Sends one request frame and waits for its reply; on failure the worker is gone.
  Result<std::string> Call(const std::string& request, const std::string& path);
  // Ends a worker that failed a request on `path` (`exited`: it closed its socket) and returns
  // the error that blames the file.
  Status WorkerFailed(std::string_view what, const std::string& path, bool exited = false);
  void Stop();

  std::string executable_;
  const DwarfEngine* engine_;  // null: no fork fallback
  std::string failed_executable_;  // the last executable posix_spawn failed on
  std::chrono::milliseconds timeout_;
  pid_t pid_ = -1;
  common::UniqueFd sock_;
  std::vector<uint64_t> open_;  // handles open in the current worker process
  uint64_t next_handle_ = 1;
  std::atomic<uint64_t> starts_{0};   // processes started, restarts included
  std::atomic<uint64_t> crashes_{0};  // deaths and hangs
};

class DebugModule {
 public:
  // Opens `files.debug` (mapped; DWARF parsed lazily by LLVM on first use) in `worker`, or in
  // this process with `engine` when `worker` is null (one of them must be set). Both must
  // outlive the module.
  [[nodiscard]] static Result<std::unique_ptr<DebugModule>> Open(DebugFiles files,
                                                                DwarfWorker* worker,
                                                                const DwarfEngine* engine);
  ~DebugModule();
  DebugModule(const DebugModule&) = delete;
  DebugModule& operator=(const DebugModule&) = delete;

  // The inlining chain at a virtual address, exactly as `llvm-symbolizer --inlining` reports
  // it (one "??" frame when nothing is known).
  [[nodiscard]] Result<Location> Symbolize(uint64_t address);
  // The same for many addresses (sorted addresses share parsed units best). The outer error
  // means the file cannot be used any more (the worker died on it).
  [[nodiscard]] Result<std::vector<Result<Location>>> SymbolizeMany(
      std::span<const uint64_t> addresses);

  [[nodiscard]] const DebugFiles& files() const { return files_; }
  [[nodiscard]] uint64_t bytes() const { return files_.debug.file_size; }

 private:
  DebugModule(DebugFiles files, std::unique_ptr<DwarfFile> local, DwarfWorker* worker,
             uint64_t handle);
  DebugFiles files_;
  std::unique_ptr<DwarfFile> local_;  // in-process mode
  DwarfWorker* worker_ = nullptr;       // worker mode
  uint64_t handle_ = 0;
};

}  // namespace flamestream::symbols
