/*
 * Test workload with named threads: the main thread (comm "fs-workload-thr", the process
 * name) starts N worker threads that name themselves "fs-worker-<i>" with
 * pthread_setname_np() and burn CPU in spin(), while the main thread only waits.
 * Built -O0 -fno-omit-frame-pointer -fno-inline so every function keeps its frame.
 *   fs-workload-threads [seconds] [threads]   (default 10 s, 2 threads)
 * Prints "ready" once every worker has named itself.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static atomic_int named;
static double end_time;
static volatile unsigned long sink;

__attribute__((noinline)) static void spin(void)
{
	while (now() < end_time) {
		for (unsigned long i = 0; i < 200000; i++)
			sink += i * i;
	}
}

static void *worker(void *arg)
{
	char name[16];

	snprintf(name, sizeof(name), "fs-worker-%d", (int)(long)arg);
	pthread_setname_np(pthread_self(), name);
	atomic_fetch_add(&named, 1);
	spin();
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10;
	int n = argc > 2 ? atoi(argv[2]) : 2;
	pthread_t *threads;

	if (n < 1 || n > 64)
		return 2;
	threads = calloc((size_t)n, sizeof(*threads));
	if (!threads)
		return 1;
	end_time = now() + seconds;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&threads[i], NULL, worker, (void *)(long)(i + 1)) != 0)
			return 1;
	}
	while (atomic_load(&named) < n) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	printf("ready\n");
	fflush(stdout);
	for (int i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	return (int)(sink & 0);
}
