// c-static / c-static-pie: the same small C crash linked -static (non-PIE) and
// -static-pie. parse_entry() writes through the NULL `value` pointer of the second
// entry (SIGSEGV), called from load_table() from main. A second thread sleeps in
// nanosleep(2). Prints "pid=N".
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

struct entry {
	const char *key;
	int *value;
};

static int slots[4];
static struct entry table[] = {
	{"alpha", &slots[0]},
	{"beta", NULL}, // the crash
	{"gamma", &slots[2]},
};
static int ready_pipe[2];
static struct entry *volatile table_ptr = table;

NOINLINE static void *sleeper(void *arg)
{
	(void)arg;
	if (write(ready_pipe[1], "s", 1) != 1)
		abort();
	for (;;)
		nanosleep(&(struct timespec){.tv_sec = 1000}, NULL);
	return NULL;
}

NOINLINE void parse_entry(struct entry *e, int n)
{
	*e->value = n * 10 + e->key[0];
}

NOINLINE int load_table(struct entry *t, int n)
{
	int sum = 0;
	for (int i = 0; i < n; i++) {
		parse_entry(&t[i], i);
		sum += *t[i].value;
	}
	return sum;
}

int main(void)
{
	pthread_t t;
	char c;

	printf("pid=%d\n", (int)getpid());
	fflush(stdout);
	if (pipe(ready_pipe) || pthread_create(&t, NULL, sleeper, NULL))
		return 1;
	if (read(ready_pipe[0], &c, 1) != 1)
		return 1;
	nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
	return load_table(table_ptr, 3) == 0;
}
