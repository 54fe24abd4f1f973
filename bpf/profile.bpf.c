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
 * With cfi_unwind the walk follows the agent's unwind tables (.eh_frame rules,
 * bpf/unwind.h) and falls back to frame pointers per frame; see walk_step.
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
#include "unwind.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PF_KTHREAD 0x00200000

/* Word indices into the uapi x86_64 struct pt_regs (arch/x86/include/uapi/asm/ptrace.h). */
#define UAPI_REG_BP 4
#define UAPI_REG_SP 19
#define UAPI_REG_IP 16
#define UAPI_REG_CS 17

/* Options, fixed before load through the skeleton's rodata. */
const volatile bool filter_pids = false;  /* only tgids present in target_pids */
const volatile __u32 user_stack_depth = 512; /* <= FS_MAX_USER_STACK */
const volatile bool kernel_stacks = true;
const volatile bool user_stacks = true;
const volatile bool cfi_unwind = false;   /* walk with unwind tables, not only frame pointers */
const volatile bool process_events = true; /* exec/exit records in the ring */
const volatile __u64 off_cpu_threshold_ns = 0; /* record blocks at least this long; 0: off */
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

/* The sample under construction: ~9 KiB, far beyond the 512-byte BPF stack. Slot 0 for CPU
 * samples, 1 for off-CPU events. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct fs_sample);
} scratch SEC(".maps");

/* Threads switched out while blocked: tid -> the off-CPU record taken then (ts_ns = when it
 * blocked). Allocated on demand; an entry lives while its thread is blocked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384); /* resized by the loader */
	__type(key, __u32);
	__type(value, struct fs_off_cpu);
} off_cpu_pending SEC(".maps");

/* Unwind tables: see bpf/unwind.h. All three are sized by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_unwind_block);
} unwind_rows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_unwind_table);
} unwind_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_unwind_proc);
} unwind_procs SEC(".maps");

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

/*
 * The user-stack unwinder. Each step takes one frame (ip, sp, bp) to its caller's:
 *
 *   1. Find the row in force at ip: the process's mapping that holds ip (binary search in
 *      unwind_procs), that mapping's table (unwind_tables), and the last row whose pc <= the
 *      table-relative pc (binary search in the row pool). A return address points after the
 *      call, which may already be the next function, so for every frame but the interrupted
 *      one (and a frame a signal interrupted) we look up ip - 1.
 *   2. Apply the row: CFA = rsp/rbp + offset (or the PLT expression), the return address is
 *      at CFA - 8, rbp was saved at CFA + offset or kept, and the caller's rsp is the CFA. A
 *      signal frame (__restore_rt) restores all three from the ucontext the kernel pushed. A
 *      row saying "return address undefined" is the outermost frame: the stack is complete.
 *   3. With no row (no table for this mapping, code outside every FDE, an evicted table) or an
 *      unsupported rule, follow the frame pointer: [bp] is the caller's bp, [bp + 8] its
 *      return address, bp + 16 its rsp. A stack that must go through the frame pointer while
 *      bp is 0 has reached its end (_start and clone3 zero rbp).
 *
 * Every step must move rsp up (the stack grows down, callers live above), so garbage cannot
 * loop; bpf_loop bounds the walk at user_stack_depth frames.
 */
/* The walk's scalars live in a per-CPU map value, not on the stack: the verifier knows
 * nothing about a value loaded from a map, so every step (and every binary-search probe)
 * starts from the same abstract state and verifies once, instead of once per combination of
 * earlier branches (which runs into the 1M-instruction limit). */
struct walk_state {
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u64 pc;       /* the address looked up: ip, or ip - 1 for a return address */
	__u32 base;     /* index of the first user frame in s->frames */
	__u32 depth;    /* user frames written so far */
	__u32 cfi_frames;
	__u32 fp_frames;
	__u32 unsupported;
	__u32 missing;
	__u32 lo;       /* binary search bounds */
	__u32 hi;
	__u8 leaf;      /* ip is exact (interrupted), not a return address */
	__u8 stopped;   /* the walk ended before its step budget */
	__u8 complete;  /* ... at the outermost frame */
	__u8 failed;    /* ... because user memory could not be read */
	__u8 cached;    /* the c_* fields hold the last mapping and table found */
	struct fs_unwind_row row;
	/* Consecutive frames are mostly in the same file: the last mapping's table, so the next
	 * frame in it skips the mapping search and the table lookup. */
	__u64 c_start;
	__u64 c_end;
	__u64 c_shift;
	__u32 c_first;
	__u32 c_count;
	__u32 c_pc_end;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* as scratch: slot 0 CPU samples, 1 off-CPU */
	__type(key, __u32);
	__type(value, struct walk_state);
} walk_states SEC(".maps");

