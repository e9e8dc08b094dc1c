/* plain: a small program; the images ship it without a build-id, unsplit, or with its debug
 * file in unusual places, to exercise the pairing fallbacks. */
#include <stdio.h>

#ifndef PLAIN_GREETING
#define PLAIN_GREETING "hello"
#endif

static int __attribute__((noinline)) plain_twice(int x)
{
	return 2 * x;
}

int main(int argc, char **argv)
{
	(void)argv;
	printf("%s %d\n", PLAIN_GREETING, plain_twice(argc));
	return 0;
}
