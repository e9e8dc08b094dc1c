// filter.h: libfilter.so, the shared library of the c-separate-debug case.
#ifndef FILTER_H
#define FILTER_H

struct item {
	const char *name;
	const int *limits; // NULL for the bad item
	int level;
};

typedef int (*item_fn)(const struct item *it, void *ctx);

// filter_apply calls fn for every item; returns the sum of the results.
int filter_apply(const struct item *items, int n, item_fn fn, void *ctx);
// filter_limit returns it->limits[level]: faults when it->limits is NULL.
int filter_limit(const struct item *it, int level);

#endif
