// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Flamestream CPU sampler.
 *
 * One perf_event program runs on every CPU from a software cpu-clock event
 * (pid = -1, cpu = N). Each run writes one variable-length record to a ring
 * buffer: who was on the CPU, the kernel stack (bpf_get_stack) and the user
 * stack, which we unwind ourselves by following frame pointers. We do the
 * walk in BPF rather than with BPF_F_USER_STACK because bpf_get_stack stops
 * at perf_event_max_stack (127) and deep recursion, JIT runtimes and
 * interpreters routinely go past that.
 *
 * Two tracepoints report execve() and process exit, so user space refreshes
 * or drops its /proc/<pid>/maps cache at the right moment instead of
 * guessing from misses, and the agent retires the process's record on the
 * processes topic when its last thread exits.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "profile.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PF_KTHREAD 0x00200000

/* Word indices into the uapi x86_64 struct pt_regs (arch/x86/include/uapi/asm/ptrace.h). */
#define UAPI_REG_BP 4
#define UAPI_REG_IP 16
#define UAPI_REG_CS 17

/* Options, fixed before load through the skeleton's rodata. */
const volatile bool filter_pids = false;  /* only tgids present in target_pids */
const volatile __u32 user_stack_depth = 512; /* <= FS_MAX_USER_STACK */
const volatile bool kernel_stacks = true;
const volatile bool user_stacks = true;
const volatile __u32 exclude_tgid = 0;    /* the agent itself */
/* Wake the reader only once this much is queued; it also drains on a timer.
 * Waking it per sample costs a context switch per sample at 999 Hz. */
const volatile __u64 wakeup_bytes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024); /* resized by the loader */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* resized by the loader */
	__type(key, __u32);   /* host tgid */
	__type(value, __u8);
} target_pids SEC(".maps");

/* The sample under construction: ~9 KiB, far beyond the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_sample);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FS_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &stat);

	if (v)
		*v += 1;
}

static __always_inline bool watched(__u32 tgid)
{
	if (tgid == exclude_tgid && exclude_tgid != 0)
		return false;
	if (!filter_pids)
		return true;
	return bpf_map_lookup_elem(&target_pids, &tgid) != NULL;
}

static __always_inline __u64 wakeup_flags(void)
{
	if (wakeup_bytes == 0)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
		       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

struct walk_ctx {
	struct fs_sample *s;
	__u64 fp;
	__u32 base;  /* index of the first user frame in s->frames */
	__u32 depth; /* user frames written so far */
	bool failed;
};

/*
 * One step of the frame-pointer chain. With frame pointers a frame looks like
 *   [fp]     caller's fp
 *   [fp + 8] return address into the caller
 * The chain ends at fp == 0 (the outermost frame, as set up by _start) or at
 * anything that does not look like a frame: fp not moving towards higher
 * addresses (the stack grows down, so callers live above) would loop forever.
 */
static long walk_step(__u32 i, void *data)
{
	struct walk_ctx *w = data;
	__u64 frame[2];
	__u32 idx;

	if (w->fp == 0 || (w->fp & 7))
		return 1;
	if (bpf_probe_read_user(frame, sizeof(frame), (void *)w->fp)) {
		w->failed = true;
		return 1;
	}
	if (frame[1] == 0)
		return 1;
	idx = w->base + w->depth;
	if (idx >= FS_MAX_KERNEL_STACK + FS_MAX_USER_STACK)
		return 1;
	w->s->frames[idx] = frame[1];
	w->depth++;
	if (frame[0] <= w->fp) {
		w->fp = 0;
		return 1;
	}
	w->fp = frame[0];
	return 0;
}

