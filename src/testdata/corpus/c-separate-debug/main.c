// c-separate-debug: a PIE (-O1) linked against our own libfilter.so. The deployed
// binary and library are stripped, each with a .gnu_debuglink to its .debug
// file. The crash path crosses the library boundary twice:
//   main -> run_pipeline (app) -> filter_apply (lib) -> check_item (app, callback)
//        -> filter_limit (lib, faults on a NULL pointer: SIGSEGV)
// Prints "pid=N".
#include <stdio.h>
#include <unistd.h>

#include "filter.h"

#define NOINLINE __attribute__((noinline))

static const int limits_a[4] = {10, 20, 30, 40};
static const int limits_c[4] = {5, 6, 7, 8};
static const struct item items[] = {
	{"a", limits_a, 1},
	{"b", NULL, 2}, // the crash
	{"c", limits_c, 3},
};
volatile int sink;

NOINLINE static int check_item(const struct item *it, void *ctx)
{
	int *count = ctx;
	(*count)++;
	return filter_limit(it, it->level) + *count;
}

NOINLINE static int run_pipeline(const struct item *list, int n)
{
	int count = 0;
	int sum = filter_apply(list, n, check_item, &count);
	return sum + count;
}

int main(void)
{
	printf("pid=%d\n", (int)getpid());
	fflush(stdout);
	sink = run_pipeline(items, 3);
	return 0;
}
