/* A task that keeps rewriting part of its memory, for pre-dump and
 * pre-copy tests and their benchmark (scripts/bench-precopy.py):
 *
 *   gens MIB HOT_MIB RATE RESULT [FORKS [UFFD]]
 *
 * MIB MiB of private memory, every page stamped with its index and a
 * generation (at its start and its end); a table, elsewhere, holds each
 * page's generation. A writer thread rewrites pages of the first HOT_MIB
 * MiB, RATE pages a second (spread over each millisecond; 0: none),
 * bumping the table and both stamps. A ticker thread wakes every half
 * millisecond and records the longest gap between two wakes (the
 * stall). With FORKS > 0 the task also forks a child every 50 ms (which
 * exits at once) and maps, writes and unmaps a fresh 1 MiB region, so
 * that tracking sees tasks and mappings come and go. With UFFD = 1 it
 * registers a 1 MiB region of its own, filled with 0x77, with a
 * userfaultfd of its own (missing mode), and checks it with the rest.
 *
 * It prints "READY <pid>" once every page is stamped. Signals:
 *   SIGUSR2: the stall so far is forgotten;
 *   SIGUSR1: the writer pauses; every page is checked against the table
 *            (the one page being written when the task was stopped may
 *            be half done: the writer marks it) and one line goes to
 *            RESULT: "OK <pages> <writes> <stall_us>" or
 *            "FAIL page <i> ...". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#define PAGE 4096
#define OWN_LEN (1 << 20)

struct stamp {
	uint64_t index, gen;
};

static unsigned char *mem, *own;
static uint64_t *table;
static size_t pages, hot;
static long rate;
static int result_fd, forks;
static volatile sig_atomic_t check, reset;
static volatile int64_t inflight = -1;
static volatile int pause_req, paused;
static volatile uint64_t writes, max_gap_ns;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void stamp(size_t i, uint64_t gen)
{
	struct stamp s = { i, gen };
	memcpy(mem + i * PAGE, &s, sizeof s);
	memcpy(mem + i * PAGE + PAGE - sizeof s, &s, sizeof s);
}

static void *writer(void *a)
{
	(void)a;
	uint64_t x = 88172645463325252ull;
	long per_ms = rate / 1000, extra = rate % 1000, tick = 0;
	for (;;) {
		if (pause_req) {
			paused = 1;
			while (pause_req)
				usleep(100);
			paused = 0;
		}
		long n = per_ms + ((tick++ % 1000) < extra);
		for (long k = 0; k < n && hot; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t i = x % hot;
			inflight = (int64_t)i;
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
			uint64_t g = table[i] + 1;
			table[i] = g;
			stamp(i, g);
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
			inflight = -1;
			writes++;
		}
		usleep(1000);
	}
	return NULL;
}

static void *ticker(void *a)
{
	(void)a;
	uint64_t last = now_ns();
	for (;;) {
		struct timespec d = { 0, 500000 };
		nanosleep(&d, NULL);
		uint64_t t = now_ns();
		if (reset) {
			reset = 0;
			max_gap_ns = 0;
		} else if (t - last > max_gap_ns) {
			max_gap_ns = t - last;
		}
		last = t;
	}
	return NULL;
}

static void on_usr1(int s)
{
	(void)s;
	check = 1;
}

static void on_usr2(int s)
{
	(void)s;
	reset = 1;
}

static void report(void)
{
	char line[160];
	pause_req = 1;
	while (!paused && rate)
		usleep(100);
	int64_t skip = inflight;
	size_t bad = pages;
	struct stamp a, b;
	for (size_t i = 0; i < pages; i++) {
		if ((int64_t)i == skip)
			continue;
		memcpy(&a, mem + i * PAGE, sizeof a);
		memcpy(&b, mem + i * PAGE + PAGE - sizeof b, sizeof b);
		if (a.index != i || b.index != i || a.gen != table[i] || b.gen != table[i]) {
			bad = i;
			break;
		}
	}
	for (size_t o = 0; own && o < OWN_LEN && bad == pages; o += 64)
		if (own[o] != 0x77) {
			snprintf(line, sizeof line, "FAIL own region at %zu\n", o);
			goto out;
		}
	if (bad == pages)
		snprintf(line, sizeof line, "OK %zu %llu %llu\n", pages,
			 (unsigned long long)writes, (unsigned long long)(max_gap_ns / 1000));
	else
		snprintf(line, sizeof line, "FAIL page %zu: index %llu/%llu gen %llu/%llu, table %llu\n",
			 bad, (unsigned long long)a.index, (unsigned long long)b.index,
			 (unsigned long long)a.gen, (unsigned long long)b.gen,
			 (unsigned long long)table[bad]);
out:
	if (write(result_fd, line, strlen(line)) < 0)
		_exit(3);
	pause_req = 0;
}

int main(int argc, char **argv)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	if (argc < 5) {
		fprintf(stderr, "usage: gens MIB HOT_MIB RATE RESULT [FORKS]\n");
		return 1;
	}
	pages = ((size_t)atol(argv[1]) << 20) / PAGE;
	hot = ((size_t)atol(argv[2]) << 20) / PAGE;
	if (hot > pages)
		hot = pages;
	rate = atol(argv[3]);
	forks = argc > 5 ? atoi(argv[5]) : 0;
	result_fd = open(argv[4], O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (result_fd < 0)
		return 1;
	mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	table = mmap(NULL, pages * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || table == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < pages; i++)
		stamp(i, 0);
	if (argc > 6 && atoi(argv[6])) {
		/* USER_MODE_ONLY: what any user may make. */
		int u = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1);
		struct uffdio_api api = { .api = UFFD_API };
		own = mmap(NULL, OWN_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (u < 0 || ioctl(u, UFFDIO_API, &api) || own == MAP_FAILED)
			return 4;
		memset(own, 0x77, OWN_LEN);
		struct uffdio_register r = {
			.range = { (unsigned long)own, OWN_LEN },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(u, UFFDIO_REGISTER, &r))
			return 5;
		printf("OWN %lx\n", (unsigned long)own);
	}
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGCHLD, SIG_IGN);
	/* The threads take no signals: the main thread handles them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_t w, t;
	if (rate)
		pthread_create(&w, NULL, writer, NULL);
	pthread_create(&t, NULL, ticker, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;) {
		if (check) {
			check = 0;
			report();
		}
		if (forks) {
			pid_t p = fork();
			if (p == 0)
				_exit(0);
			unsigned char *r = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
						MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (r != MAP_FAILED) {
				memset(r, 0x5a, 1 << 20);
				munmap(r, 1 << 20);
			}
		}
		usleep(forks ? 50000 : 20000);
	}
}