/* What bpf_loop hands each step: pointers only (constant across steps). */
struct walk_ctx {
	struct fs_sample *s;
	struct walk_state *st;
	struct fs_unwind_proc *proc; /* valid only when has_proc */
	bool has_proc;
};

/* The row in force at st->pc, into st->row (FS_CFA_NONE when no table covers it). */
static __always_inline void find_row(struct walk_state *st, struct fs_unwind_proc *proc)
{
	struct fs_unwind_mapping *m;
	struct fs_unwind_table *t;
	struct fs_unwind_block *b;
	__u32 lo, hi, mid, key, table_id, first, idx;
	__u64 rel;
	int j;

	st->row.cfa_kind = FS_CFA_NONE;
	if (st->cached && st->pc >= st->c_start && st->pc < st->c_end) {
		rel = st->pc - st->c_shift;
		first = st->c_first;
		if (rel >= st->c_pc_end)
			return;
		goto rows;
	}
	st->lo = 0;
	st->hi = proc->count;
	for (j = 0; j < 9; j++) { /* 2^9 > FS_MAX_PROC_MAPPINGS */
		lo = st->lo;
		hi = st->hi;
		if (lo >= hi || hi > FS_MAX_PROC_MAPPINGS)
			break;
		mid = (lo + hi) / 2;
		idx = mid;
		barrier_var(idx); /* keep the mask: clang drops it as implied by the checks */
		idx &= FS_MAX_PROC_MAPPINGS - 1;
		if (proc->mappings[idx].start <= st->pc)
			st->lo = mid + 1;
		else
			st->hi = mid;
	}
	lo = st->lo;
	if (lo == 0 || lo > FS_MAX_PROC_MAPPINGS)
		return;
	idx = lo - 1;
	barrier_var(idx);
	idx &= FS_MAX_PROC_MAPPINGS - 1;
	m = &proc->mappings[idx];
	if (st->pc >= m->end)
		return;
	table_id = m->table_id;
	rel = st->pc - m->shift;
	t = bpf_map_lookup_elem(&unwind_tables, &table_id);
	if (!t) {
		st->missing++;
		return;
	}
	st->c_start = m->start;
	st->c_end = m->end;
	st->c_shift = m->shift;
	st->c_first = t->first_row;
	st->c_count = t->row_count;
	st->c_pc_end = t->pc_end;
	st->cached = 1;
	if (rel >= t->pc_end)
		return;
	first = t->first_row;
rows:
	st->lo = first;
	st->hi = first + st->c_count;
	for (j = 0; j < 25; j++) { /* 2^25 rows: far beyond any one table */
		lo = st->lo;
		hi = st->hi;
		if (lo >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		key = mid / FS_UNWIND_BLOCK_ROWS;
		b = bpf_map_lookup_elem(&unwind_rows, &key);
		if (!b)
			return;
		idx = mid;
		barrier_var(idx);
		idx &= FS_UNWIND_BLOCK_ROWS - 1;
		if (b->rows[idx].pc <= rel)
			st->lo = mid + 1;
		else
			st->hi = mid;
	}
	lo = st->lo;
	if (lo <= first)
		return;
	key = (lo - 1) / FS_UNWIND_BLOCK_ROWS;
	b = bpf_map_lookup_elem(&unwind_rows, &key);
	idx = lo - 1;
	barrier_var(idx);
	idx &= FS_UNWIND_BLOCK_ROWS - 1;
	if (b)
		st->row = b->rows[idx];
}

static __always_inline long walk_stop(struct walk_state *st, bool complete, bool failed)
{
	st->stopped = 1;
	st->complete = complete;
	st->failed = failed;
	return 1;
}

static __always_inline long walk_push(struct fs_sample *s, struct walk_state *st)
{
	__u32 idx = st->base + st->depth;

	if (idx >= FS_MAX_KERNEL_STACK + FS_MAX_USER_STACK)
		return walk_stop(st, false, false);
	s->frames[idx] = st->ip;
	st->depth++;
	return 0;
}

static long walk_step(__u32 i, void *data)
{
	struct walk_ctx *w = data;
	struct walk_state *st = w->st;
	__u64 cfa, ra, saved[2], uc[7];
	__u8 kind;
	bool fp = false;

	st->pc = st->leaf ? st->ip : st->ip - 1;
	st->row.cfa_kind = FS_CFA_NONE;
	if (w->has_proc)
		find_row(st, w->proc);
	kind = st->row.cfa_kind;
	switch (kind) {
	case FS_CFA_END:
		st->cfi_frames++;
		return walk_stop(st, true, false);
	case FS_CFA_RSP:
		cfa = st->sp + st->row.cfa_offset;
		break;
	case FS_CFA_RBP:
		cfa = st->bp + st->row.cfa_offset;
		break;
	case FS_CFA_PLT:
		cfa = st->sp + 8 + ((st->ip & 15) >= (__u64)st->row.cfa_offset ? 8 : 0);
		break;
	case FS_CFA_SIGNAL:
		/* rsp points at the ucontext; its mcontext (struct sigcontext) starts at +40,
		 * rbp at +80 in it, then rbx, rdx, rax, rcx, rsp, rip. */
		if (bpf_probe_read_user(uc, sizeof(uc), (void *)(st->sp + 120)))
			return walk_stop(st, false, true);
		st->bp = uc[0];
		st->sp = uc[5];
		st->ip = uc[6];
		st->leaf = 1;
		st->cfi_frames++;
		if (st->ip == 0)
			return walk_stop(st, false, false);
		return walk_push(w->s, st);
	case FS_CFA_UNSUPPORTED:
		st->unsupported++;
		/* fall through */
	default:
		if (st->bp == 0)
			return walk_stop(st, true, false);
		if (st->bp & 7)
			return walk_stop(st, false, false);
		cfa = st->bp + 16;
		fp = true;
		break;
	}
	if (cfa <= st->sp || (cfa & 7))
		return walk_stop(st, false, false);
	if (fp || (st->row.rbp_kind == FS_RBP_AT_CFA && st->row.rbp_offset == -16)) {
		/* One read: saved rbp and the return address sit side by side. */
		if (bpf_probe_read_user(saved, sizeof(saved), (void *)(cfa - 16)))
			return walk_stop(st, false, true);
		st->bp = saved[0];
		ra = saved[1];
	} else {
		if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(cfa - 8)))
			return walk_stop(st, false, true);
		if (st->row.rbp_kind == FS_RBP_AT_CFA &&
		    bpf_probe_read_user(&st->bp, sizeof(st->bp),
					(void *)(cfa + st->row.rbp_offset)))
			return walk_stop(st, false, true);
	}
	if (fp)
		st->fp_frames++;
	else
		st->cfi_frames++;
	if (ra == 0)
		return walk_stop(st, true, false);
	st->sp = cfa;
	st->ip = ra;
	st->leaf = 0;
	return walk_push(w->s, st);
}

