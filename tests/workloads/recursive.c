/*
 * Deep-stack workload: recurse(depth) calls itself `depth` times (default 600, beyond the
 * 127-frame perf_event_max_stack) and burns CPU at the bottom.
 *   fs-workload-recursive [seconds] [depth]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

volatile unsigned long sink;

__attribute__((noinline)) void bottom(double end)
{
	while (now() < end) {
		for (unsigned long i = 0; i < 200000; i++)
			sink += i;
	}
}

__attribute__((noinline)) void recurse(int depth, double end)
{
	if (depth <= 0)
		bottom(end);
	else
		recurse(depth - 1, end);
	sink++; /* not a tail call */
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10;
	int depth = argc > 2 ? atoi(argv[2]) : 600;
	printf("ready\n");
	fflush(stdout);
	recurse(depth, now() + seconds);
	return 0;
}
