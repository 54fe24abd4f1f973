// Counts SIGINT/SIGTERM while a CLI command supervises its stages, without a signal handler or
// global state: the constructor blocks both signals in the calling thread (threads it starts
// later inherit the mask) and a watcher thread takes them with sigtimedwait. The destructor
// stops the watcher and restores the previous mask. Children reset their mask before exec
// (supervisor.cc), so the stages still get their own signals.
//
//   Interrupts interrupts;
//   while (interrupts.count() == 0) { ... }   // first Ctrl-C: drain; second: abort
#pragma once

#include <signal.h>

#include <atomic>
#include <thread>

namespace flamestream::cli {

class Interrupts {
 public:
  Interrupts();
  ~Interrupts();
  Interrupts(const Interrupts&) = delete;
  Interrupts& operator=(const Interrupts&) = delete;

  // Signals received since construction.
  int count() const { return count_.load(std::memory_order_relaxed); }

 private:
  void Watch();

  sigset_t set_{};
  sigset_t previous_{};
  std::atomic<int> count_{0};
  std::atomic<bool> done_{false};
  std::thread watcher_;
};

}  // namespace flamestream::cli
