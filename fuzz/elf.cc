// ELF headers as the symbolizer and the agent read them: libs/symbols ReadElfInfo (build id
// from SHT_NOTE / PT_NOTE, PT_LOAD segments, .debug_info/.symtab/.dynsym presence,
// .gnu_debuglink) and FileCrc32, and libs/proc BuildIdFromElfImage (the agent's build ids).
// libelf itself is a system library (not instrumented); the harness checks our code around
// it. The LLVM DWARF/CFI path runs in flamestream-dwarf-worker and is not linked here.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "flamestream/proc/build_id.h"
#include "flamestream/symbols/elf_file.h"
#include "fuzz_check.h"

namespace symbols = flamestream::symbols;

namespace {

bool IsLowerHex(const std::string& s) {
  if (s.size() % 2 != 0) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// ReadElfInfo opens a path: the input goes to one memfd, reopened as /proc/self/fd/N.
const std::string& MemfdPath(int* fd_out) {
  static int fd = -1;
  static std::string path;
  if (fd < 0) {
    fd = memfd_create("fuzz-elf", MFD_CLOEXEC);
    if (fd < 0) std::abort();
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  *fd_out = fd;
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view image(reinterpret_cast<const char*>(data), size);
  if (auto id = flamestream::proc::BuildIdFromElfImage(image); id.ok()) {
    FS_FUZZ_CHECK(IsLowerHex(*id), "proc build id \"%s\"", id->c_str());
  }

  int fd = -1;
  const std::string& path = MemfdPath(&fd);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) {
    std::abort();
  }
  flamestream::Result<symbols::ElfInfo> info = symbols::ReadElfInfo(path);
  if (info.ok()) {
    FS_FUZZ_CHECK(info->file_size == size, "file_size %llu",
                  static_cast<unsigned long long>(info->file_size));
    FS_FUZZ_CHECK(IsLowerHex(info->build_id), "build id \"%s\"", info->build_id.c_str());
    if (info->debug_link.has_value()) {
      FS_FUZZ_CHECK(!info->debug_link->name.empty(), "empty debuglink name");
    }
    for (const symbols::LoadSegment& seg : info->segments) {
      auto vaddr = info->FileOffsetToVaddr(seg.offset);
      if (info->segments_have_file_data && seg.filesz > 0) {
        FS_FUZZ_CHECK(vaddr.ok(), "offset of a PT_LOAD segment maps nowhere");
      }
      (void)info->FileOffsetToVaddr(seg.offset + seg.filesz);
    }
  }
  (void)symbols::FileCrc32(path);
  return 0;
}
