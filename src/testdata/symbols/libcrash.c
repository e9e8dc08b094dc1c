/* libcrash: a shared library with a few frames of its own, so that a core of a program using it
 * needs the library's symbols too. */
#include "libcrash.h"

int crash_checksum(const char *s)
{
	int sum = 0;
	while (*s)
		sum = sum * 31 + *s++;
	return sum;
}

static void __attribute__((noinline)) crash_bottom(struct crash_request *req)
{
	*req->target = req->depth; /* SIGSEGV when target is NULL */
}

void __attribute__((noinline)) crash_descend(struct crash_request *req)
{
	if (req->depth > 0) {
		req->depth--;
		crash_descend(req);
		__asm__ volatile("" ::: "memory"); /* keep the call from becoming a tail call */
		return;
	}
	crash_bottom(req);
}
