// /proc/<pid>/status (NSpid, NStgid, Tgid, PPid, Name) and /proc/<pid>/stat (start time) as
// the agent reads them for every new process (libs/proc ParseStatus, ParseStatStartTicks).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "flamestream/proc/process.h"
#include "fuzz_check.h"

namespace proc = flamestream::proc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (flamestream::Result<proc::ProcStatus> st = proc::ParseStatus(text); st.ok()) {
    // Host pid first, innermost namespace last: never empty (pre-4.1 kernels: the host pid).
    FS_FUZZ_CHECK(!st->nspid.empty() && !st->nstgid.empty(), "empty NSpid/NStgid");
  }
  (void)proc::ParseStatStartTicks(text);
  return 0;
}
