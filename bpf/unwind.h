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

/*
 * How the agent hands tables to the BPF unwinder (libs/bpf/unwinder.cc writes, profile.bpf.c reads):
 *
 *   unwind_rows    ARRAY of struct fs_unwind_block: one pool of rows for every table; a table is the run [first_row, first_row + row_count). Rows are
 *                  12 bytes, but array elements are padded to 8 bytes, so they travel in blocks
 *                  of FS_UNWIND_BLOCK_ROWS (96 bytes): row i is block i / 8, slot i % 8.
 *   unwind_tables  HASH table id -> struct fs_unwind_table. Ids are never reused: a process
 *                  entry that still names an evicted table misses and falls back to frame
 *                  pointers instead of reading someone else's rows.
 *   unwind_procs   HASH host tgid -> struct fs_unwind_proc: the process's executable mappings
 *                  that have tables, sorted by start. Copied to the child at fork (same
 *                  mappings), deleted at exec and exit.
 */
#define FS_UNWIND_BLOCK_ROWS 8
#define FS_MAX_PROC_MAPPINGS 256

struct fs_unwind_block {
	struct fs_unwind_row rows[FS_UNWIND_BLOCK_ROWS];
};

struct fs_unwind_table {
	__u32 first_row; /* index into the row pool */
	__u32 row_count;
	__u32 pc_end;    /* rows cover pc < pc_end (table end - table base) */
	__u32 reserved;
};

struct fs_unwind_mapping {
	__u64 start;    /* runtime address range of the executable mapping */
	__u64 end;      /* exclusive */
	__u64 shift;    /* row pc = address - shift (load bias + table base) */
	__u32 table_id; /* key in unwind_tables */
	__u32 reserved;
};

struct fs_unwind_proc {
	__u32 count; /* entries used in mappings[], sorted by start, non-overlapping */
	__u32 reserved;
	struct fs_unwind_mapping mappings[FS_MAX_PROC_MAPPINGS];
};

#endif /* FLAMESTREAM_BPF_UNWIND_H */
