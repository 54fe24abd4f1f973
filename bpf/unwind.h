/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Compact unwind tables shared by profile.bpf.c (kernel side) and libs/unwind (which builds them
 * from .eh_frame / .debug_frame) and libs/bpf (which loads them).
 *
 * A table belongs to one ELF file (one build id) and is shared by every process mapping it. It
 * is a sorted run of rows; a row's rule holds from its pc up to the next row's pc. pc is the ELF
 * virtual address minus the table's base (the lowest address the table covers), so 32 bits fit
 * any real object. The rules cover what x86-64 code needs:
 *
 *   CFA = rsp + cfa_offset | rbp + cfa_offset | the PLT expression | signal frame | end of stack
 *   return address at CFA - 8 (the x86-64 ABI; any other rule is FS_CFA_UNSUPPORTED)
 *   rbp unchanged, or saved at CFA + rbp_offset
 *
 * Anything else (other CFA registers, DWARF expressions, registers saved in registers) becomes
 * FS_CFA_UNSUPPORTED: the unwinder counts it and tries the frame pointer instead of guessing.
 * Addresses no FDE covers get FS_CFA_NONE rows (frame-pointer fallback, not counted as
 * unsupported).
 */
#ifndef FLAMESTREAM_BPF_UNWIND_H
#define FLAMESTREAM_BPF_UNWIND_H

enum fs_cfa_kind {
	FS_CFA_NONE = 0,        /* no CFI here: use the frame pointer */
	FS_CFA_RSP = 1,         /* CFA = rsp + cfa_offset */
	FS_CFA_RBP = 2,         /* CFA = rbp + cfa_offset */
	FS_CFA_PLT = 3,         /* CFA = rsp + 8 + ((rip & 15) >= cfa_offset ? 8 : 0) */
	FS_CFA_SIGNAL = 4,      /* __restore_rt: registers come from the ucontext at rsp */
	FS_CFA_END = 5,         /* return address undefined: the outermost frame (_start, clone3) */
	FS_CFA_UNSUPPORTED = 6, /* a rule the table cannot express */
};

enum fs_rbp_kind {
	FS_RBP_SAME = 0,        /* rbp keeps its value (same value or no rule) */
	FS_RBP_AT_CFA = 1,      /* rbp saved at CFA + rbp_offset */
};

struct fs_unwind_row {
	__u32 pc;         /* ELF vaddr - table base, where this row starts */
	__u8 cfa_kind;    /* enum fs_cfa_kind */
	__u8 rbp_kind;    /* enum fs_rbp_kind */
	__s16 rbp_offset; /* FS_RBP_AT_CFA: rbp is at CFA + rbp_offset (negative) */
	__s32 cfa_offset; /* FS_CFA_RSP / FS_CFA_RBP: the offset; FS_CFA_PLT: the rip & 15 threshold */
};

#endif /* FLAMESTREAM_BPF_UNWIND_H */
