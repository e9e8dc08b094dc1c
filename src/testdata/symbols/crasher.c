/* crasher: a PIE program using libcrash. "crasher crash" faults three frames deep in the
 * library; without arguments it prints a checksum and exits 0. */
#include <stdio.h>
#include <string.h>
#include "libcrash.h"

static int __attribute__((noinline)) run(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "crash") == 0) {
		struct crash_request req = {.depth = 3, .target = NULL};
		crash_descend(&req);
		return 1;
	}
	printf("checksum %d\n", crash_checksum(argv[0]));
	return 0;
}

int main(int argc, char **argv)
{
	int rc = run(argc, argv);
	__asm__ volatile("" ::: "memory");
	return rc;
}