static __always_inline void add_stat(__u32 stat, __u64 n)
{
	__u64 *v;

	if (n == 0)
		return;
	v = bpf_map_lookup_elem(&stats, &stat);
	if (v)
		*v += n;
}

/*
 * Fills a sample record (header, kernel stack, user stack) for the current task in this
 * program's scratch slot and returns it, its byte size in *size (NULL if no scratch).
 * uapi_regs: the interrupted registers when they are user registers or when the perf context
 * has them; NULL takes the user registers the task saved at kernel entry (off-CPU: the task
 * is in the scheduler). slot picks this program's scratch (a sample can interrupt the off-CPU
 * program on the same CPU, so they must not share one).
 */
static __always_inline struct fs_sample *fill(void *ctx, const __u64 *uapi_regs, bool in_kernel,
					      __u32 kind, __u32 max_user, __u32 kskip, __u32 slot,
					      __u64 *size)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = (__u32)id;
	struct task_struct *task;
	struct fs_sample *s;
	struct pt_regs *uregs;
	struct walk_state *st;
	struct fs_unwind_proc *proc;
	__u64 ip, sp, fp;
	long kbytes = 0;
	__u32 kdepth = 0, udepth = 0, flags = 0;

	s = bpf_map_lookup_elem(&scratch, &slot);
	if (!s)
		return NULL;

	s->hdr.ts_ns = bpf_ktime_get_ns();
	s->hdr.kind = kind;
	s->hdr.pid = tgid;
	s->hdr.tid = tid;
	s->hdr.cpu = bpf_get_smp_processor_id();
	s->hdr.value = 0;
	bpf_get_current_comm(s->hdr.comm, sizeof(s->hdr.comm));
	if (in_kernel)
		flags |= FS_FLAG_IN_KERNEL;

	if (kernel_stacks && in_kernel) {
		kbytes = bpf_get_stack(ctx, s->frames, FS_MAX_KERNEL_STACK * sizeof(__u64),
				       kskip & BPF_F_SKIP_FIELD_MASK);
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
		if (in_kernel || !uapi_regs) {
			uregs = (struct pt_regs *)bpf_task_pt_regs(task);
			ip = BPF_CORE_READ(uregs, ip);
			sp = BPF_CORE_READ(uregs, sp);
			fp = BPF_CORE_READ(uregs, bp);
		} else {
			ip = uapi_regs[UAPI_REG_IP];
			sp = uapi_regs[UAPI_REG_SP];
			fp = uapi_regs[UAPI_REG_BP];
		}
		st = bpf_map_lookup_elem(&walk_states, &slot);
		if (st && ip != 0 && kdepth < FS_MAX_KERNEL_STACK + FS_MAX_USER_STACK) {
			struct walk_ctx w = { .s = s, .st = st };
			__u32 steps = user_stack_depth < max_user ? user_stack_depth : max_user;

			__builtin_memset(st, 0, sizeof(*st));
			st->ip = ip;
			st->sp = sp;
			st->bp = fp;
			st->base = kdepth;
			st->depth = 1;
			st->leaf = 1;
			if (cfi_unwind) {
				proc = bpf_map_lookup_elem(&unwind_procs, &tgid);
				if (proc) {
					w.proc = proc;
					w.has_proc = true;
				} else {
					flags |= FS_FLAG_UNWIND_NO_PROC;
					count(FS_STAT_NO_PROC);
				}
			}
			/* The leaf is the interrupted pc itself, not a return address. */
			s->frames[kdepth] = ip;
			if (steps > FS_MAX_USER_STACK)
				steps = FS_MAX_USER_STACK;
			if (steps > 1)
				bpf_loop(steps - 1, walk_step, &w, 0);
			udepth = st->depth;
			if (udepth > FS_MAX_USER_STACK)
				udepth = FS_MAX_USER_STACK;
			add_stat(FS_STAT_CFI_FRAMES, st->cfi_frames);
			add_stat(FS_STAT_FP_FRAMES, st->fp_frames);
			add_stat(FS_STAT_UNSUPPORTED_FRAMES, st->unsupported);
			add_stat(FS_STAT_TABLE_MISSING, st->missing);
			if (st->failed) {
				flags |= FS_FLAG_USER_READ_FAILED;
				count(FS_STAT_USER_READ_FAILED);
			} else if (!st->stopped) {
				flags |= FS_FLAG_USER_TRUNCATED;
				count(FS_STAT_USER_TRUNCATED);
			}
			if (st->complete)
				flags |= FS_FLAG_USER_COMPLETE;
			else
				count(FS_STAT_INCOMPLETE_STACKS);
		}
	}

	s->hdr.flags = flags;
	s->hdr.kernel_depth = kdepth;
	s->hdr.user_depth = udepth;

	*size = sizeof(s->hdr) + (__u64)(kdepth + udepth) * sizeof(__u64);
	if (*size > sizeof(*s))
		*size = sizeof(*s);
	return s;
}

