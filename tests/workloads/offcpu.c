/*
 * Off-CPU workload: threads that block in known functions for known times.
 *   fs-workload-offcpu SECONDS
 *     main thread  sleeper():      nanosleep 20 ms, back to back
 *     thread 2     pipe_reader():  read() on a pipe thread 3 writes to every 50 ms
 *     thread 3     pipe_writer():  nanosleep 50 ms, then one byte into the pipe
 *     thread 4     short_sleeper(): nanosleep 100 us, back to back (below a 1 ms threshold)
 * Built with frame pointers off (GCC's -O2 default): the off-CPU stacks unwind by CFI too.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double t_end;
static int fds[2];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(long ns)
{
	struct timespec t = { ns / 1000000000L, ns % 1000000000L };
	nanosleep(&t, NULL);
}

__attribute__((noinline)) void sleeper(void)
{
	nap(20000000L);
}

__attribute__((noinline)) void pipe_reader(void)
{
	char c;
	if (read(fds[0], &c, 1) < 0)
		perror("read");
}

__attribute__((noinline)) void pipe_writer(void)
{
	nap(50000000L);
	if (write(fds[1], "x", 1) < 0)
		perror("write");
}

__attribute__((noinline)) void short_sleeper(void)
{
	nap(100000L);
}

static void *reader_main(void *arg)
{
	(void)arg;
	while (now() < t_end)
		pipe_reader();
	return NULL;
}

static void *writer_main(void *arg)
{
	(void)arg;
	while (now() < t_end + 0.1)
		pipe_writer();
	return NULL;
}

static void *short_main(void *arg)
{
	(void)arg;
	while (now() < t_end)
		short_sleeper();
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t r, w, s;

	t_end = now() + (argc > 1 ? atof(argv[1]) : 10);
	if (pipe(fds) != 0)
		return 1;
	pthread_create(&r, NULL, reader_main, NULL);
	pthread_create(&w, NULL, writer_main, NULL);
	pthread_create(&s, NULL, short_main, NULL);
	printf("ready\n");
	fflush(stdout);
	while (now() < t_end)
		sleeper();
	pthread_join(r, NULL);
	pthread_join(w, NULL);
	pthread_join(s, NULL);
	return 0;
}
