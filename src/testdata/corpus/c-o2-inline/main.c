// c-o2-inline: built with -O2. The fault is a load inside load_sample(), a
// static inline function inlined into sum_window() (also static inline), both
// inlined into the out-of-line checksum(). A second thread is blocked in read(2)
// on a pipe that never gets data. Prints "pid=N" and dies with SIGSEGV.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

struct samples {
	const int *data; // NULL for the bad record: the crash
	int count;
	int scale;
};

static int ready_pipe[2], block_pipe[2];
static struct samples records[3];
// volatile: the compiler cannot see that records[2].data is NULL, so it does
// not turn the fault into a trap or drop it.
static struct samples *volatile current = &records[0];
volatile long sink;

static inline int load_sample(const struct samples *s, int i)
{
	return s->data[i] * s->scale;
}

static inline long sum_window(const struct samples *s, int from, int len)
{
	long sum = 0;
	for (int i = from; i < from + len && i < s->count; i++)
		sum += load_sample(s, i);
	return sum;
}

NOINLINE long checksum(const struct samples *s)
{
	long total = 0;
	for (int from = 0; from < s->count; from += 4)
		total ^= sum_window(s, from, 4) << (from & 7);
	return total;
}

NOINLINE static void *blocked_reader(void *arg)
{
	char c;
	(void)arg;
	if (write(ready_pipe[1], "r", 1) != 1)
		abort();
	for (;;)
		if (read(block_pipe[0], &c, 1) <= 0)
			abort();
	return NULL;
}

int main(void)
{
	static const int good[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	pthread_t t;
	char c;

	printf("pid=%d\n", (int)getpid());
	fflush(stdout);
	if (pipe(ready_pipe) || pipe(block_pipe))
		return 1;
	if (pthread_create(&t, NULL, blocked_reader, NULL))
		return 1;
	if (read(ready_pipe[0], &c, 1) != 1)
		return 1;
	// The reader wrote its byte and goes straight into read(2): give it time to block.
	nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);

	records[0] = (struct samples){good, 8, 1};
	records[1] = (struct samples){good, 5, 3};
	records[2] = (struct samples){NULL, 6, 2};
	for (int i = 0; i < 3; i++) {
		current = &records[i];
		sink += checksum(current);
	}
	return 0;
}
