// c-tailcalls: functions that leave by a tail call (a jump) have no frame on the
// stack; gdb shows them from DWARF call-site information (DW_TAG_call_site with
// DW_AT_call_tail_call, -O2). Each thread parks in read(2) behind one pattern:
//
//   unique_worker   -> u_top ~> u_mid ~> u_leaf -> read      one chain: both shown
//   split_worker    -> s_top ~> s_odd|s_even ~> s_join ~> s_leaf -> read
//                      two chains that share only their end: s_join shown
//   indirect_worker -> i_top ~> (*handler) = i_leaf -> read  unknown target: none shown
//   cycle_worker    -> c_ping ~> c_pong ~> c_ping ... ~> c_leaf -> read
//                      mutual recursion: the chains found decide
//   libc_worker     -> x_top ~> read (libc, through the PLT)
//
// ("->" a call, "~>" a tail call). main dies with SIGSEGV in m_leaf, reached by
// main -> m_top ~> m_leaf. Prints "pid=N".
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

// noipa: no inlining, cloning or merging, so every function keeps its own code
// and its tail calls stay jumps.
#define FN __attribute__((noipa))

static int ready_pipe[2], block_pipe[2];
static char buf[1];
volatile int sink;

static void ready(void)
{
	if (write(ready_pipe[1], "r", 1) != 1)
		abort();
}

static int park(void)
{
	char c;
	ready();
	if (read(block_pipe[0], &c, 1) <= 0)
		abort();
	return c;
}

FN int u_leaf(int n) { return park() + n; }
FN int u_mid(int n) { return u_leaf(n * 3); }
FN int u_top(int n) { return u_mid(n + 1); }

FN int s_leaf(int n) { return park() - n; }
FN int s_join(int n) { return s_leaf(n + 7); }
FN int s_odd(int n) { return s_join(n * 3); }
FN int s_even(int n) { return s_join(n * 5); }
FN int s_top(int n) { return (n & 1) ? s_odd(n) : s_even(n); }

FN int i_leaf(int n) { return park() ^ n; }
static int (*volatile handler)(int) = i_leaf;
FN int i_top(int n) { return handler(n + 2); }

FN int c_leaf(int n) { return park() + 2 * n; }
FN int c_pong(int n);
FN int c_ping(int n) { return n <= 0 ? c_leaf(n) : c_pong(n - 1); }
FN int c_pong(int n) { return c_ping(n - 1); }

FN ssize_t x_top(int fd)
{
	ready();
	return read(fd, buf, 1);
}

static void *unique_worker(void *a) { sink = u_top(1); return a; }
static void *split_worker(void *a) { sink = s_top(3); return a; }
static void *indirect_worker(void *a) { sink = i_top(4); return a; }
static void *cycle_worker(void *a) { sink = c_ping(4); return a; }
static void *libc_worker(void *a) { sink = (int)x_top(block_pipe[0]); return a; }

FN int m_leaf(volatile int *p)
{
	*p = 1; // p is NULL: the crash
	return 0;
}
FN int m_top(volatile int *p) { return m_leaf(p); }

static volatile int *volatile nowhere;

int main(void)
{
	void *(*workers[])(void *) = {unique_worker, split_worker, indirect_worker, cycle_worker, libc_worker};
	const int n = sizeof workers / sizeof workers[0];
	pthread_t t;
	char c;

	printf("pid=%d\n", (int)getpid());
	fflush(stdout);
	if (pipe(ready_pipe) || pipe(block_pipe))
		return 1;
	for (int i = 0; i < n; i++)
		if (pthread_create(&t, NULL, workers[i], NULL))
			return 1;
	for (int i = 0; i < n; i++)
		if (read(ready_pipe[0], &c, 1) != 1)
			return 1;
	// Each worker wrote its byte and goes straight into read(2): give them time to block.
	nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
	sink = m_top(nowhere);
	return 0;
}
