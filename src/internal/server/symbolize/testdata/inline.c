/* Two-deep inlining: leaf is always_inline inside mid (static inline),
 * which is always_inline inside work. Built at -O0 and -O2 by the tests. */
#include <stdio.h>
#include <stdlib.h>

volatile int sink;

static inline __attribute__((always_inline)) int leaf(int x)
{
	int y = x * 3;
	if (y > 100)
		sink = y;
	return y + 1;
}

static inline __attribute__((always_inline)) int mid(int x)
{
	int a = leaf(x);
	int b = leaf(x + a);
	return a ^ b;
}

static inline int helper(int v)
{
	return v * v + sink;
}

__attribute__((noinline)) int work(int n)
{
	int acc = 0;
	for (int i = 0; i < n; i++)
		acc += mid(i) + helper(i);
	return acc;
}

__attribute__((noinline)) static int crash(int *p)
{
	return *p + work(3);
}

int main(int argc, char **argv)
{
	int r = work(argc * 10);
	printf("%d\n", r);
	if (argc > 5)
		return crash(NULL);
	return 0;
}
