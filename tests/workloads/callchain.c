/*
 * Test workload with a known call chain: main -> outer -> middle -> leaf, where leaf burns
 * CPU. Built -O0 -fno-omit-frame-pointer -fno-inline so every function keeps its frame.
 *   fs-workload-callchain [seconds]   (default 10)
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

__attribute__((noinline)) void leaf(double end)
{
	while (now() < end) {
		for (unsigned long i = 0; i < 200000; i++)
			sink += i * i;
	}
}

__attribute__((noinline)) void middle(double end)
{
	leaf(end);
	sink++;
}

__attribute__((noinline)) void outer(double end)
{
	middle(end);
	sink++;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10;
	printf("ready\n");
	fflush(stdout);
	outer(now() + seconds);
	return (int)(sink & 0);
}
