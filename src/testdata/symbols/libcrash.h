/* libcrash: the shared library of the miniature Yocto images (internal/testutil/yoctoimage). */
#ifndef LIBCRASH_H
#define LIBCRASH_H

struct crash_request {
	int depth;         /* frames to recurse through before the fault */
	volatile int *target; /* written at the bottom: NULL faults */
};

int crash_checksum(const char *s);
void crash_descend(struct crash_request *req);

#endif
