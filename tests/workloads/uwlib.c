/* The shared-library half of fs-workload-unwind: frameless, calling into libm. */
#include <math.h>

__attribute__((noinline)) double fs_uw_hot(double x)
{
	double s = 0;

	for (int i = 0; i < 2000; i++)
		s += sin(x + i) * cos(x - i);
	return s;
}
