/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Events shared by profile.bpf.c (kernel side) and libs/bpf (user side).
 *
 * Plain __u32/__u64 only, so both compilers agree on the layout. Every
 * record in the ring buffer starts with struct fs_event_header; a sample is
 * a header, then kernel_depth kernel addresses, then user_depth user
 * addresses (leaf first in both), and is written with just that length so a
 * typical 20-frame stack costs ~250 bytes of ring instead of the 9 KiB
 * worst case.
 */
#ifndef FLAMESTREAM_BPF_PROFILE_H
#define FLAMESTREAM_BPF_PROFILE_H

#define FS_TASK_COMM_LEN 16
/* bpf_get_stack() stops at perf_event_max_stack (127 by default). */
#define FS_MAX_KERNEL_STACK 127
/* Our own frame-pointer walk has no such limit; this is the hard cap the
 * scratch buffer is sized for (the runtime limit is user_stack_depth). */
#define FS_MAX_USER_STACK 1024

enum fs_event_kind {
	FS_EVENT_SAMPLE = 1,
	FS_EVENT_EXEC = 2, /* a process called execve(): its mappings changed */
	FS_EVENT_EXIT = 3, /* the last thread of a process exited */
	FS_EVENT_OFF_CPU = 4, /* a thread ran again after blocking; value = ns off the CPU */
};

enum fs_sample_flags {
	FS_FLAG_USER_TRUNCATED = 1 << 0,   /* walk stopped at user_stack_depth */
	FS_FLAG_KERNEL_TRUNCATED = 1 << 1, /* kernel stack hit FS_MAX_KERNEL_STACK */
	FS_FLAG_USER_READ_FAILED = 1 << 2, /* a frame could not be read (paged out, bad fp) */
	FS_FLAG_IN_KERNEL = 1 << 3,        /* the sample interrupted kernel mode */
	FS_FLAG_KERNEL_THREAD = 1 << 4,    /* no user space at all */
	FS_FLAG_USER_COMPLETE = 1 << 5,    /* the walk reached the outermost frame (_start,
					    * clone3: CFI says "return address undefined",
					    * or the frame-pointer chain ended at fp == 0) */
	FS_FLAG_UNWIND_NO_PROC = 1 << 6,   /* CFI unwinding on, but no tables for this
					    * process yet: frame pointers only */
};

/* Per-CPU counters, indexed by enum fs_stat. */
enum fs_stat {
	FS_STAT_SAMPLES = 0,     /* samples written to the ring */
	FS_STAT_RING_DROPS,      /* bpf_ringbuf_output() failed: ring full */
	FS_STAT_FILTERED,        /* samples of processes we do not watch */
	FS_STAT_USER_TRUNCATED,
	FS_STAT_KERNEL_TRUNCATED,
	FS_STAT_USER_READ_FAILED,
	FS_STAT_IDLE,            /* samples of the idle task, skipped */
	FS_STAT_CFI_FRAMES,      /* user frames found through an unwind table row */
	FS_STAT_FP_FRAMES,       /* user frames found by following the frame pointer */
	FS_STAT_UNSUPPORTED_FRAMES, /* frames whose CFI rule the table cannot express (fp used) */
	FS_STAT_TABLE_MISSING,   /* frames in a mapping whose table was evicted (fp used) */
	FS_STAT_INCOMPLETE_STACKS, /* user stacks that ended before the outermost frame */
	FS_STAT_NO_PROC,         /* samples of processes without unwind tables yet */
	FS_STAT_OFF_CPU_EVENTS,  /* off-CPU events written to the ring */
	FS_STAT_OFF_CPU_SHORT,   /* blocks shorter than the threshold, not recorded */
	FS_STAT_OFF_CPU_DROPS,   /* blocked threads beyond the pending map's capacity */
	FS_STAT_COUNT,
};

struct fs_event_header {
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 kind;  /* enum fs_event_kind */
	__u32 pid;   /* host tgid */
	__u32 tid;   /* host thread id */
	__u32 cpu;
	__u32 flags; /* enum fs_sample_flags */
	__u16 kernel_depth;
	__u16 user_depth;
	char comm[FS_TASK_COMM_LEN];
	__u64 value; /* FS_EVENT_OFF_CPU: ns the thread was off the CPU; else 0 */
};

/* Off-CPU records wait in a map while their thread is blocked: user stacks up to this deep. */
#define FS_OFF_CPU_USER_STACK 256

struct fs_off_cpu {
	struct fs_event_header hdr;
	__u64 frames[FS_MAX_KERNEL_STACK + FS_OFF_CPU_USER_STACK];
};

struct fs_sample {
	struct fs_event_header hdr;
	/* kernel_depth entries of kernel[], then user_depth user addresses;
	 * stored contiguously in this order when written to the ring. */
	__u64 frames[FS_MAX_KERNEL_STACK + FS_MAX_USER_STACK];
};

#endif /* FLAMESTREAM_BPF_PROFILE_H */