SEC("perf_event")
int profile_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = (__u32)id;
	__u32 zero = 0;
	struct task_struct *task;
	struct fs_sample *s;
	struct pt_regs *uregs;
	const __u64 *regs;
	__u64 ip, fp, size;
	long kbytes = 0;
	__u32 kdepth = 0, udepth = 0, flags = 0;
	bool in_kernel;

	if (tid == 0) {
		count(FS_STAT_IDLE);
		return 0;
	}
	if (!watched(tgid)) {
		count(FS_STAT_FILTERED);
		return 0;
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;

	s->hdr.ts_ns = bpf_ktime_get_ns();
	s->hdr.kind = FS_EVENT_SAMPLE;
	s->hdr.pid = tgid;
	s->hdr.tid = tid;
	s->hdr.cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(s->hdr.comm, sizeof(s->hdr.comm));

	/* The context's registers are the uapi x86_64 struct pt_regs, a fixed
	 * ABI the verifier only lets us read in whole 8-byte words (vmlinux.h
	 * may declare cs as a 16-bit field), hence the word indices. The low
	 * two bits of cs are the privilege level of the interrupted code; 3
	 * is user mode. */
	regs = (const __u64 *)&ctx->regs;
	in_kernel = (regs[UAPI_REG_CS] & 3) != 3;
	if (in_kernel)
		flags |= FS_FLAG_IN_KERNEL;

	if (kernel_stacks && in_kernel) {
		kbytes = bpf_get_stack(ctx, s->frames, FS_MAX_KERNEL_STACK * sizeof(__u64), 0);
		if (kbytes > 0) {
			kdepth = kbytes / sizeof(__u64);
			if (kdepth >= FS_MAX_KERNEL_STACK) {
				kdepth = FS_MAX_KERNEL_STACK;
				flags |= FS_FLAG_KERNEL_TRUNCATED;
				count(FS_STAT_KERNEL_TRUNCATED);
			}
		}
	}

	task = bpf_get_current_task_btf();
	if (task->flags & PF_KTHREAD) {
		flags |= FS_FLAG_KERNEL_THREAD;
	} else if (user_stacks) {
		/* In kernel mode ctx->regs are kernel registers; the user ones were
		 * saved at kernel entry, at the top of the task's kernel stack. */
		if (in_kernel) {
			uregs = (struct pt_regs *)bpf_task_pt_regs(task);
			ip = BPF_CORE_READ(uregs, ip);
			fp = BPF_CORE_READ(uregs, bp);
		} else {
			ip = regs[UAPI_REG_IP];
			fp = regs[UAPI_REG_BP];
		}
		if (ip != 0 && kdepth < FS_MAX_KERNEL_STACK + FS_MAX_USER_STACK) {
			struct walk_ctx w = {
				.s = s,
				.fp = fp,
				.base = kdepth,
				.depth = 1,
			};
			__u32 steps = user_stack_depth;

			/* The leaf is the interrupted pc itself, not a return address. */
			s->frames[kdepth] = ip;
			if (steps > FS_MAX_USER_STACK)
				steps = FS_MAX_USER_STACK;
			if (steps > 1)
				bpf_loop(steps - 1, walk_step, &w, 0);
			udepth = w.depth;
			if (w.failed) {
				flags |= FS_FLAG_USER_READ_FAILED;
				count(FS_STAT_USER_READ_FAILED);
			} else if (udepth >= steps && w.fp != 0) {
				flags |= FS_FLAG_USER_TRUNCATED;
				count(FS_STAT_USER_TRUNCATED);
			}
		}
	}

	s->hdr.flags = flags;
	s->hdr.kernel_depth = kdepth;
	s->hdr.user_depth = udepth;

	size = sizeof(s->hdr) + (__u64)(kdepth + udepth) * sizeof(__u64);
	if (size > sizeof(*s))
		size = sizeof(*s);
	if (bpf_ringbuf_output(&events, s, size, wakeup_flags())) {
		count(FS_STAT_RING_DROPS);
		return 0;
	}
	count(FS_STAT_SAMPLES);
	return 0;
}

static __always_inline void emit_process_event(struct task_struct *p, __u32 kind)
{
	struct fs_event_header h = {};
	__u64 id = bpf_get_current_pid_tgid();

	h.ts_ns = bpf_ktime_get_ns();
	h.kind = kind;
	h.pid = BPF_CORE_READ(p, tgid);
	h.tid = BPF_CORE_READ(p, pid);
	h.cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(h.comm, sizeof(h.comm));
	if (!watched(h.pid) || (__u32)(id >> 32) != h.pid)
		return;
	if (bpf_ringbuf_output(&events, &h, sizeof(h), wakeup_flags()))
		count(FS_STAT_RING_DROPS);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(profile_exec, struct task_struct *p)
{
	emit_process_event(p, FS_EVENT_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(profile_exit, struct task_struct *p)
{
	/* Fires for every thread. The process ends with its last thread, which
	 * need not be the group leader (the main thread may pthread_exit()
	 * first): do_exit() decrements signal->live before this tracepoint, so
	 * zero means the whole thread group is gone. */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	emit_process_event(p, FS_EVENT_EXIT);
	return 0;
}
