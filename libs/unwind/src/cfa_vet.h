// Vets a CFA instruction stream before libdw runs it. libdw sizes its register file by the
// highest register number an instruction names and copies that file at every
// DW_CFA_remember_state, so one corrupt ULEB128 (a register 2^27) makes it allocate gigabytes
// (found by fuzz/unwind_table.cc). Real x86-64 CFI names registers below 130 and nests
// remember_state a few levels deep; anything else is refused before libdw sees it.
#pragma once

#include <cstdint>
#include <span>

namespace flamestream::unwind {

// The highest DWARF register number of x86-64 (k7 is 125) with some room.
inline constexpr uint64_t kMaxCfiRegister = 255;
inline constexpr int kMaxRememberDepth = 64;

// True when every instruction of `insns` decodes, names registers <= kMaxCfiRegister and keeps
// the remember_state depth <= kMaxRememberDepth. `address_size` is DW_CFA_set_loc's operand
// size (the FDE pointer encoding's; 8 for .debug_frame).
bool CfaInstructionsSafe(std::span<const uint8_t> insns, unsigned address_size);

}  // namespace flamestream::unwind
