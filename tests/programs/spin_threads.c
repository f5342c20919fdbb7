/* Threads spinning on counters, for the freeze tests.
 * Usage: spin_threads N
 * Starts N threads; thread i increments counters[i + 1], the main thread
 * increments counters[0]. Once all threads run, prints
 * "<pid> <address of counters in hex>\n" and spins forever. */
#include <sys/syscall.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long counters[65];
static volatile int started;

static void *spin(void *arg)
{
	long i = (long)arg;
	__atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
	for (;;)
		counters[i]++;
	return NULL;
}

int main(int argc, char **argv)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	long n = argc > 1 ? atol(argv[1]) : 4;
	if (n > 64)
		n = 64;
	for (long i = 1; i <= n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, spin, (void *)i))
			return 1;
	}
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < n)
		;
	printf("%d %lx\n", getpid(), (unsigned long)counters);
	fflush(stdout);
	for (;;)
		counters[0]++;
}
