#include "flamestream/proc/build_id.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "flamestream/common/fd.h"
#include "flamestream/common/strings.h"
#include "flamestream/proc/elf_notes.h"

namespace flamestream::proc {
namespace {

constexpr uint32_t kNtGnuBuildId = 3;

struct ElfDeleter {
  void operator()(Elf* e) const { elf_end(e); }
};
using ElfPtr = std::unique_ptr<Elf, ElfDeleter>;

void InitLibelf() {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
}

Result<std::string> BuildIdFromElf(Elf* elf) {
  if (elf == nullptr || elf_kind(elf) != ELF_K_ELF) {
    return InvalidArgument("not an ELF file");
  }
  // Program headers first: they survive strip and are what the loader maps.
  size_t phnum = 0;
  if (elf_getphdrnum(elf, &phnum) == 0) {
    for (size_t i = 0; i < phnum; ++i) {
      GElf_Phdr phdr;
      if (gelf_getphdr(elf, static_cast<int>(i), &phdr) == nullptr || phdr.p_type != PT_NOTE) {
        continue;
      }
      Elf_Data* data =
          elf_getdata_rawchunk(elf, static_cast<int64_t>(phdr.p_offset), phdr.p_filesz, ELF_T_NHDR);
      if (std::string id = GnuBuildIdFromNotes(data); !id.empty()) {
        return id;
      }
    }
  }
  Elf_Scn* scn = nullptr;
  while ((scn = elf_nextscn(elf, scn)) != nullptr) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr) == nullptr || shdr.sh_type != SHT_NOTE) {
      continue;
    }
    if (std::string id = GnuBuildIdFromNotes(elf_getdata(scn, nullptr)); !id.empty()) {
      return id;
    }
  }
  return NotFound("no GNU build-id note");
}

}  // namespace

std::string GnuBuildIdFromNotes(Elf_Data* data) {
  if (data == nullptr || data->d_buf == nullptr) {
    return "";
  }
  size_t offset = 0;
  GElf_Nhdr nhdr;
  size_t name_off = 0;
  size_t desc_off = 0;
  while (offset < data->d_size) {
    const size_t next = gelf_getnote(data, offset, &nhdr, &name_off, &desc_off);
    if (next == 0 || next <= offset) {
      break;
    }
    if (nhdr.n_type == kNtGnuBuildId && nhdr.n_namesz == 4 && nhdr.n_descsz > 0 &&
        desc_off + nhdr.n_descsz <= data->d_size && name_off + 4 <= data->d_size &&
        std::memcmp(static_cast<const char*>(data->d_buf) + name_off, "GNU", 4) == 0) {
      return common::HexEncode(
          std::string_view(static_cast<const char*>(data->d_buf) + desc_off, nhdr.n_descsz));
    }
    offset = next;
  }
  return "";
}

Result<std::string> BuildIdFromElfImage(std::string_view image) {
  InitLibelf();
  // elf_memory wants a mutable buffer (it may convert in place); work on a copy.
  std::string copy(image);
  ElfPtr elf(elf_memory(copy.data(), copy.size()));
  return BuildIdFromElf(elf.get());
}

namespace {
// `opened` tells a file we could read (whose answer is final) from one we could not reach.
Result<std::string> ReadBuildIdImpl(const std::string& path, bool* opened) {
  InitLibelf();
  *opened = false;
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return ErrnoError(errno, path);
  }
  *opened = true;
  ElfPtr elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
  Result<std::string> id = BuildIdFromElf(elf.get());
  if (!id.ok()) {
    return id.error().WithContext(path);
  }
  return id;
}
}  // namespace

Result<std::string> ReadBuildId(const std::string& path) {
  bool opened = false;
  return ReadBuildIdImpl(path, &opened);
}

Result<std::string> BuildIdCache::Get(const FileKey& key, const std::vector<std::string>& paths) {
  if (auto it = cache_.find(key); it != cache_.end()) {
    if (it->second.empty()) {
      return NotFound("no build id (cached)");
    }
    return it->second;
  }
  Status last = NotFound("no path to read");
  std::string id;
  bool final_answer = false;
  for (const std::string& path : paths) {
    bool opened = false;
    Result<std::string> r = ReadBuildIdImpl(path, &opened);
    if (r.ok()) {
      id = *r;
      final_answer = true;
      break;
    }
    last = r.error();
    // A file we could read but that has no note will not grow one through another path.
    if (opened) {
      final_answer = true;
      break;
    }
  }
  // Unreachable files (process gone, no permission) are not cached: the next process mapping
  // the same inode may succeed. Inode 0 is not a real file.
  if (final_answer && key.inode != 0) {
    if (cache_.size() >= max_entries_) {
      cache_.erase(cache_.begin());
    }
    cache_[key] = id;
  }
  if (id.empty()) {
    return last;
  }
  return id;
}

}  // namespace flamestream::proc
