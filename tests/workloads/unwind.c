/*
 * Frame-pointer-less workload for the BPF unwinder's tests: built with GCC's -O2 default
 * (-fomit-frame-pointer), like Debian's own binaries. The hot leaves run in libm (through
 * fs_uw_hot in the shared library libfs-uwlib.so, also frameless) and in own_loop here.
 *
 *   fs-workload-unwind[-nopie] spin SECONDS           main thread and one pthread, both busy
 *   fs-workload-unwind[-nopie] signal SECONDS         a SIGPROF handler burns CPU on a timer
 *   fs-workload-unwind[-nopie] recurse SECONDS DEPTH  busy at the bottom of DEPTH frames
 *   fs-workload-unwind[-nopie] vdso SECONDS           busy in clock_gettime (the vDSO)
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

double fs_uw_hot(double x); /* libfs-uwlib.so */

static double seconds;
static double t_end;
volatile double sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) double own_loop(double x)
{
	for (int i = 0; i < 20000; i++)
		x = x * 1.0000001 + (i & 7);
	return x;
}

__attribute__((noinline)) double middle(double x)
{
	double r = fs_uw_hot(x);
	return r + own_loop(x);
}

__attribute__((noinline)) double outer(double x)
{
	double r = middle(x);
	return r * 2;
}

__attribute__((noinline)) void spin(void)
{
	while (now() < t_end)
		sink = outer(sink + 1);
}

static void *thread_main(void *arg)
{
	(void)arg;
	spin();
	return NULL;
}

__attribute__((noinline)) void handler(int sig)
{
	(void)sig;
	double x = sink;
	for (int i = 0; i < 24; i++)
		x = own_loop(x);
	sink = x;
}

__attribute__((noinline)) void vdso_loop(void)
{
	struct timespec ts;

	do {
		for (int i = 0; i < 1000; i++) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			sink += ts.tv_nsec;
		}
	} while (ts.tv_sec + ts.tv_nsec / 1e9 < t_end);
}

__attribute__((noinline)) int recurse(int depth)
{
	if (depth <= 0) {
		spin();
		return 0;
	}
	return recurse(depth - 1) + (int)(sink > 1e300); /* not a tail call */
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "spin";

	seconds = argc > 2 ? atof(argv[2]) : 10;
	t_end = now() + seconds;
	if (strcmp(mode, "signal") == 0) {
		struct sigaction sa;
		struct itimerval it = { { 0, 2000 }, { 0, 2000 } };

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = handler;
		sa.sa_flags = SA_RESTART;
		sigaction(SIGPROF, &sa, NULL);
		setitimer(ITIMER_PROF, &it, NULL);
	}
	printf("ready\n");
	fflush(stdout);
	if (strcmp(mode, "spin") == 0) {
		pthread_t t;

		pthread_create(&t, NULL, thread_main, NULL);
		spin();
		pthread_join(t, NULL);
	} else if (strcmp(mode, "vdso") == 0) {
		vdso_loop();
	} else if (strcmp(mode, "recurse") == 0) {
		recurse(argc > 3 ? atoi(argv[3]) : 600);
	} else {
		spin();
	}
	return 0;
}
