// The GNU build id in one chunk of ELF notes (a PT_NOTE segment or an SHT_NOTE section), for
// code that already holds a libelf handle (proc's ReadBuildId, the symbolizer's ELF reader, the
// unwind-table builder) and decides itself which note chunks to look at, in which order.
//
//   std::string id = GnuBuildIdFromNotes(elf_getdata(scn, nullptr));   // "" if none
#pragma once

#include <libelf.h>

#include <string>

namespace flamestream::proc {

// Lower-case hex build id of the first well-formed NT_GNU_BUILD_ID note in `data`; "" when
// there is none (or `data` is null). Notes running past the chunk are ignored.
std::string GnuBuildIdFromNotes(Elf_Data* data);

}  // namespace flamestream::proc