SEC("perf_event")
int profile_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	const __u64 *regs;
	struct fs_sample *s;
	__u64 size;

	if ((__u32)id == 0) {
		count(FS_STAT_IDLE);
		return 0;
	}
	if (!watched(id >> 32)) {
		count(FS_STAT_FILTERED);
		return 0;
	}
	/* The context's registers are the uapi x86_64 struct pt_regs, a fixed
	 * ABI the verifier only lets us read in whole 8-byte words (vmlinux.h
	 * may declare cs as a 16-bit field), hence the word indices. The low
	 * two bits of cs are the privilege level of the interrupted code; 3
	 * is user mode. */
	regs = (const __u64 *)&ctx->regs;
	s = fill(ctx, regs, (regs[UAPI_REG_CS] & 3) != 3, FS_EVENT_SAMPLE, FS_MAX_USER_STACK, 0, 0,
		 &size);
	if (!s)
		return 0;
	if (bpf_ringbuf_output(&events, s, size, wakeup_flags())) {
		count(FS_STAT_RING_DROPS);
		return 0;
	}
	count(FS_STAT_SAMPLES);
	return 0;
}

/*
 * Off-CPU time, from sched_switch alone (kprobes and fentry on finish_task_switch are not on
 * every kernel). When a watched thread switches out blocked (not preempted: sleeping, waiting
 * for I/O, a lock, a pipe), the tracepoint still runs in its context, with its memory mapped:
 * we record its kernel and user stacks then, into off_cpu_pending. When it switches back in
 * (it is `next` of a later sched_switch), the time since is how long it was off the CPU; at
 * or above off_cpu_threshold_ns the pending record goes to the ring with that value, below it
 * is dropped (counted). A user stack does not move while its thread is blocked, so this is
 * exactly the stack a switch-in hook would see. User stacks here stop at
 * FS_OFF_CPU_USER_STACK frames (the pending records' size).
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(profile_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 prev_tid = prev->pid, next_tid = next->pid;
	struct fs_off_cpu *pending;
	struct fs_sample *s;
	__u64 now, blocked, size;

	if (off_cpu_threshold_ns == 0)
		return 0;
	now = bpf_ktime_get_ns();
	pending = bpf_map_lookup_elem(&off_cpu_pending, &next_tid);
	if (pending) {
		blocked = now - pending->hdr.ts_ns;
		if (blocked >= off_cpu_threshold_ns) {
			pending->hdr.value = blocked;
			size = sizeof(pending->hdr) +
			       (__u64)(pending->hdr.kernel_depth + pending->hdr.user_depth) *
				       sizeof(__u64);
			if (size > sizeof(*pending))
				size = sizeof(*pending);
			if (bpf_ringbuf_output(&events, pending, size, wakeup_flags()))
				count(FS_STAT_RING_DROPS);
			else
				count(FS_STAT_OFF_CPU_EVENTS);
		} else {
			count(FS_STAT_OFF_CPU_SHORT);
		}
		bpf_map_delete_elem(&off_cpu_pending, &next_tid);
	}
	if (preempt || prev_state == 0 || prev_tid == 0 || (prev->flags & PF_KTHREAD) ||
	    !watched(prev->tgid))
		return 0;
	/* Skip this program and bpf_trace_run4: the stack starts at __schedule. */
	s = fill(ctx, NULL, true, FS_EVENT_OFF_CPU, FS_OFF_CPU_USER_STACK, 2, 1, &size);
	if (!s)
		return 0;
	if (s->hdr.kernel_depth + s->hdr.user_depth > FS_MAX_KERNEL_STACK + FS_OFF_CPU_USER_STACK)
		s->hdr.user_depth = FS_MAX_KERNEL_STACK + FS_OFF_CPU_USER_STACK - s->hdr.kernel_depth;
	if (bpf_map_update_elem(&off_cpu_pending, &prev_tid, s, BPF_ANY))
		count(FS_STAT_OFF_CPU_DROPS);
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
	if (!process_events || !watched(h.pid) || (__u32)(id >> 32) != h.pid)
		return;
	if (bpf_ringbuf_output(&events, &h, sizeof(h), wakeup_flags()))
		count(FS_STAT_RING_DROPS);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(profile_exec, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);

	/* The old mappings are gone: until the agent loads the new ones, frame pointers. */
	if (cfi_unwind)
		bpf_map_delete_elem(&unwind_procs, &tgid);
	emit_process_event(p, FS_EVENT_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(profile_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	struct fs_unwind_proc *proc;

	/* A new thread shares its process's entry. A new process starts with a copy of its
	 * parent's mappings, so it unwinds with CFI from its first sample. */
	if (!cfi_unwind || child_tgid == parent_tgid)
		return 0;
	proc = bpf_map_lookup_elem(&unwind_procs, &parent_tgid);
	if (proc)
		bpf_map_update_elem(&unwind_procs, &child_tgid, proc, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(profile_exit, struct task_struct *p)
{
	/* Fires for every thread. The process ends with its last thread, which
	 * need not be the group leader (the main thread may pthread_exit()
	 * first): do_exit() decrements signal->live before this tracepoint, so
	 * zero means the whole thread group is gone. */
	__u32 tgid = BPF_CORE_READ(p, tgid);

	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	if (cfi_unwind)
		bpf_map_delete_elem(&unwind_procs, &tgid);
	emit_process_event(p, FS_EVENT_EXIT);
	return 0;
}
