// Print mode's sink: aggregates samples into folded stacks, written at exit.
//
//   OffsetFrameNamer namer(&ksyms);
//   FoldedPrinter sink(&namer);
//   ... processor feeds it ...
//   sink.Write(std::cout);   // "comm;main;outer;leaf;entry_SYSCALL_64_[k] 42"
#pragma once

#include <mutex>
#include <ostream>

#include "folded.h"
#include "frame_namer.h"
#include "processor.h"

namespace flamestream::agent {

class FoldedPrinter : public SampleWriter {
 public:
  // kCpu: CPU samples, counted. kOffCpu: off-CPU events, valued in microseconds blocked.
  enum class Profile { kCpu, kOffCpu };
  explicit FoldedPrinter(FrameNamer* namer, Profile profile = Profile::kCpu)
      : namer_(namer), profile_(profile) {}
  void OnSample(const ResolvedSample& sample, const proc::ProcessInfo& process) override;
  void Write(std::ostream& out) const;
  [[nodiscard]] uint64_t total() const;

  // comm, user frames root first, then kernel frames root first with "_[k]".
  static std::vector<std::string> Frames(const ResolvedSample& sample, FrameNamer& namer);

 private:
  FrameNamer* namer_;
  Profile profile_;
  mutable std::mutex mu_;  // Write() may run on another thread than OnSample()
  FoldedStacks folded_;
};

}  // namespace flamestream::agent
