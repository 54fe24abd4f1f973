#include "folded_printer.h"

namespace flamestream::agent {

std::vector<std::string> FoldedPrinter::Frames(const ResolvedSample& sample, FrameNamer& namer) {
  std::vector<std::string> frames;
  frames.reserve(1 + sample.user.size() + sample.kernel.size());
  frames.push_back(sample.comm);
  // Root first: both stacks are stored leaf first.
  for (size_t i = sample.user.size(); i-- > 0;) namer.NameUser(sample.user[i], &frames);
  for (size_t i = sample.kernel.size(); i-- > 0;) {
    frames.push_back(namer.NameKernel(sample.kernel[i]) + "_[k]");
  }
  return frames;
}

void FoldedPrinter::OnSample(const ResolvedSample& sample, const proc::ProcessInfo& process) {
  (void)process;
  if (sample.off_cpu != (profile_ == Profile::kOffCpu)) return;
  std::vector<std::string> frames = Frames(sample, *namer_);
  std::lock_guard lock(mu_);
  folded_.Add(frames, sample.off_cpu ? sample.value_ns : 1);
}

void FoldedPrinter::Write(std::ostream& out) const {
  std::lock_guard lock(mu_);
  folded_.Write(out, profile_ == Profile::kOffCpu ? 1000 : 1);  // off-CPU: microseconds
}

uint64_t FoldedPrinter::total() const {
  std::lock_guard lock(mu_);
  return folded_.total();
}

}  // namespace flamestream::agent
