/* The lazy restore benchmark's task (scripts/bench-lazy.py):
 *
 *   ticker MIB TICKFILE RESULT
 *
 * MIB MiB of private memory, every page stamped with its index. A thread
 * ticks every millisecond: it writes the time (CLOCK_REALTIME, ns) into
 * TICKFILE through a shared mapping, which the benchmark reads to see
 * when the restored task first runs. Prints "READY <pid>". On SIGUSR1
 * every page is checked and one line goes to RESULT: "OK <pages>" or
 * "FAIL page <i>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static volatile uint64_t *tick;

static void *ticker(void *a)
{
	(void)a;
	for (;;) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		*tick = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
		struct timespec d = { 0, 1000000 };
		nanosleep(&d, 0);
	}
	return 0;
}

static volatile sig_atomic_t ask;
static void on_usr1(int s) { (void)s; ask = 1; }

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	size_t n = strtoul(argv[1], 0, 10) * 256;
	int fd = open(argv[2], O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, PAGE))
		return 2;
	tick = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	unsigned char *m = mmap(0, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (tick == MAP_FAILED || m == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < n; i++)
		memcpy(m + i * PAGE, &i, sizeof(i));
	signal(SIGUSR1, on_usr1);
	pthread_t t;
	pthread_create(&t, 0, ticker, 0);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;) {
		while (!ask)
			pause();
		ask = 0;
		FILE *out = fopen(argv[3], "a");
		size_t i;
		for (i = 0; i < n; i++) {
			size_t v;
			memcpy(&v, m + i * PAGE, sizeof(v));
			if (v != i)
				break;
		}
		if (i == n)
			fprintf(out, "OK %zu\n", n);
		else
			fprintf(out, "FAIL page %zu\n", i);
		fclose(out);
	}
}
