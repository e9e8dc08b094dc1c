// filter.c: libfilter.so for the c-separate-debug case (-O1 -fPIC -shared).
#include "filter.h"

#define NOINLINE __attribute__((noinline))

NOINLINE int filter_limit(const struct item *it, int level)
{
	return it->limits[level]; // it->limits is NULL for the bad item: SIGSEGV
}

NOINLINE int filter_apply(const struct item *items, int n, item_fn fn, void *ctx)
{
	int sum = 0;
	for (int i = 0; i < n; i++)
		sum += fn(&items[i], ctx);
	return sum;
}
