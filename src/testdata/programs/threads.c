// threads.c: the crash test program shared by the core-capture fixtures and the
// root end-to-end test. Eight threads in all: the main thread, which crashes,
// and seven workers parked in different ways, one of them 200 frames deep in
// recursion. Every function on a stack that a test compares has its own name
// and is kept out of line, so gdb can name each frame.
//
// Usage: threads [segv|abort|fpe|busy]   (default segv)
//   busy: touch N MiB of heap first (THREADS_HEAP_MIB), then segv.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define WORKERS 7
#define DEPTH 200

static pthread_barrier_t ready;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int pipefd[2];
volatile int sink;

NOINLINE static void park_forever(void) {
	for (;;)
		pause();
}

NOINLINE static int recurse(int depth) {
	volatile char frame[64];
	frame[0] = (char)depth;
	if (depth == 0) {
		pthread_barrier_wait(&ready);
		park_forever();
	}
	return recurse(depth - 1) + frame[0];
}

NOINLINE static void *worker_recursion(void *arg) {
	(void)arg;
	sink = recurse(DEPTH);
	return NULL;
}

NOINLINE static void *worker_condvar(void *arg) {
	(void)arg;
	pthread_barrier_wait(&ready);
	pthread_mutex_lock(&lock);
	for (;;)
		pthread_cond_wait(&never, &lock);
	return NULL;
}

NOINLINE static void *worker_sleep(void *arg) {
	(void)arg;
	pthread_barrier_wait(&ready);
	for (;;)
		sleep(1000);
	return NULL;
}

NOINLINE static void *worker_pipe(void *arg) {
	char c;
	(void)arg;
	pthread_barrier_wait(&ready);
	for (;;)
		if (read(pipefd[0], &c, 1) <= 0)
			sleep(1000);
	return NULL;
}

NOINLINE static void crash_segv(void) {
	volatile int *bad = (volatile int *)16;
	*bad = 42;
}

NOINLINE static void crash_fpe(void) {
	volatile int zero = 0;
	sink = 1 / zero;
}

NOINLINE static void crash_now(const char *how) {
	if (strcmp(how, "abort") == 0)
		abort();
	if (strcmp(how, "fpe") == 0)
		crash_fpe();
	crash_segv();
}

// touch_heap dirties THREADS_HEAP_MIB MiB of heap (default 16) with data that compresses
// about 2:1 like a real heap: each 4 KiB page is half pseudo-random bytes, half zeros.
static void touch_heap(void) {
	const char *env = getenv("THREADS_HEAP_MIB");
	size_t mib = env ? strtoul(env, NULL, 10) : 16;
	unsigned long long x = 88172645463325252ULL;
	for (size_t i = 0; i < mib; i++) {
		unsigned char *p = malloc(1 << 20);
		if (!p)
			exit(3);
		memset(p, 0, 1 << 20);
		for (size_t page = 0; page < (1 << 20); page += 4096)
			for (size_t j = 0; j < 2048; j += 8) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				memcpy(p + page + j, &x, 8);
			}
	}
}

int main(int argc, char **argv) {
	const char *how = argc > 1 ? argv[1] : "segv";
	static void *(*const workers[WORKERS])(void *) = {
	    worker_recursion, worker_condvar, worker_sleep, worker_pipe,
	    worker_sleep,     worker_condvar, worker_pipe,
	};
	pthread_t tid[WORKERS];

	if (strcmp(how, "busy") == 0) {
		touch_heap();
		how = "segv";
	}
	if (pipe(pipefd) != 0)
		return 2;
	pthread_barrier_init(&ready, NULL, WORKERS + 1);
	for (int i = 0; i < WORKERS; i++)
		if (pthread_create(&tid[i], NULL, workers[i], NULL) != 0)
			return 2;
	pthread_barrier_wait(&ready);
	// The waiters have passed the barrier; give them time to block.
	usleep(100 * 1000);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	printf("crashing pid %d at %lld\n", getpid(), (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
	fflush(stdout);
	crash_now(how);
	return 0;
}
