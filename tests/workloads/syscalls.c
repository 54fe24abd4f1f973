/*
 * Syscall-heavy workload: copies /dev/zero to /dev/null in 1 MiB reads, so most of its CPU
 * time is in the kernel (clear_user and friends).
 *   fs-workload-syscalls [seconds]   (default 10)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char buf[1 << 20];

__attribute__((noinline)) void copy_loop(int in, int out, double end)
{
	while (now() < end) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n <= 0 || write(out, buf, (size_t)n) < 0)
			exit(1);
	}
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10;
	int in = open("/dev/zero", O_RDONLY);
	int out = open("/dev/null", O_WRONLY);
	if (in < 0 || out < 0)
		return 1;
	printf("ready\n");
	fflush(stdout);
	copy_loop(in, out, now() + seconds);
	return 0;
}
