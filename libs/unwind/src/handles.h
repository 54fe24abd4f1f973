// RAII owners of the elfutils handles the table builder uses.
#pragma once

#include <elfutils/libdw.h>
#include <libelf.h>

#include <cstdlib>
#include <memory>

namespace flamestream::unwind {

struct ElfDeleter {
  void operator()(Elf* e) const { elf_end(e); }
};
using ElfHandle = std::unique_ptr<Elf, ElfDeleter>;

struct DwarfDeleter {
  void operator()(Dwarf* d) const { dwarf_end(d); }
};
using DwarfHandle = std::unique_ptr<Dwarf, DwarfDeleter>;

// dwarf_getcfi_elf's CFI (.eh_frame); dwarf_getcfi's (.debug_frame) belongs to its Dwarf.
struct CfiDeleter {
  void operator()(Dwarf_CFI* c) const { dwarf_cfi_end(c); }
};
using CfiHandle = std::unique_ptr<Dwarf_CFI, CfiDeleter>;

// dwarf_cfi_addrframe mallocs each frame.
struct FrameDeleter {
  void operator()(Dwarf_Frame* f) const {
    std::free(f);  // NOLINT(cppcoreguidelines-no-malloc,cppcoreguidelines-owning-memory)
  }
};
using FrameHandle = std::unique_ptr<Dwarf_Frame, FrameDeleter>;

}  // namespace flamestream::unwind
