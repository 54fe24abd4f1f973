#include "flamestream/symbols/elf_file.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string_view>

#include "flamestream/common/fd.h"
#include "flamestream/common/strings.h"
#include "flamestream/proc/elf_notes.h"

namespace flamestream::symbols {
namespace {

struct ElfDeleter {
  void operator()(Elf* e) const { elf_end(e); }
};
using ElfHandle = std::unique_ptr<Elf, ElfDeleter>;

// libelf wants its version negotiated once per process before any elf_begin().
void InitLibelfOnce() {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
}

std::string ElfErr() { return elf_errmsg(-1) != nullptr ? elf_errmsg(-1) : "unknown libelf error"; }

}  // namespace

Result<uint64_t> ElfInfo::FileOffsetToVaddr(uint64_t file_offset) const {
  if (!segments_have_file_data) {
    return FailedPrecondition("{} has no file-backed PT_LOAD segments (a separate debug file?)",
                              path);
  }
  for (const LoadSegment& seg : segments) {
    if (file_offset >= seg.offset && file_offset - seg.offset < seg.filesz) {
      return file_offset - seg.offset + seg.vaddr;
    }
  }
  return OutOfRange("file offset {:#x} is in no PT_LOAD segment of {}", file_offset, path);
}

Result<ElfInfo> ReadElfInfo(const std::string& path) {
  InitLibelfOnce();
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return ErrnoError(errno, fmt::format("open {}", path));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return ErrnoError(errno, fmt::format("stat {}", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgument("{} is not a regular file", path);
  }
  ElfHandle elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
  if (!elf) {
    return DataLoss("{}: {}", path, ElfErr());
  }
  if (elf_kind(elf.get()) != ELF_K_ELF) {
    return InvalidArgument("{} is not an ELF file", path);
  }
  GElf_Ehdr ehdr;
  if (gelf_getehdr(elf.get(), &ehdr) == nullptr) {
    return DataLoss("{}: bad ELF header: {}", path, ElfErr());
  }
  ElfInfo info;
  info.path = path;
  info.file_size = static_cast<uint64_t>(st.st_size);

  size_t phnum = 0;
  if (elf_getphdrnum(elf.get(), &phnum) != 0) {
    return DataLoss("{}: bad program headers: {}", path, ElfErr());
  }
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr phdr;
    if (gelf_getphdr(elf.get(), static_cast<int>(i), &phdr) == nullptr) {
      return DataLoss("{}: bad program header {}: {}", path, i, ElfErr());
    }
    if (phdr.p_type == PT_LOAD) {
      info.segments.push_back({phdr.p_offset, phdr.p_vaddr, phdr.p_filesz, phdr.p_memsz});
      // Debug files keep a few bytes of the first (read-only) segment but none of the code.
      if ((phdr.p_flags & PF_X) != 0 && phdr.p_filesz > 0) {
        info.segments_have_file_data = true;
      }
    }
  }

  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf.get(), &shstrndx) != 0) {
    return DataLoss("{}: bad section header string table: {}", path, ElfErr());
  }
  for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn != nullptr;
       scn = elf_nextscn(elf.get(), scn)) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr) == nullptr) {
      return DataLoss("{}: bad section header: {}", path, ElfErr());
    }
    const char* raw_name = elf_strptr(elf.get(), shstrndx, shdr.sh_name);
    std::string_view name = raw_name != nullptr ? raw_name : "";
    bool has_bytes = shdr.sh_type != SHT_NOBITS && shdr.sh_size > 0;
    if (has_bytes && shdr.sh_offset + shdr.sh_size > info.file_size) {
      return DataLoss("{}: section {} extends past the end of the file", path, name);
    }
    if (name == ".debug_info" || name == ".zdebug_info") {
      info.has_dwarf = info.has_dwarf || has_bytes;
    } else if (shdr.sh_type == SHT_SYMTAB) {
      info.has_symtab = shdr.sh_size > shdr.sh_entsize;
    } else if (shdr.sh_type == SHT_DYNSYM) {
      info.has_dynsym = shdr.sh_size > shdr.sh_entsize;
    } else if (shdr.sh_type == SHT_NOTE && info.build_id.empty() && has_bytes) {
      info.build_id = proc::GnuBuildIdFromNotes(elf_getdata(scn, nullptr));
    } else if (name == ".gnu_debuglink" && has_bytes) {
      Elf_Data* data = elf_getdata(scn, nullptr);
      if (data == nullptr || data->d_size < 8) {
        return DataLoss("{}: malformed .gnu_debuglink", path);
      }
      const auto* bytes = static_cast<const char*>(data->d_buf);
      size_t len = strnlen(bytes, data->d_size);
      size_t crc_off = (len + 4) & ~size_t{3};  // NUL-terminated name, padded to 4 bytes
      if (len == 0 || crc_off + 4 > data->d_size) {
        return DataLoss("{}: malformed .gnu_debuglink", path);
      }
      DebugLink link;
      link.name.assign(bytes, len);
      std::memcpy(&link.crc, bytes + crc_off, 4);
      if ((ehdr.e_ident[EI_DATA] == ELFDATA2MSB) != (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)) {
        link.crc = __builtin_bswap32(link.crc);
      }
      info.debug_link = std::move(link);
    }
  }
  // Binaries without section headers (rare, e.g. sstrip) keep the build id in PT_NOTE.
  if (info.build_id.empty()) {
    for (size_t i = 0; i < phnum; ++i) {
      GElf_Phdr phdr;
      if (gelf_getphdr(elf.get(), static_cast<int>(i), &phdr) != nullptr &&
          phdr.p_type == PT_NOTE && phdr.p_filesz > 0 &&
          phdr.p_offset + phdr.p_filesz <= info.file_size) {
        Elf_Data* data = elf_getdata_rawchunk(elf.get(), static_cast<int64_t>(phdr.p_offset),
                                              phdr.p_filesz, ELF_T_NHDR);
        info.build_id = proc::GnuBuildIdFromNotes(data);
        if (!info.build_id.empty()) {
          break;
        }
      }
    }
  }
  return info;
}

Result<uint32_t> FileCrc32(const std::string& path) {
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return ErrnoError(errno, fmt::format("open {}", path));
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  std::unique_ptr<unsigned char[]> buf(new unsigned char[1 << 16]);
  while (true) {
    ssize_t n = ::read(fd.get(), buf.get(), 1 << 16);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoError(errno, fmt::format("read {}", path));
    }
    if (n == 0) {
      break;
    }
    crc = crc32(crc, buf.get(), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace flamestream::symbols
