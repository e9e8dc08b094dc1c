/* nopie: a non-PIE executable (linked at a fixed address). "nopie crash" aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int counter;

static void __attribute__((noinline)) nopie_leaf(int n)
{
	counter += n;
	if (n == 42)
		abort();
}

int main(int argc, char **argv)
{
	nopie_leaf(argc > 1 && strcmp(argv[1], "crash") == 0 ? 42 : 1);
	printf("counter %d\n", counter);
	return 0;
}
